"""A toy supervised segmentor on generated images, to exercise the tools quickly on CPU.

Used by the compat, tool, work-dir-lock and security tests; it is not ReCLIP.
"""
import subprocess
from pathlib import Path

import numpy as np

from tests.tool_utils import run_tool

NUM_CLASSES = 3
IMG_SIZE = 32
NUM_IMAGES = 4
MAX_ITERS = 4

# ---------------------------------------------------------------------------
# toy dataset + config
# ---------------------------------------------------------------------------
_TOY_CONFIG = '''\
# Toy config written by tests/toy_utils.py: a tiny supervised segmentor on a
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


def make_toy_run(base: Path) -> dict:
    """Toy dataset + config under ``base``, trained 2 iterations then resumed to 4 with
    ``tools/train.py``."""
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


def output_of(proc: subprocess.CompletedProcess) -> str:
    """stdout and stderr of a finished tool run."""
    return proc.stdout + proc.stderr
