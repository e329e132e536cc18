"""Tiny ReCLIP heads on the tiny CLIP and loop references: helpers of the head tests and
of the paper-experiment tests (issue 19)."""
import inspect

import torch
import torch.nn.functional as F
from mmseg.registry import MODELS

from mmseg_reclip.models.decode_heads.maskclip_head import MaskCLIPHead
from tests.clip_utils import TINY

# 4 classes, the last with a synonym (class score = max over its names)
CLASS_NAMES = ['cat', 'dining table', 'hippopotamus', ['tv monitor', 'television']]
C = len(CLASS_NAMES)
D = 64  # tiny CLIP embedding dim (and image width)


def head_cfg(clip_file, **kwargs):
    cfg = dict(
        type='ReCLIPHead',
        class_names=CLASS_NAMES,
        num_classes=C,
        in_channels=D,
        templates='single',
        show_progress=False,
        text_encoder=dict(type='OpenCLIPTextEncoder', model_name=TINY, pretrained=clip_file),
        bias_extractor=dict(num_context=4),
        norm_cfg=dict(type='BN', requires_grad=True))
    if 'query_cache_dir' in inspect.signature(MaskCLIPHead.__init__).parameters:
        cfg['query_cache_dir'] = None
    cfg.update(kwargs)
    return cfg


def build_head(clip_file, **kwargs):
    head = MODELS.build(head_cfg(clip_file, **kwargs))
    head.init_weights()
    return head


def random_feats(*shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(*shape, generator=g), dim=1)


def randomize_(module, seed=0, std=0.1):
    """Fill every floating parameter of ``module`` with seeded noise."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * std)


def loop_query_logits(feats, queries, name_to_class, num_classes):
    """``Lq[b, c, y, x] = max_{n ∈ names(c)} Σ_d F[b, d, y, x] Q[n, d]`` by loops."""
    b, _, h, w = feats.shape
    out = torch.full((b, num_classes, h, w), -float('inf'), dtype=torch.float64)
    f, q = feats.double(), queries.double()
    for n in range(q.shape[0]):
        c = int(name_to_class[n])
        score = (f * q[n][None, :, None, None]).sum(1)
        out[:, c] = torch.maximum(out[:, c], score)
    return out


# ---------------------------------------------------------------------------------------
# tiny tool runs of the experiment configs (tests/test_tools/test_experiment_configs.py)
# ---------------------------------------------------------------------------------------
def tiny_run_options(data_root, pipeline_offset=0):
    """Dataloaders on ``data_root`` with 64 px crops, 2 iterations, checkpoint at 2.

    ``pipeline_offset``: 1 for a train pipeline with ``LoadAnnotations`` before the
    resize (linear probing).
    """
    from tests.clip_utils import small_data_options
    resize, crop = 1 + pipeline_offset, 2 + pipeline_offset
    return small_data_options(data_root) + [
        'train_dataloader.batch_size=2',
        f'train_dataloader.dataset.dataset.pipeline.{resize}.scale=(128,64)',
        f'train_dataloader.dataset.dataset.pipeline.{crop}.crop_size=(64,64)',
        'test_dataloader.dataset.pipeline.1.scale=(128,64)',
        'train_cfg.max_iters=2',
        'default_hooks.checkpoint.interval=2',
        'default_hooks.logger.interval=1',
    ]


def tiny_clip_model_options(clip, prefix='model.'):
    """The tiny random CLIP in a stage-1 (or teacher, ``prefix='model.teacher.'``) model."""
    from tests.clip_utils import TINY
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


def tiny_student_options(teacher_ckpt=None):
    """A small ResNet-18 student with a 64-d embedding (tiny CLIP's)."""
    opts = [] if teacher_ckpt is None else [f'model.teacher_checkpoint={teacher_ckpt}']
    return opts + [
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


def tiny_config(path, clip, extra=(), prefix='model.'):
    """A config file with the tiny CLIP (in the model at ``prefix``; a distillation
    teacher: ``'model.teacher.'``) and ``extra`` ``key=value`` overrides merged in, the
    way ``--cfg-options`` would."""
    from mmengine.config import Config, DictAction
    cfg = Config.fromfile(path)
    pairs = (o.split('=', 1) for o in tiny_clip_model_options(clip, prefix) + list(extra))
    cfg.merge_from_dict({k: DictAction._parse_iterable(v) for k, v in pairs})
    return cfg
