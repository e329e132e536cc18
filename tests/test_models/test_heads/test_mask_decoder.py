"""RectifiedMaskDecoder: ``O = BN(Conv(concat(F, Lr)))`` against ``F.conv2d`` +
``F.batch_norm``, its initialisation, the seeded Gumbel masks, and swapping it."""
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.config import ConfigDict
from mmengine.logging import MessageHub
from mmengine.registry import init_default_scope
from mmseg.registry import MODELS

import mmseg_reclip  # noqa: F401
from mmseg_reclip.models.decode_heads import RectifiedMaskDecoder
from mmseg_reclip.models.utils import gumbel_softmax_hard
from mmseg_reclip.utils.seeding import step_generator
from tests.clip_utils import TINY, save_random_clip

C, D = 4, 16


def build(**kwargs):
    cfg = dict(type='RectifiedMaskDecoder', in_channels=D, num_classes=C)
    cfg.update(kwargs)
    return MODELS.build(cfg)


def randomize(decoder, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        norm = decoder.norm
        norm.running_mean.copy_(0.1 * torch.randn(C, generator=g))
        norm.running_var.copy_(0.5 + torch.rand(C, generator=g))
        norm.weight.copy_(1 + 0.2 * torch.randn(C, generator=g))
        norm.bias.copy_(0.1 * torch.randn(C, generator=g))
    return decoder


def test_forward_is_conv_then_bn():
    decoder = randomize(build(kernel_size=3)).eval()
    g = torch.Generator().manual_seed(1)
    feats, rect = torch.randn(2, D, 6, 7, generator=g), torch.randn(2, C, 6, 7, generator=g)
    x = F.conv2d(torch.cat([feats, rect], 1), decoder.conv.weight, decoder.conv.bias, padding=1)
    norm = decoder.norm
    expected = F.batch_norm(
        x,
        norm.running_mean,
        norm.running_var,
        norm.weight,
        norm.bias,
        training=False,
        eps=norm.eps)
    with torch.no_grad():
        out = decoder(feats, rect)
    assert out.shape == (2, C, 6, 7) and out.dtype == torch.float32
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
    # training: BN normalises with the batch statistics (mean 0 per class)
    decoder.train()
    out = decoder(feats, rect)
    torch.testing.assert_close(
        ((out - norm.bias[:, None, None]) / norm.weight[:, None, None]).mean(dim=(0, 2, 3)),
        torch.zeros(C),
        rtol=0,
        atol=1e-5)


def test_initialisation_and_kernel_check():
    torch.manual_seed(0)
    decoder = build(in_channels=64, num_classes=20)
    assert torch.equal(decoder.norm.weight, torch.ones(20))
    assert torch.equal(decoder.norm.bias, torch.zeros(20))
    assert torch.equal(decoder.conv.bias, torch.zeros(20))
    assert decoder.conv.padding == (2, 2) and decoder.conv.in_channels == 84
    fan_out = 20 * 5 * 5  # Kaiming normal, fan-out, ReLU gain: std = sqrt(2 / fan_out)
    assert abs(decoder.conv.weight.std().item() / (2 / fan_out)**0.5 - 1) < 0.05
    with pytest.raises(ValueError, match='kernel_size must be odd'):
        build(kernel_size=4)


def test_sample_masks_are_the_seeded_gumbel_draw():
    hub = MessageHub.get_instance('test_mask_decoder')
    hub.update_info('iter', 3)
    decoder = build(gumbel_scale=7.0, gumbel_tau=0.5, noise_seed=5)
    logits = torch.randn(2, C, 4, 4, generator=torch.Generator().manual_seed(2))
    masks = decoder.sample_masks(logits)
    expected = gumbel_softmax_hard(7.0 * logits, 0.5, 1, step_generator(logits.device, 5))
    assert torch.equal(masks, expected)
    assert torch.equal(masks.sum(1), torch.ones(2, 4, 4))  # one-hot over classes


@MODELS.register_module(force=True)
class _LinearDecoderForTest(nn.Module):
    """A swapped-in mask decoder: ``O = Lr`` (no conv, no BN)."""

    def __init__(self, in_channels, num_classes, norm_cfg=None):
        super().__init__()

    def forward(self, feats, rectified):
        return rectified

    def sample_masks(self, logits):
        return F.one_hot(logits.argmax(1), logits.shape[1]).permute(0, 3, 1, 2).float()


def test_head_takes_a_swapped_mask_decoder(tmp_path):
    clip = save_random_clip(str(tmp_path / 'tiny.pt'), TINY)
    init_default_scope('mmseg')
    head = MODELS.build(
        ConfigDict(
            type='ReCLIPHead',
            class_names=['cat', 'dog', 'sky'],
            num_classes=3,
            in_channels=64,
            templates='single',
            show_progress=False,
            query_cache_dir=None,
            bias_extractor=dict(num_context=4),
            mask_decoder=dict(type='_LinearDecoderForTest'),
            text_encoder=dict(type='OpenCLIPTextEncoder', model_name=TINY, pretrained=clip)))
    head.init_weights()
    head.eval()
    assert not isinstance(head.mask_decoder, RectifiedMaskDecoder)
    feats = F.normalize(torch.randn(1, 64, 3, 5), dim=1)
    with torch.no_grad():
        expected = head.query_logits(feats) - head.bias_extractor((3, 5))
        torch.testing.assert_close(head.forward((feats, )), expected, rtol=0, atol=0)
