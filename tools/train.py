#!/usr/bin/env python
"""Train a segmentor: MMSegmentation 1.x ``tools/train.py``, with mmseg-reclip loaded.

Same command line as mmseg's script::

    python tools/train.py CONFIG [--work-dir DIR] [--resume] [--amp]
        [--cfg-options KEY=VALUE ...] [--launcher {none,pytorch,slurm,mpi}]
        [--local_rank N]

``mmseg_reclip`` is imported before anything is built, so its compatibility glue
(:mod:`mmseg_reclip.compat`) is active and its components are registered. The
repository root is put on ``sys.path`` so the script works from a plain clone.

Launched by ``tools/dist_train.sh`` / ``tools/slurm_train.sh`` it trains with one
process per device. On GPUs that is mmseg's NCCL + SyncBN + DDP setup, unchanged; on a
machine without CUDA the same scripts train on CPU with gloo (SyncBN becomes BN, see
:mod:`mmseg_reclip.utils.dist`); that is all this script adds to mmseg's. Everything
else is in the config (e.g. per-sample augmentation seeds: the ``StepSeededSampler`` /
``StepSeededDataset`` of ``configs/_base_/datasets``), so mmseg's own ``tools/train.py``
gives the same run on one process.
"""
import argparse
import logging
import os
import os.path as osp
import sys

_REPO_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
if _REPO_ROOT not in sys.path:
    sys.path.insert(0, _REPO_ROOT)

# compat glue + registries, before any build
import mmseg_reclip  # noqa: E402,F401  # isort: skip
from mmengine.config import Config, DictAction  # noqa: E402
from mmengine.logging import print_log  # noqa: E402
from mmengine.runner import Runner  # noqa: E402
from mmseg.registry import RUNNERS  # noqa: E402

from mmseg_reclip.utils import setup_distributed, teardown_distributed  # noqa: E402
from mmseg_reclip.utils.cli import add_debug_argument, run_main  # noqa: E402

_CFG_OPTIONS_HELP = ('override some settings in the used config, the key-value pair in xxx=yyy '
                     'format will be merged into config file. If the value to be overwritten is a '
                     'list, it should be like key="[a,b]" or key=a,b It also allows nested '
                     'list/tuple values, e.g. key="[(a,b),(c,d)]" Note that the quotation marks '
                     'are necessary and that no white space is allowed.')


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Train a segmentor')
    parser.add_argument('config', help='train config file path')
    parser.add_argument('--work-dir', help='the dir to save logs and models')
    parser.add_argument(
        '--resume',
        action='store_true',
        default=False,
        help='resume from the latest checkpoint in the work_dir automatically')
    parser.add_argument(
        '--amp',
        action='store_true',
        default=False,
        help='enable automatic-mixed-precision training')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, help=_CFG_OPTIONS_HELP)
    parser.add_argument(
        '--launcher',
        choices=['none', 'pytorch', 'slurm', 'mpi'],
        default='none',
        help='job launcher')
    # torch.distributed.launch passes --local-rank (torch >= 2.0) or --local_rank;
    # torchrun only sets the LOCAL_RANK environment variable.
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    add_debug_argument(parser)
    args = parser.parse_args(argv)
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


def default_work_dir(config_path):
    """``./work_dirs/<config file name without extension>``, as in mmseg."""
    return osp.join('./work_dirs', osp.splitext(osp.basename(config_path))[0])


def enable_amp(cfg):
    """Switch ``OptimWrapper`` to ``AmpOptimWrapper`` with a dynamic loss scale.

    Without a GPU, mmengine's ``AmpOptimWrapper`` refuses to start: use
    ``DeviceAmpOptimWrapper`` with bf16 CPU autocast instead (docs/speed.md).
    """
    import torch
    wrapper_type = cfg.optim_wrapper.type
    if wrapper_type in ('AmpOptimWrapper', 'DeviceAmpOptimWrapper'):
        print_log(
            'AMP training is already enabled in your config.',
            logger='current',
            level=logging.WARNING)
        return
    assert wrapper_type == 'OptimWrapper', (
        '`--amp` is only supported when the optimizer wrapper type is '
        f'`OptimWrapper` but got {wrapper_type}.')
    cfg.optim_wrapper.type = 'AmpOptimWrapper'
    cfg.optim_wrapper.loss_scale = 'dynamic'
    if not torch.cuda.is_available():
        cfg.optim_wrapper.type = 'DeviceAmpOptimWrapper'
        cfg.optim_wrapper.dtype = 'bfloat16'


def build_cfg(args):
    cfg = Config.fromfile(args.config)
    cfg.launcher = args.launcher
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)

    # work_dir priority: command line > config file > config file name
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = default_work_dir(args.config)

    if args.amp:
        enable_amp(cfg)

    cfg.resume = args.resume
    return cfg


def main(argv=None):
    args = parse_args(argv)
    cfg = build_cfg(args)
    # GPUs: nothing changes. CPU only: SyncBN -> BN, and with a distributed launcher
    # the gloo process group is created here (mmengine's launchers need CUDA).
    setup_distributed(cfg)

    if 'runner_type' in cfg:
        runner = RUNNERS.build(cfg)
    else:
        runner = Runner.from_cfg(cfg)

    runner.train()
    teardown_distributed()


if __name__ == '__main__':
    run_main(main, 'tools/train.py')
