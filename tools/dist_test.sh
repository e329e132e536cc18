#!/usr/bin/env bash
# Distributed testing on one or more nodes (mmseg 1.x interface):
#   tools/dist_test.sh CONFIG CHECKPOINT GPUS [test.py options...]
# CHECKPOINT may be `none` for training-free configs.
# Environment: NNODES (1), NODE_RANK (0), PORT (29500), MASTER_ADDR (127.0.0.1),
#              PYTHON (python): the interpreter that runs torchrun.

CONFIG=$1
CHECKPOINT=$2
GPUS=$3
NNODES=${NNODES:-1}
NODE_RANK=${NODE_RANK:-0}
PORT=${PORT:-29500}
MASTER_ADDR=${MASTER_ADDR:-"127.0.0.1"}
PYTHON=${PYTHON:-python}
TOOLS_DIR="$(cd "$(dirname "$0")" && pwd)"

# `python -m torch.distributed.run` is torchrun (the successor of
# torch.distributed.launch); it passes the local rank as LOCAL_RANK.
PYTHONPATH="${TOOLS_DIR}/..${PYTHONPATH:+:${PYTHONPATH}}" \
"${PYTHON}" -m torch.distributed.run \
    --nnodes="${NNODES}" \
    --node_rank="${NODE_RANK}" \
    --master_addr="${MASTER_ADDR}" \
    --nproc_per_node="${GPUS}" \
    --master_port="${PORT}" \
    "${TOOLS_DIR}/test.py" \
    "${CONFIG}" \
    "${CHECKPOINT}" \
    --launcher pytorch \
    "${@:4}"
