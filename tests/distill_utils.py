"""Helpers of the distillation tests: stage-1 teacher and ResNet-18 student configs on the
tiny CLIP, building them, and a tiny CLIP file with a trained-looking teacher checkpoint."""
import copy

import torch
from mmengine.registry import init_default_scope

import mmseg_reclip  # noqa: F401
from tests.clip_utils import TINY, save_random_clip

MEAN = [122.771, 116.746, 104.094]

STD = [68.501, 66.632, 70.323]


def teacher_cfg(clip):
    return dict(
        type='ReCLIP',
        data_preprocessor=dict(
            type='SegDataPreProcessor', mean=MEAN, std=STD, bgr_to_rgb=True, size_divisor=16),
        backbone=dict(type='CLIPViTBackbone', model_name=TINY, pretrained=clip),
        decode_head=dict(
            type='ReCLIPHead',
            in_channels=64,
            num_classes=20,
            class_names='voc20',
            templates='single',
            bias_extractor=dict(num_context=4),
            norm_cfg=dict(type='BN'),
            query_cache_dir=None,
            text_encoder=dict(type='OpenCLIPTextEncoder', model_name=TINY, pretrained=clip)))


def student_cfg(clip, ckpt, **head):
    head_cfg = dict(
        type='ReCLIPStudentHead',
        in_channels=128,
        in_index=3,
        channels=32,
        num_classes=20,
        class_names='voc20',
        embed_dim=64,
        bias_extractor=dict(pe_channels=64, pe_grid=(14, 14)))
    head_cfg.update(head)
    return dict(
        type='ReCLIPDistiller',
        teacher=teacher_cfg(clip),
        teacher_checkpoint=ckpt,
        data_preprocessor=teacher_cfg(clip)['data_preprocessor'],
        student_input_norm=dict(mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375]),
        backbone=dict(
            type='ResNetV1c',
            depth=18,
            base_channels=16,
            stem_channels=16,
            out_indices=(0, 1, 2, 3),
            dilations=(1, 1, 2, 4),
            strides=(1, 2, 1, 1),
            norm_cfg=dict(type='BN'),
            contract_dilation=True),
        decode_head=head_cfg,
        train_cfg=dict(),
        test_cfg=dict(mode='whole'))


def build(cfg):
    from mmengine.config import ConfigDict
    from mmseg.registry import MODELS
    init_default_scope('mmseg')
    return MODELS.build(ConfigDict(copy.deepcopy(cfg)))


def make_files(tmp_path_factory):
    """The ``files`` fixture (tests/test_models/conftest.py): a tiny CLIP file and a
    stage-1 teacher checkpoint (mmengine format) whose trainable parts and BN
    statistics are not at their initial values."""
    root = tmp_path_factory.mktemp('distill')
    clip = save_random_clip(str(root / 'tiny_clip.pt'))
    torch.manual_seed(0)
    teacher = build(teacher_cfg(clip))
    teacher.init_weights()
    head = teacher.decode_head
    with torch.no_grad():
        head.bias_extractor.context.normal_(0, 0.02)
        head.bias_extractor.pe_proj.weight.normal_(0, 0.05)
        head.bias_extractor.pe_proj.bias.normal_(0, 0.05)
        head.mask_decoder.conv.bias.normal_(0, 0.1)
        head.mask_decoder.norm.weight.uniform_(0.5, 1.5)
        head.mask_decoder.norm.bias.normal_(0, 0.1)
        head.mask_decoder.norm.running_mean.normal_(0, 0.1)
        head.mask_decoder.norm.running_var.uniform_(0.5, 2.0)
    ckpt = str(root / 'teacher.pth')
    classes = tuple(n[0] for n in head.class_names)
    torch.save(
        dict(meta=dict(dataset_meta=dict(classes=classes)), state_dict=teacher.state_dict()), ckpt)
    return clip, ckpt
