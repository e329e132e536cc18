"""Helpers of the paper-experiment tests (issue 19): tiny heads and loop references."""
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
