"""ReferenceBiasExtractor: built alone from a config dict, ``B = Conv1x1(PE)·Rᵀ`` against
loops, its per-size cache, the inherited (CLIP-free) mode, and swapping it in a head."""
import copy

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.config import ConfigDict
from mmengine.registry import init_default_scope
from mmseg.registry import MODELS

import mmseg_reclip  # noqa: F401
from mmseg_reclip.models.decode_heads import ReferenceBiasExtractor
from tests.clip_utils import TINY, save_random_clip

NAMES = [['cat'], ['dog'], ['sky']]
C, D = 3, 64  # tiny CLIP: embedding dim 64, image width 64


@pytest.fixture(scope='module')
def encoder(tmp_path_factory):
    clip = save_random_clip(str(tmp_path_factory.mktemp('clip') / 'tiny.pt'), TINY)
    init_default_scope('mmseg')
    return MODELS.build(dict(type='OpenCLIPTextEncoder', model_name=TINY, pretrained=clip))


def build_learnt(encoder, **kwargs):
    cfg = dict(
        type='ReferenceBiasExtractor',
        num_classes=C,
        embed_dim=D,
        text_encoder=encoder,
        class_names=NAMES,
        num_context=4)
    cfg.update(kwargs)
    extractor = MODELS.build(cfg)
    with torch.no_grad():  # non-trivial R and P
        extractor.context.normal_(0, 0.02, generator=torch.Generator().manual_seed(0))
        extractor.pe_proj.bias.normal_(0, 0.1, generator=torch.Generator().manual_seed(1))
    return extractor


def loop_bias(extractor, size):
    """``B[c, y, x] = Σ_d (W·PE[:, y, x] + b)[d] · R[c, d]`` with explicit loops."""
    grid = F.interpolate(
        extractor.pe_grid()[None], size=size, mode='bicubic', align_corners=False)[0].double()
    weight = extractor.pe_proj.weight[:, :, 0, 0].double()
    bias = extractor.pe_proj.bias.double()
    ref = extractor.reference_embeddings().double()
    out = torch.zeros(ref.shape[0], *size, dtype=torch.float64)
    for y in range(size[0]):
        for x in range(size[1]):
            pos = weight @ grid[:, y, x] + bias
            out[:, y, x] = ref @ pos
    return out.float()


def test_built_alone_from_a_config_dict(encoder):
    """The bias analysis route: the extractor without any head or mask decoder."""
    extractor = build_learnt(encoder).eval()
    assert isinstance(extractor, ReferenceBiasExtractor) and extractor.learnt
    # the text encoder is referenced, not owned: nothing of CLIP in its state dict
    assert set(extractor.state_dict()) == {'context', 'pe_proj.weight', 'pe_proj.bias'}
    with torch.no_grad():
        for size in [(14, 14), (5, 9)]:
            torch.testing.assert_close(
                extractor(size), loop_bias(extractor, size), rtol=1e-4, atol=1e-5)
    # R: global Frobenius normalisation (released)
    torch.testing.assert_close(extractor.reference_embeddings().norm(), torch.tensor(1.0))


def test_token0_context_init(encoder):
    extractor = MODELS.build(
        dict(
            type='ReferenceBiasExtractor',
            num_classes=C,
            embed_dim=D,
            text_encoder=encoder,
            class_names=NAMES,
            num_context=4))
    token0 = encoder.token_embeddings(torch.zeros(1, dtype=torch.long))
    assert torch.equal(extractor.context, token0.expand(4, -1))
    with pytest.raises(ValueError, match='ctx_init'):
        build_learnt(encoder, ctx_init='zeros')
    with pytest.raises(ValueError, match='ref_norm'):
        build_learnt(encoder, ref_norm='frobenius')


def test_cache_per_size_outside_training_and_gradients_inside(encoder):
    extractor = build_learnt(encoder)
    extractor.train()
    b = extractor((4, 4))
    assert b.requires_grad and extractor((4, 4)) is not b  # never cached while training
    b.sum().backward()
    assert extractor.context.grad is not None and extractor.pe_proj.weight.grad is not None
    extractor.eval()
    b1 = extractor((4, 4))
    assert not b1.requires_grad and extractor((4, 4)) is b1
    assert extractor((4, 5)) is not b1
    state = copy.deepcopy(extractor.state_dict())
    state['pe_proj.bias'] += 1.0
    extractor.load_state_dict(state)  # a new state: the cache is dropped
    b2 = extractor((4, 4))
    assert not torch.equal(b2, b1)
    torch.testing.assert_close(b2, loop_bias(extractor, (4, 4)), rtol=1e-4, atol=1e-5)


def test_inherited_mode_needs_no_clip_and_reproduces_the_teacher(encoder):
    teacher = build_learnt(encoder).eval()
    student = MODELS.build(
        dict(
            type='ReferenceBiasExtractor',
            num_classes=C,
            embed_dim=D,
            pe_channels=64,
            pe_grid=(14, 14)))
    assert not student.learnt and student.text_encoder is None
    assert set(student.state_dict()) == {'reference', 'pos_embed', 'pe_proj.weight', 'pe_proj.bias'}
    student.inherit(teacher)
    student.eval()
    with torch.no_grad():
        for size in [(14, 14), (7, 20)]:
            assert torch.equal(student(size), teacher(size))
    # a snapshot: later changes to the teacher do not reach the copy
    with torch.no_grad():
        teacher.pe_proj.weight.add_(1)
    assert torch.equal(student.pe_proj.weight + 1, teacher.pe_proj.weight)
    with pytest.raises(TypeError, match='inherited-mode'):
        teacher.inherit(student)
    wrong = MODELS.build(
        dict(
            type='ReferenceBiasExtractor',
            num_classes=C,
            embed_dim=D,
            pe_channels=32,
            pe_grid=(14, 14)))
    with pytest.raises(ValueError, match='pe_channels'):
        wrong.inherit(teacher)


@MODELS.register_module(force=True)
class _ZeroBiasForTest(nn.Module):
    """A swapped-in, image-dependent bias extractor (the contract of
    :class:`RectifiedClassifier`): ``B = 0`` per image, ``[B, C, h, w]``."""

    def __init__(self, num_classes, embed_dim, text_encoder=None, class_names=None):
        super().__init__()
        self.num_classes = num_classes

    def forward(self, size, feats=None):
        return feats.new_zeros(feats.shape[0], self.num_classes, *size)


def test_head_takes_a_swapped_bias_extractor(tmp_path):
    clip = save_random_clip(str(tmp_path / 'tiny.pt'), TINY)
    init_default_scope('mmseg')
    head = MODELS.build(
        ConfigDict(
            type='ReCLIPHead',
            class_names=NAMES,
            num_classes=C,
            in_channels=D,
            templates='single',
            show_progress=False,
            query_cache_dir=None,
            bias_extractor=dict(type='_ZeroBiasForTest'),
            text_encoder=dict(type='OpenCLIPTextEncoder', model_name=TINY, pretrained=clip)))
    head.init_weights()
    head.eval()
    feats = F.normalize(torch.randn(2, D, 5, 6), dim=1)
    with torch.no_grad():
        # B = 0: the decoder sees the plain query logits
        expected = head.mask_decoder(feats, head.query_logits(feats))
        torch.testing.assert_close(head.forward((feats, )), expected, rtol=0, atol=0)
        maps = head.classifier.intermediates(feats)
        assert maps['B'].shape == (2, C, 5, 6)
        assert torch.equal(maps['Lr'], maps['Lq']) and torch.equal(maps['O'], expected)
