"""Tests of :mod:`mmseg_reclip.compat` and of the command-line tools that rely on it.

(a) the ``mmcv.ops`` shim for mmcv-lite;
(b) the checkpoint fix (torch >= 2.6 ``weights_only``), end to end with the real
    ``tools/train.py`` (train, ``--resume``, ``load_from``) and ``init_model``;
(c) ``tools/test.py`` (mIoU, ``--out``, ``--show-dir``, no checkpoint), plus the
    argument handling of the tools and launch scripts.

The model trained here is a toy (tiny ResNet + FCN head on 4 generated 32x32
images with labels); it only exercises the machinery, it is not ReCLIP.
"""
import importlib.util
import os
import pickle
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import mmseg_reclip  # noqa: F401  (applies the compat glue in this process too)
from mmseg_reclip import compat
from tests.tool_utils import REPO_ROOT, run_tool

NUM_CLASSES = 3
IMG_SIZE = 32
NUM_IMAGES = 4
MAX_ITERS = 4


def _compiled_mmcv_ops() -> bool:
    return compat._compiled_mmcv_ops_available()


needs_mmcv_lite = pytest.mark.skipif(
    _compiled_mmcv_ops(), reason='full mmcv installed: the real mmcv.ops is used')


# ---------------------------------------------------------------------------
# (a) mmcv.ops shim
# ---------------------------------------------------------------------------
def _bilinear_reference(feat: np.ndarray, xy: np.ndarray) -> np.ndarray:
    """Bilinear sampling written out by hand (align_corners=False, zero padding).

    feat: [C, H, W]; xy: [P, 2] normalised [0, 1] (x, y). Returns [C, P].
    """
    C, H, W = feat.shape
    out = np.zeros((C, xy.shape[0]), dtype=np.float64)
    for p, (nx, ny) in enumerate(xy):
        # pixel centres sit at (i + 0.5) / size in normalised coordinates
        x = nx * W - 0.5
        y = ny * H - 0.5
        x0, y0 = int(np.floor(x)), int(np.floor(y))
        for yy in (y0, y0 + 1):
            for xx in (x0, x0 + 1):
                if 0 <= yy < H and 0 <= xx < W:
                    w = (1 - abs(x - xx)) * (1 - abs(y - yy))
                    out[:, p] += w * feat[:, yy, xx]
    return out


@needs_mmcv_lite
def test_mmcv_ops_is_the_shim():
    import mmcv
    import mmcv.ops
    assert getattr(mmcv.ops, '__reclip_shim__', False)
    assert sys.modules['mmcv.ops'] is mmcv.ops
    # installing again is a no-op that keeps the shim
    assert compat.install_mmcv_ops_shim() is True
    assert getattr(sys.modules['mmcv.ops'], '__reclip_shim__', False)


def test_point_sample_matches_independent_bilinear():
    from mmcv.ops import point_sample
    if not _compiled_mmcv_ops():
        assert point_sample is compat.point_sample

    g = torch.Generator().manual_seed(0)
    feat = torch.randn(2, 3, 5, 7, generator=g, dtype=torch.float64)
    # include points near / on the border, where zero padding matters
    pts = torch.rand(2, 11, 2, generator=g, dtype=torch.float64) * 1.1 - 0.05
    out = point_sample(feat, pts)
    assert out.shape == (2, 3, 11)
    for n in range(2):
        ref = _bilinear_reference(feat[n].numpy(), pts[n].numpy())
        np.testing.assert_allclose(out[n].numpy(), ref, rtol=1e-10, atol=1e-12)

    # same thing through F.grid_sample, and the [N, Hp, Wp, 2] form
    grid = (2 * pts - 1).unsqueeze(2)  # [N, P, 1, 2]
    ref = F.grid_sample(feat, grid, align_corners=False).squeeze(3)
    torch.testing.assert_close(out, ref)
    pts4 = torch.rand(2, 4, 6, 2, generator=g, dtype=torch.float64)
    out4 = point_sample(feat, pts4)
    assert out4.shape == (2, 3, 4, 6)
    torch.testing.assert_close(out4, F.grid_sample(feat, 2 * pts4 - 1, align_corners=False))
    # align_corners is forwarded
    torch.testing.assert_close(
        point_sample(feat, pts, align_corners=True),
        F.grid_sample(feat, grid, align_corners=True).squeeze(3))


