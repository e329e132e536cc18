#!/usr/bin/env bash
# The GPU checks of docs/speed.md in one short run (a few minutes on one H200-class GPU):
# the GPU-only tests (fp16 + loss scaler, compiled Reference encoding), then the speed
# benchmark for VOC and ADE20K at batch 8 and 1, bf16 and fp16, and with the Reference
# encoding compiled (CUDA graphs). JSON files go to ${OUT:-gpu_check_out}/.
#
#     bash benchmarks/gpu_check.sh
set -euo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-gpu_check_out}"
mkdir -p "$out"
py="${PYTHON:-python}"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee "$out/device.txt"

"$py" -m pytest -q tests/test_models/test_amp.py tests/test_models/test_text_speed.py \
    -k "gpu or compiled" 2>&1 | tail -3 | tee "$out/gpu_tests.txt" || true

for ds in voc ade; do
    "$py" benchmarks/bench_reclip.py --config "configs/reclip/reclip_vit-b16_${ds}.py" \
        --batches 8 1 --repeats 20 --amp-dtype bf16 --vote-images 8 \
        --json "$out/${ds}_bf16.json" > "$out/${ds}_bf16.log" 2>&1
    "$py" benchmarks/bench_reclip.py --config "configs/reclip/reclip_vit-b16_${ds}.py" \
        --batches 8 --repeats 20 --amp-dtype fp16 --skip inference vote --no-naive \
        --json "$out/${ds}_fp16.json" > "$out/${ds}_fp16.log" 2>&1
    "$py" benchmarks/bench_reclip.py --config "configs/reclip/reclip_vit-b16_${ds}.py" \
        --batches 8 --repeats 20 --amp-dtype bf16 --skip inference vote --no-naive \
        --compile-mode reduce-overhead \
        --json "$out/${ds}_compiled.json" > "$out/${ds}_compiled.log" 2>&1
    grep '^\[' "$out/${ds}_bf16.log" "$out/${ds}_fp16.log" "$out/${ds}_compiled.log"
done
