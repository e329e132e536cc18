"""The student's bias cache follows ``load_state_dict``; the PE grid the heads use has
CLIP's orientation (patch token ``1 + y·gw + x`` at grid row ``y``, column ``x``), checked
against loops over the raw weights file, for the stage-1 head and the student."""
import copy

import pytest
import torch
import torch.nn.functional as F
from mmengine.config import ConfigDict
from mmengine.registry import init_default_scope
from mmseg.registry import MODELS

import mmseg_reclip  # noqa: F401
from mmseg_reclip.models.decode_heads import bias_logits
from tests.clip_utils import TINY

NAMES = ['cat', 'dog', 'sky']
C = len(NAMES)


def build(cfg):
    init_default_scope('mmseg')
    return MODELS.build(ConfigDict(copy.deepcopy(cfg)))


@pytest.fixture(scope='module')
def teacher_head(clip_file):
    head = build(
        dict(
            type='ReCLIPHead',
            class_names=NAMES,
            num_classes=C,
            in_channels=64,
            templates='single',
            show_progress=False,
            query_cache_dir=None,
            bias_extractor=dict(num_context=4),
            text_encoder=dict(type='OpenCLIPTextEncoder', model_name=TINY, pretrained=clip_file)))
    head.init_weights()
    with torch.no_grad():
        head.bias_extractor.pe_proj.weight.normal_(0, 0.1)
        head.bias_extractor.pe_proj.bias.normal_(0, 0.1)
        head.bias_extractor.context.normal_(0, 0.02)
    return head.eval()


def student_head(teacher):
    head = build(
        dict(
            type='ReCLIPStudentHead',
            in_channels=64,
            channels=64,
            num_classes=C,
            class_names=NAMES,
            embed_dim=64,
            bias_extractor=dict(pe_channels=64, pe_grid=(14, 14)),
            feature_module=None))
    head.load_from_teacher(teacher)
    return head.eval()


def loop_grid(clip_file):
    """``[W, 14, 14]`` from the raw ``visual.positional_embedding`` with explicit loops."""
    pos = torch.load(clip_file, weights_only=True)['visual.positional_embedding']
    gh = gw = 224 // 16
    grid = torch.empty(pos.shape[1], gh, gw)
    for y in range(gh):
        for x in range(gw):
            grid[:, y, x] = pos[1 + y * gw + x]  # token 0 is CLS; patches row-major
    return grid


def loop_positional_features(grid, weight, bias):
    """1x1 projection ``P[:, y, x] = W·grid[:, y, x] + b`` pixel by pixel."""
    out = torch.empty(weight.shape[0], *grid.shape[1:])
    w = weight.reshape(weight.shape[0], -1)
    for y in range(grid.shape[1]):
        for x in range(grid.shape[2]):
            out[:, y, x] = w @ grid[:, y, x] + bias
    return out


def test_pe_grid_orientation_stage1_head(clip_file, teacher_head):
    grid = loop_grid(clip_file)
    assert torch.equal(teacher_head.text_encoder.image_pos_embed, grid)
    assert not torch.equal(grid, grid.transpose(1, 2))  # the check can tell
    extractor = teacher_head.bias_extractor
    with torch.no_grad():
        p = extractor.positional_features((14, 14))
        expected = loop_positional_features(grid, extractor.pe_proj.weight, extractor.pe_proj.bias)
        torch.testing.assert_close(p, expected, rtol=1e-5, atol=1e-5)
        # a non-square student grid: bicubic resize of the correctly oriented grid
        resized = F.interpolate(grid[None], size=(7, 20), mode='bicubic', align_corners=False)[0]
        torch.testing.assert_close(
            teacher_head.bias_extractor((7, 20)),
            bias_logits(
                loop_positional_features(resized, extractor.pe_proj.weight, extractor.pe_proj.bias),
                extractor.reference_embeddings()),
            rtol=1e-5,
            atol=1e-5)


def test_pe_grid_orientation_student_head(clip_file, teacher_head):
    student = student_head(teacher_head)
    grid = loop_grid(clip_file)
    assert torch.equal(student.bias_extractor.pos_embed, grid)
    resized = F.interpolate(grid[None], size=(9, 5), mode='bicubic', align_corners=False)[0]
    expected = bias_logits(
        loop_positional_features(resized, student.bias_extractor.pe_proj.weight,
                                 student.bias_extractor.pe_proj.bias),
        student.bias_extractor.reference)
    torch.testing.assert_close(student.bias_extractor((9, 5)), expected, rtol=1e-5, atol=1e-5)


def test_student_bias_cache_follows_load_state_dict(teacher_head):
    student = student_head(teacher_head)
    b1 = student.bias_extractor((6, 8))
    assert student.bias_extractor((6, 8)) is b1  # cached: everything it depends on is frozen
    state = {k: v.clone() for k, v in student.state_dict().items()}
    state['classifier.bias_extractor.reference'] *= -2
    state['classifier.bias_extractor.pe_proj.bias'] += 0.5
    student.load_state_dict(state, strict=True)
    b2 = student.bias_extractor((6, 8))
    assert b2 is not b1 and (b2 - b1).abs().max() > 1e-3
    fresh = bias_logits(
        student.bias_extractor.positional_features((6, 8)), student.bias_extractor.reference)
    torch.testing.assert_close(b2, fresh)
    # the decoder output follows too (the cache feeds the rectified logits)
    feats = F.normalize(torch.randn(1, 64, 6, 8, generator=torch.Generator().manual_seed(0)), dim=1)
    out = student.classifier(feats)
    student.bias_extractor._cache.clear()
    torch.testing.assert_close(out, student.classifier(feats))