@needs_mmcv_lite
@pytest.mark.parametrize('name', ['sigmoid_focal_loss', 'nms', 'SomeFutureOp'])
def test_other_mmcv_ops_import_but_raise_when_used(name):
    import mmcv.ops
    ns = {}
    exec(f'from mmcv.ops import {name} as op', ns)  # the import itself works
    with pytest.raises(ModuleNotFoundError, match='mmcv'):
        ns['op'](torch.zeros(1))
    with pytest.raises(AttributeError):
        mmcv.ops.__no_such_dunder__


def test_mmseg_models_import():
    import mmseg.models  # noqa: F401
    from mmseg.models.decode_heads import PointHead  # noqa: F401  (uses point_sample)
    from mmseg.registry import MODELS
    assert MODELS.get('EncoderDecoder') is not None


@needs_mmcv_lite
def test_mmseg_models_needs_the_shim():
    """Proof the shim is needed: without it mmcv-lite cannot import mmseg.models."""
    proc = subprocess.run([sys.executable, '-c', 'import mmseg.models'],
                          capture_output=True,
                          text=True,
                          timeout=300,
                          env=dict(os.environ, OMP_NUM_THREADS='1'))
    assert proc.returncode != 0
    assert 'mmcv' in proc.stderr


# ---------------------------------------------------------------------------
# toy dataset + config
# ---------------------------------------------------------------------------
_TOY_CONFIG = '''\
# Toy config written by tests/test_compat.py: a tiny supervised segmentor on a
# generated dataset, to exercise tools/train.py and tools/test.py quickly on CPU.
custom_imports = dict(imports=['mmseg_reclip'], allow_failed_imports=False)
default_scope = 'mmseg'

norm_cfg = dict(type='BN', requires_grad=True)
data_preprocessor = dict(
    type='SegDataPreProcessor',
    mean=[123.675, 116.28, 103.53],
    std=[58.395, 57.12, 57.375],
    bgr_to_rgb=True,
    pad_val=0,
    seg_pad_val=255,
    size=({size}, {size}))
model = dict(
    type='EncoderDecoder',
    data_preprocessor=data_preprocessor,
    backbone=dict(
        type='ResNetV1c',
        depth=18,
        stem_channels=8,
        base_channels=8,
        num_stages=4,
        out_indices=(0, 1, 2, 3),
        dilations=(1, 1, 2, 4),
        strides=(1, 2, 1, 1),
        norm_cfg=norm_cfg,
        norm_eval=False,
        contract_dilation=True),
    decode_head=dict(
        type='FCNHead',
        in_channels=64,
        in_index=3,
        channels=8,
        num_convs=1,
        concat_input=False,
        dropout_ratio=0.0,
        num_classes={num_classes},
        norm_cfg=norm_cfg,
        align_corners=False,
        loss_decode=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0)),
    train_cfg=dict(),
    test_cfg=dict(mode='whole'))

dataset_type = 'BaseSegDataset'
data_root = {data_root!r}
metainfo = dict(
    classes=('background', 'square', 'stripe'),
    palette=[[0, 0, 0], [220, 20, 60], [0, 128, 255]])
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackSegInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),
    dict(type='PackSegInputs'),
]
train_dataloader = dict(
    batch_size=2,
    num_workers=0,
    persistent_workers=False,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        metainfo=metainfo,
        img_suffix='.png',
        seg_map_suffix='.png',
        data_prefix=dict(img_path='img_dir/train', seg_map_path='ann_dir/train'),
        pipeline=train_pipeline))
test_dataloader = dict(
    batch_size=1,
    num_workers=0,
    persistent_workers=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        metainfo=metainfo,
        img_suffix='.png',
        seg_map_suffix='.png',
        data_prefix=dict(img_path='img_dir/val', seg_map_path='ann_dir/val'),
        pipeline=test_pipeline))
test_evaluator = dict(type='IoUMetric', iou_metrics=['mIoU'])
test_cfg = dict(type='TestLoop')

optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='SGD', lr=0.01, momentum=0.9, weight_decay=0.0005))
param_scheduler = [
    dict(type='PolyLR', eta_min=1e-4, power=0.9, begin=0, end={max_iters},
         by_epoch=False),
]
train_cfg = dict(type='IterBasedTrainLoop', max_iters={max_iters}, val_interval=1000)

default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=1, log_metric_by_epoch=False),
    param_scheduler=dict(type='ParamSchedulerHook'),
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=2),
    sampler_seed=dict(type='DistSamplerSeedHook'),
    visualization=dict(type='SegVisualizationHook', interval=1))
env_cfg = dict(
    cudnn_benchmark=False,
    mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
    dist_cfg=dict(backend='gloo'))
vis_backends = [dict(type='LocalVisBackend')]
visualizer = dict(type='SegLocalVisualizer', vis_backends=vis_backends, name='visualizer')
log_processor = dict(by_epoch=False)
log_level = 'INFO'
randomness = dict(seed=0)
load_from = None
resume = False
'''


