"""``tools/test.py`` (mIoU, ``--out``, ``--show-dir``, no checkpoint), the argument
handling of ``tools/train.py`` / ``tools/test.py``, and the launch scripts, on the toy
segmentor of :mod:`tests.toy_utils`."""
import importlib.util
import os
import subprocess

import numpy as np

from tests.tool_utils import REPO_ROOT, run_tool
from tests.toy_utils import IMG_SIZE, NUM_CLASSES, NUM_IMAGES, output_of


# ---------------------------------------------------------------------------
# (c) tools/test.py
# ---------------------------------------------------------------------------
def test_test_tool_with_checkpoint_out_and_show_dir(toy):
    base = toy['base']
    out_dir, show_dir = base / 'preds', base / 'show'
    proc = run_tool([
        'tools/test.py', toy['cfg'], toy['work_dir'] / 'iter_4.pth', '--work-dir',
        base / 'work_dir_test', '--out', out_dir, '--show-dir', show_dir
    ],
                    cwd=base)
    out = output_of(proc)
    assert 'mIoU' in out, out[-3000:]
    assert 'Iter(test) [4/4]' in out
    assert f'Load checkpoint from {toy["work_dir"] / "iter_4.pth"}' in out

    from PIL import Image
    preds = sorted(p.name for p in out_dir.glob('*.png'))
    assert preds == [f'toy_{i}.png' for i in range(NUM_IMAGES)]
    for name in preds:
        pred = np.array(Image.open(out_dir / name))
        assert pred.shape == (IMG_SIZE, IMG_SIZE)
        assert pred.max() < NUM_CLASSES
    painted = list((show_dir / 'vis_data' / 'vis_image').glob('*.png'))
    assert len(painted) == NUM_IMAGES


def test_test_tool_without_checkpoint(toy):
    """Training-free use: `tools/test.py CONFIG` with no checkpoint argument."""
    base = toy['base']
    proc = run_tool(['tools/test.py', toy['cfg'], '--work-dir', base / 'wd_nockpt'], cwd=base)
    out = output_of(proc)
    assert 'mIoU' in out, out[-3000:]
    assert 'Load checkpoint from' not in out


