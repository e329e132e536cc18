"""Helpers of the end-to-end tool tests: the stage-1/2 and MaskCLIP configs, the
``--cfg-options`` that point them at the tiny CLIP, a test dataset and a teacher, and a
model built from a config the way the tools build it."""
import os
import os.path as osp

import numpy as np
from mmengine.config import Config
from mmengine.runner import load_checkpoint
from mmseg.registry import MODELS
from PIL import Image

from tests.clip_utils import TINY

STAGE1 = 'configs/reclip/reclip_vit-b16_voc.py'

STAGE2 = 'configs/reclip/reclip-distill_deeplabv2-r101_voc.py'


def data_options(data_root):
    opts = []
    for split in ('train', 'val', 'test'):
        dataset = 'dataset.dataset' if split == 'train' else 'dataset'  # StepSeededDataset
        opts += [
            f'{split}_dataloader.{dataset}.data_root={data_root}',
            f'{split}_dataloader.num_workers=0', f'{split}_dataloader.persistent_workers=False'
        ]
    return opts + [
        'train_dataloader.batch_size=2',
        'train_dataloader.dataset.dataset.pipeline.1.scale=(128,64)',  # RandomResize
        'train_dataloader.dataset.dataset.pipeline.2.crop_size=(64,64)',  # RandomCrop
        'train_cfg.max_iters=2',
        'default_hooks.checkpoint.interval=2',
        'default_hooks.logger.interval=1',
    ]


def clip_options(clip, prefix='model.'):
    return [
        f'{prefix}backbone.model_name={TINY}',
        f'{prefix}backbone.pretrained={clip}',
        f'{prefix}decode_head.text_encoder.model_name={TINY}',
        f'{prefix}decode_head.text_encoder.pretrained={clip}',
        f'{prefix}decode_head.in_channels=64',
        f'{prefix}decode_head.templates=single',
        f'{prefix}decode_head.norm_cfg.type=BN',
        f'{prefix}decode_head.query_cache_dir=None',
    ]


def student_options(teacher_ckpt):
    return [
        f'model.teacher_checkpoint={teacher_ckpt}',
        'model.backbone.depth=18',
        'model.backbone.base_channels=16',
        'model.backbone.stem_channels=16',
        'model.backbone.init_cfg=None',
        'model.backbone.norm_cfg.type=BN',
        'model.decode_head.in_channels=128',
        'model.decode_head.channels=32',
        'model.decode_head.embed_dim=64',
        'model.decode_head.bias_extractor.pe_channels=64',
    ]


def randomise_labels(data_root, seed=1):
    rng = np.random.default_rng(seed)
    seg_dir = osp.join(data_root, 'SegmentationClass')
    for name in os.listdir(seg_dir):
        path = osp.join(seg_dir, name)
        with Image.open(path) as img:
            shape = np.array(img).shape
        label = rng.integers(0, 22, size=shape).astype(np.uint8)
        label[label == 21] = 255
        Image.fromarray(label, mode='L').save(path)


MASKCLIP = 'configs/maskclip/maskclip_vit-b16_voc.py'


def cfg_dict(opts):
    out = {}
    for o in opts:
        k, v = o.split('=', 1)
        literal = {'None': None, 'False': False, 'True': True}
        out[k] = literal.get(v, int(v) if v.isdigit() else v)
    return out


def build_model(config, opts, ckpt=None):
    cfg = Config.fromfile(config)
    cfg.merge_from_dict(cfg_dict(opts))
    model = MODELS.build(cfg.model)
    if ckpt:
        load_checkpoint(model, ckpt, map_location='cpu')
    return model.eval()