def _make_toy_dataset(root: Path) -> None:
    """4 RGB images + label maps per split, in mmseg's img_dir/ann_dir layout."""
    from PIL import Image
    rng = np.random.default_rng(0)
    for split in ('train', 'val'):
        (root / 'img_dir' / split).mkdir(parents=True)
        (root / 'ann_dir' / split).mkdir(parents=True)
        for i in range(NUM_IMAGES):
            label = np.zeros((IMG_SIZE, IMG_SIZE), np.uint8)
            y, x = rng.integers(0, IMG_SIZE // 2, size=2)
            label[y:y + 12, x:x + 12] = 1
            label[:, (i * 7) % IMG_SIZE:(i * 7) % IMG_SIZE + 4] = 2
            palette = np.array([[20, 20, 20], [220, 20, 60], [0, 128, 255]], np.int16)
            img = palette[label] + rng.integers(-15, 16, (IMG_SIZE, IMG_SIZE, 3))
            Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(root / 'img_dir' / split /
                                                                        f'toy_{i}.png')
            Image.fromarray(label).save(root / 'ann_dir' / split / f'toy_{i}.png')


@pytest.fixture(scope='module')
def toy(tmp_path_factory):
    """Toy dataset + config, trained 2 iterations then resumed to 4 with the tools."""
    base = tmp_path_factory.mktemp('toy')
    _make_toy_dataset(base / 'data')
    cfg_path = base / 'toy_fcn.py'
    cfg_path.write_text(
        _TOY_CONFIG.format(
            size=IMG_SIZE,
            num_classes=NUM_CLASSES,
            data_root=str(base / 'data'),
            max_iters=MAX_ITERS))
    work_dir = base / 'work_dir'

    first = run_tool([
        'tools/train.py', cfg_path, '--work-dir', work_dir, '--cfg-options', 'train_cfg.max_iters=2'
    ],
                     cwd=base)
    assert (work_dir / 'iter_2.pth').is_file(), first.stdout[-3000:]
    assert not (work_dir / 'iter_4.pth').exists()
    resumed = run_tool(['tools/train.py', cfg_path, '--work-dir', work_dir, '--resume'], cwd=base)
    return dict(base=base, cfg=cfg_path, work_dir=work_dir, first=first, resumed=resumed)


def _output(proc: subprocess.CompletedProcess) -> str:
    return proc.stdout + proc.stderr


def _logged_lr(log: str, prefix: str) -> float:
    line = next(ln for ln in log.splitlines() if prefix in ln)
    return float(re.search(r'\blr: ([0-9.e+-]+)', line).group(1))


def _params(state_dict: dict) -> dict:
    """Learnable tensors only (BN running statistics move even with lr=0)."""
    return {
        k: v
        for k, v in state_dict.items() if 'running_' not in k and 'num_batches_tracked' not in k
    }


# ---------------------------------------------------------------------------
# (b) checkpoint fix, end to end
# ---------------------------------------------------------------------------
def test_checkpoints_need_the_fix(toy):
    """Proof the fix is needed: torch's default (weights_only) load refuses them."""
    ckpt = toy['work_dir'] / 'iter_2.pth'
    if 'weights_only' not in torch.load.__code__.co_varnames:  # pragma: no cover
        pytest.skip('torch without weights_only')
    with pytest.raises(pickle.UnpicklingError):
        torch.load(ckpt, map_location='cpu')
    # mmengine's own local loader uses that default too
    from mmengine.runner.checkpoint import CheckpointLoader, load_from_local
    with pytest.raises(pickle.UnpicklingError):
        load_from_local(str(ckpt), map_location='cpu')
    # ... and with the fix registered, mmengine's loader reads it
    loaded = CheckpointLoader.load_checkpoint(str(ckpt), map_location='cpu')
    assert loaded['meta']['iter'] == 2


def test_train_resume(toy):
    wd = toy['work_dir']
    out = _output(toy['resumed'])
    assert 'resumed epoch: 0, iter: 2' in out, out[-3000:]
    assert 'Iter(train) [4/4]' in out
    assert 'Iter(train) [1/4]' not in out  # iterations 1-2 were not redone
    # the LR schedule went on where it stopped (a restarted PolyLR would be back at 0.01)
    lr_2 = _logged_lr(_output(toy['first']), 'Iter(train) [2/2]')
    lr_3 = _logged_lr(out, 'Iter(train) [3/4]')
    assert lr_3 < lr_2 < 0.01
    assert (wd / 'iter_4.pth').is_file()
    assert (wd / 'last_checkpoint').read_text().strip().endswith('iter_4.pth')

    ckpt = torch.load(wd / 'iter_4.pth', map_location='cpu', weights_only=False)
    assert ckpt['meta']['iter'] == MAX_ITERS
    assert ckpt['message_hub']['runtime_info']['iter'] == MAX_ITERS - 1  # 0-based
    # the optimizer state came along (momentum buffers exist)
    assert ckpt['optimizer']['state']
    # the weights moved between iteration 2 and 4
    ckpt2 = torch.load(wd / 'iter_2.pth', map_location='cpu', weights_only=False)
    w2, w4 = _params(ckpt2['state_dict']), _params(ckpt['state_dict'])
    assert w2.keys() == w4.keys()
    assert any(not torch.equal(w2[k], w4[k]) for k in w2)


def test_train_load_from_fresh_work_dir(toy):
    src = toy['work_dir'] / 'iter_4.pth'
    wd = toy['base'] / 'work_dir_load_from'
    proc = run_tool([
        'tools/train.py', toy['cfg'], '--work-dir', wd, '--cfg-options', f'load_from={src}',
        'train_cfg.max_iters=1', 'optim_wrapper.optimizer.lr=0.0'
    ],
                    cwd=toy['base'])
    out = _output(proc)
    assert f'Load checkpoint from {src}' in out, out[-3000:]
    assert 'resumed epoch' not in out
    ckpt = torch.load(wd / 'iter_1.pth', map_location='cpu', weights_only=False)
    assert ckpt['meta']['iter'] == 1  # load_from starts a new schedule
    src_sd = torch.load(src, map_location='cpu', weights_only=False)['state_dict']
    new, old = _params(ckpt['state_dict']), _params(src_sd)
    assert new.keys() == old.keys()
    for k in old:  # lr=0: the weights are exactly the loaded ones
        torch.testing.assert_close(new[k], old[k], rtol=0, atol=0, msg=k)


def test_init_model_loads_checkpoint(toy):
    from mmseg.apis import init_model
    ckpt_path = toy['work_dir'] / 'iter_4.pth'
    model = init_model(str(toy['cfg']), str(ckpt_path), device='cpu')
    ckpt = torch.load(ckpt_path, map_location='cpu', weights_only=False)
    sd = model.state_dict()
    assert sd.keys() == ckpt['state_dict'].keys()
    for k, v in ckpt['state_dict'].items():
        torch.testing.assert_close(sd[k], v, rtol=0, atol=0, msg=k)
    assert model.dataset_meta['classes'] == ('background', 'square', 'stripe')


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
    out = _output(proc)
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
    out = _output(proc)
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
