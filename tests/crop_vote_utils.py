"""Helpers of the crop-vote tests: a real Runner with a tiny random-weight ReCLIP model
and the crop-vote hook, its dataset config, and an independent crop vote by hand."""
import glob
import os.path as osp
import uuid

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from mmengine.config import Config
from mmengine.runner import Runner

import mmseg_reclip  # noqa: F401  (registrations)
from mmseg_reclip.crop_vote.hook import CACHE_PREFIX, CropVoteHypothesisHook

MEAN = [122.771, 116.746, 104.094]
STD = [68.501, 66.632, 70.323]


def model_cfg(clip_path):
    return dict(
        type='ReCLIP',
        data_preprocessor=dict(
            type='SegDataPreProcessor', mean=MEAN, std=STD, bgr_to_rgb=True, size_divisor=16),
        backbone=dict(type='CLIPViTBackbone', model_name='ViT-Tiny-16-test', pretrained=clip_path),
        decode_head=dict(
            type='ReCLIPHead',
            in_channels=64,
            num_classes=20,
            class_names='voc20',
            templates='single',
            bias_extractor=dict(num_context=4),
            norm_cfg=dict(type='BN'),
            text_encoder=dict(
                type='OpenCLIPTextEncoder', model_name='ViT-Tiny-16-test', pretrained=clip_path)))


def dataset_cfg(data_root, ann_file='ImageSets/Segmentation/train.txt'):
    return dict(
        type='PascalVOC20Dataset',
        data_root=data_root,
        data_prefix=dict(img_path='JPEGImages', seg_map_path='SegmentationClass'),
        ann_file=ann_file,
        pipeline=[
            dict(type='LoadImageFromFile'),
            dict(type='Resize', scale=(64, 48), keep_ratio=True),
            dict(type='PackSegInputs')
        ])


def build_runner(work_dir,
                 data_root,
                 clip_path,
                 hook=None,
                 max_iters=2,
                 resume=False,
                 ann_file='ImageSets/Segmentation/train.txt'):
    hook = hook or dict(window=56, stride=None, min_frequency=0.0, batch_size=37)
    cfg = dict(
        model=model_cfg(clip_path),
        work_dir=str(work_dir),
        experiment_name=f'cv_{uuid.uuid4().hex[:8]}',
        train_dataloader=dict(
            batch_size=2,
            num_workers=0,
            sampler=dict(type='InfiniteSampler', shuffle=True),
            dataset=dataset_cfg(data_root, ann_file)),
        train_cfg=dict(type='IterBasedTrainLoop', max_iters=max_iters),
        optim_wrapper=dict(
            type='OptimWrapper',
            optimizer=dict(type='SGD', lr=0.01),
            constructor='TrainableOptimWrapperConstructor'),
        default_hooks=dict(
            logger=dict(type='LoggerHook', interval=1, log_metric_by_epoch=False),
            checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=2)),
        custom_hooks=[dict(type='CropVoteHypothesisHook', **hook)],
        log_processor=dict(by_epoch=False),
        default_scope='mmseg',
        log_level='INFO',
        env_cfg=dict(cudnn_benchmark=False, dist_cfg=dict(backend='gloo')),
        randomness=dict(seed=0),
        resume=resume)
    return Runner.from_cfg(Config(cfg))


def get_hook(runner):
    hooks = [h for h in runner.hooks if isinstance(h, CropVoteHypothesisHook)]
    assert len(hooks) == 1
    return hooks[0]


def caches(folder):
    return sorted(glob.glob(osp.join(str(folder), CACHE_PREFIX + '*.pth')))


def read_log(runner):
    return open(osp.join(runner.log_dir, f'{runner.timestamp}.log')).read()


def independent_crop_vote(model, img_path, window, stride):
    """Crop the numpy image by hand, resize, normalise, score, argmax, unique."""
    rgb = cv2.imread(img_path, cv2.IMREAD_COLOR)[..., ::-1]
    h, w = rgb.shape[:2]
    ys = sorted(set(range(0, h - window + 1, stride)) | {h - window})
    xs = sorted(set(range(0, w - window + 1, stride)) | {w - window})
    crops = np.stack([rgb[y:y + window, x:x + window] for y in ys for x in xs])
    t = torch.from_numpy(crops.copy()).permute(0, 3, 1, 2).float()
    t = F.interpolate(t, size=(224, 224), mode='bilinear', align_corners=False, antialias=False)
    t = (t - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)
    with torch.no_grad():
        scores = model.global_class_scores(t)
    return sorted(set(scores.argmax(dim=1).tolist())), scores