def _load_tool(name: str):
    spec = importlib.util.spec_from_file_location(f'_reclip_tool_{name}',
                                                  REPO_ROOT / 'tools' / f'{name}.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_test_tool_arguments(toy, monkeypatch):
    tool = _load_tool('test')
    monkeypatch.setenv('LOCAL_RANK', '0')
    cfg = str(toy['cfg'])

    args = tool.parse_args([cfg])
    assert args.checkpoint is None
    for none in ('none', 'None', ''):
        assert tool.parse_args([cfg, none]).checkpoint is None
    args = tool.parse_args([
        cfg, 'a.pth', '--out', 'o', '--show-dir', 's', '--tta', '--launcher', 'pytorch',
        '--local-rank', '1'
    ])
    assert (args.checkpoint, args.out, args.show_dir, args.tta, args.launcher,
            args.local_rank) == ('a.pth', 'o', 's', True, 'pytorch', 1)

    built = tool.build_cfg(tool.parse_args([cfg, 'a.pth', '--out', 'o', '--show-dir', 's']))
    assert built.load_from == 'a.pth'
    assert built.test_evaluator['output_dir'] == 'o'
    assert built.default_hooks.visualization.draw is True
    assert built.visualizer.save_dir == 's'
    assert built.work_dir == os.path.join('./work_dirs', 'toy_fcn')
    # no checkpoint: load_from from the config is kept, else it is None
    built = tool.build_cfg(tool.parse_args([cfg, '--cfg-options', 'load_from=b.pth']))
    assert built.load_from == 'b.pth'
    assert tool.build_cfg(tool.parse_args([cfg])).load_from is None
    # --out reaches every metric of a list / an Evaluator config
    from mmengine.config import Config
    for evaluator in ([dict(type='IoUMetric'), dict(type='IoUMetric')],
                      dict(type='Evaluator', metrics=[dict(type='IoUMetric')])):
        built = Config(dict(test_evaluator=evaluator))
        tool.set_output_dir(built, 'o')
        metrics = built.test_evaluator
        metrics = metrics['metrics'] if 'metrics' in metrics else metrics
        assert all(m['output_dir'] == 'o' and m['keep_results'] for m in metrics)


def test_train_tool_arguments(toy, monkeypatch):
    tool = _load_tool('train')
    monkeypatch.setenv('LOCAL_RANK', '0')
    args = tool.parse_args([
        str(toy['cfg']), '--work-dir', 'w', '--resume', '--amp', '--launcher', 'slurm',
        '--local_rank', '2', '--cfg-options', 'train_cfg.max_iters=7'
    ])
    cfg = tool.build_cfg(args)
    assert (cfg.work_dir, cfg.resume, cfg.launcher) == ('w', True, 'slurm')
    assert cfg.train_cfg.max_iters == 7
    # mmseg's fp16 AmpOptimWrapper on GPUs; without one, bf16 CPU autocast (docs/speed.md)
    import torch
    if torch.cuda.is_available():
        assert cfg.optim_wrapper.type == 'AmpOptimWrapper'
    else:
        assert cfg.optim_wrapper.type == 'DeviceAmpOptimWrapper'
        assert cfg.optim_wrapper.dtype == 'bfloat16'
    assert cfg.optim_wrapper.loss_scale == 'dynamic'


# ---------------------------------------------------------------------------
# launch scripts: arguments reach the launcher unchanged (nothing is launched)
# ---------------------------------------------------------------------------
def _run_script(script, args, env, tmp_path):
    fake_bin = tmp_path / 'bin'
    fake_bin.mkdir(exist_ok=True)
    # a stand-in for `python` and `srun` that prints one argument per line
    recorder = fake_bin / 'record'
    recorder.write_text('#!/bin/sh\nfor a in "$@"; do echo "$a"; done\n')
    recorder.chmod(0o755)
    if not (fake_bin / 'srun').exists():
        (fake_bin / 'srun').symlink_to(recorder)
    full_env = dict(
        os.environ, PYTHON=str(recorder), PATH=f'{fake_bin}{os.pathsep}{os.environ["PATH"]}', **env)
    proc = subprocess.run(['bash', str(REPO_ROOT / 'tools' / script), *args],
                          capture_output=True,
                          text=True,
                          env=full_env,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.splitlines()


def test_dist_scripts(tmp_path):
    tools = str(REPO_ROOT / 'tools')
    argv = _run_script('dist_train.sh', ['c.py', '2', '--amp', '--cfg-options', 'a=[1, 2]'],
                       dict(NNODES='2', NODE_RANK='1', PORT='29999', MASTER_ADDR='10.0.0.1'),
                       tmp_path)
    assert argv == [
        '-m', 'torch.distributed.run', '--nnodes=2', '--node_rank=1', '--master_addr=10.0.0.1',
        '--nproc_per_node=2', '--master_port=29999', f'{tools}/train.py', 'c.py', '--launcher',
        'pytorch', '--amp', '--cfg-options', 'a=[1, 2]'
    ]
    argv = _run_script('dist_test.sh', ['c.py', 'none', '1', '--out', 'o'], {}, tmp_path)
    assert argv[-7:] == [f'{tools}/test.py', 'c.py', 'none', '--launcher', 'pytorch', '--out', 'o']
    assert '--master_port=29500' in argv and '--nproc_per_node=1' in argv


def test_slurm_scripts(tmp_path):
    tools = str(REPO_ROOT / 'tools')
    argv = _run_script(
        'slurm_train.sh', ['part', 'job', 'c.py', '--resume'],
        dict(GPUS='8', GPUS_PER_NODE='4', CPUS_PER_TASK='3', SRUN_ARGS='--quotatype=auto --time=1'),
        tmp_path)
    rec = str(tmp_path / 'bin' / 'record')
    assert argv == [
        '-p', 'part', '--job-name=job', '--gres=gpu:4', '--ntasks=8', '--ntasks-per-node=4',
        '--cpus-per-task=3', '--kill-on-bad-exit=1', '--quotatype=auto', '--time=1', rec, '-u',
        f'{tools}/train.py', 'c.py', '--launcher=slurm', '--resume'
    ]
    argv = _run_script('slurm_test.sh', ['part', 'job', 'c.py', 'k.pth', '--out', 'o'], {},
                       tmp_path)
    assert argv[-8:] == [
        rec, '-u', f'{tools}/test.py', 'c.py', 'k.pth', '--launcher=slurm', '--out', 'o'
    ]
    assert '--ntasks=4' in argv and '--cpus-per-task=5' in argv
