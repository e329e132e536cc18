#!/usr/bin/env python
"""Test (and evaluate) a segmentor: MMSegmentation 1.x ``tools/test.py``, with
mmseg-reclip loaded.

Same command line as mmseg's script, except that the checkpoint is optional::

    python tools/test.py CONFIG [CHECKPOINT] [--work-dir DIR] [--out DIR]
        [--show] [--show-dir DIR] [--wait-time S] [--cfg-options KEY=VALUE ...]
        [--launcher {none,pytorch,slurm,mpi}] [--tta] [--local_rank N]

Training-free configs (e.g. MaskCLIP) have no checkpoint: leave it out, or pass
``none`` (useful with ``dist_test.sh``/``slurm_test.sh``, whose CHECKPOINT argument
is positional). The model is then used as the config builds it; a ``load_from`` set
in the config is still honoured. As with mmseg's script and ``mmseg.apis.init_model``,
``init_weights()`` is not called at test time.

``--out DIR`` saves every prediction as ``DIR/<image name>.png`` (label ids) through
the evaluator's ``output_dir``; ``--show-dir DIR`` turns the ``visualization`` hook on
and saves painted images under ``DIR/vis_data/vis_image/`` (every ``interval``-th image
of the hook, as in mmseg).

Launched by ``tools/dist_test.sh`` / ``tools/slurm_test.sh`` it tests with one process
per device (the test set is split between them and the results gathered): NCCL on
GPUs, gloo on a machine without CUDA (see :mod:`mmseg_reclip.utils.dist`). Models
without trainable parameters (training-free configs) run too
(:class:`mmseg_reclip.utils.AutoDistributedDataParallel`).
"""
import argparse
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

from mmseg_reclip.models.utils.model_meta import refuse_untrained  # noqa: E402
from mmseg_reclip.utils import setup_distributed, teardown_distributed, use_auto_ddp  # noqa: E402
from mmseg_reclip.utils.cli import add_debug_argument, run_main  # noqa: E402

_CFG_OPTIONS_HELP = ('override some settings in the used config, the key-value pair in xxx=yyy '
                     'format will be merged into config file. If the value to be overwritten is a '
                     'list, it should be like key="[a,b]" or key=a,b It also allows nested '
                     'list/tuple values, e.g. key="[(a,b),(c,d)]" Note that the quotation marks '
                     'are necessary and that no white space is allowed.')

# Checkpoint values meaning "no checkpoint" (the launch scripts take it positionally).
_NO_CHECKPOINT = ('', 'none', 'None', 'null')


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='MMSeg test (and eval) a model')
    parser.add_argument('config', help='test config file path')
    parser.add_argument(
        'checkpoint',
        nargs='?',
        default=None,
        help='checkpoint file; optional (training-free models have none; '
        '"none" also means no checkpoint)')
    parser.add_argument(
        '--work-dir',
        help='if specified, the evaluation metric results will be dumped '
        'into the directory as json')
    parser.add_argument(
        '--out', type=str, help='The directory to save output prediction for offline evaluation')
    parser.add_argument('--show', action='store_true', help='show prediction results')
    parser.add_argument(
        '--show-dir',
        help='directory where painted images will be saved '
        '(under DIR/vis_data/vis_image)')
    parser.add_argument('--wait-time', type=float, default=2, help='the interval of show (s)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, help=_CFG_OPTIONS_HELP)
    parser.add_argument(
        '--launcher',
        choices=['none', 'pytorch', 'slurm', 'mpi'],
        default='none',
        help='job launcher')
    parser.add_argument('--tta', action='store_true', help='Test time augmentation')
    # torch.distributed.launch passes --local-rank (torch >= 2.0) or --local_rank;
    # torchrun only sets the LOCAL_RANK environment variable.
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    add_debug_argument(parser)
    args = parser.parse_args(argv)
    if args.checkpoint in _NO_CHECKPOINT:
        args.checkpoint = None
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


def default_work_dir(config_path):
    """``./work_dirs/<config file name without extension>``, as in mmseg."""
    return osp.join('./work_dirs', osp.splitext(osp.basename(config_path))[0])


def trigger_visualization_hook(cfg, args):
    """Make the ``visualization`` default hook draw (and show / save)."""
    hooks = cfg.get('default_hooks', None) or {}
    if 'visualization' not in hooks:
        raise RuntimeError('VisualizationHook must be included in default_hooks. '
                           'refer to usage '
                           '"visualization=dict(type=\'VisualizationHook\')"')
    vis_hook = hooks['visualization']
    vis_hook['draw'] = True
    if args.show:
        vis_hook['show'] = True
        vis_hook['wait_time'] = args.wait_time
    if args.show_dir:
        cfg.visualizer['save_dir'] = args.show_dir
    return cfg


def set_output_dir(cfg, out_dir):
    """Ask the test evaluator(s) to save predictions to ``out_dir``."""
    evaluator = cfg.test_evaluator
    if isinstance(evaluator, dict) and 'metrics' in evaluator:
        # an ``Evaluator`` config wrapping a list of metrics
        metrics = evaluator['metrics']
    else:
        metrics = evaluator
    for metric in metrics if isinstance(metrics, (list, tuple)) else [metrics]:
        metric['output_dir'] = out_dir
        metric['keep_results'] = True


def use_tta(cfg):
    if 'tta_model' not in cfg or 'tta_pipeline' not in cfg:
        raise RuntimeError('--tta needs `tta_model` and `tta_pipeline` in the config')
    cfg.test_dataloader.dataset.pipeline = cfg.tta_pipeline
    cfg.tta_model.module = cfg.model
    cfg.model = cfg.tta_model


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

    if args.checkpoint is not None:
        cfg.load_from = args.checkpoint
    elif cfg.get('load_from', None):
        print_log(f'No checkpoint given: using load_from={cfg.load_from!r} '
                  'from the config.',
                  logger='current')
    else:
        cfg.load_from = None
        print_log(
            'No checkpoint given: testing the model as the config builds '
            'it (training-free models only).',
            logger='current')

    if args.show or args.show_dir:
        cfg = trigger_visualization_hook(cfg, args)

    if args.tta:
        use_tta(cfg)

    if args.out is not None:
        set_output_dir(cfg, args.out)
    return cfg


def main(argv=None):
    args = parse_args(argv)
    cfg = build_cfg(args)
    # DDP as mmseg, but a training-free model (no trainable parameter, which DDP
    # rejects) is wrapped for inference only.
    use_auto_ddp(cfg)
    if args.out is not None:
        # mmseg's IoUMetric creates output_dir on rank 0 only, while every rank writes
        # its share of the predictions there: make it first, on every rank.
        os.makedirs(args.out, exist_ok=True)
    # GPUs: nothing changes. CPU only: SyncBN -> BN, and with a distributed launcher
    # the gloo process group is created here (mmengine's launchers need CUDA).
    setup_distributed(cfg)
    runner = Runner.from_cfg(cfg)
    if cfg.load_from is None:
        # as the 'none' checkpoint on every other entry point: a model that must be
        # trained is not evaluated with its initial weights
        refuse_untrained(runner.model)
    runner.test()
    teardown_distributed()


if __name__ == '__main__':
    run_main(main, 'tools/test.py')
