"""Test-time prompt denoising (docs/method.md §8) and the segmentor's test-time modes
(``pd_mode``, ``pd_fallback``, ``upsample_mode``) against direct computations."""
import pytest
import torch
import torch.nn.functional as F

from mmseg_reclip.models.segmentors import prompt_denoise
from tests.numeric_utils import assert_close_to_scale


def test_removes_classes_below_threshold():
    logits = torch.zeros(1, 3, 2, 2)
    logits[0, 0] = 1.0  # class 0 dominates everywhere
    logits[0, 1, 0, 0] = 2.0  # class 1 wins one pixel
    out = prompt_denoise(logits, threshold=0.9, temperature=10.0)
    probs = (10 * logits).softmax(1).flatten(2).amax(2)[0]
    for c in range(3):
        if probs[c] >= 0.9:
            assert torch.equal(out[0, c], logits[0, c])
        else:
            assert (out[0, c] == -100).all()
    assert probs[2] < 0.9 and (out[0, 2] == -100).all()


def test_never_removes_every_class():
    logits = torch.randn(2, 4, 3, 3) * 0.01  # flat: no class reaches 1.0
    out = prompt_denoise(logits, threshold=1.0)
    probs = (10 * logits).softmax(1).flatten(2).amax(2)
    best = probs.argmax(1)
    for b in range(2):
        assert torch.equal(out[b, best[b]], logits[b, best[b]])
        assert out[b].argmax(0).eq(best[b]).all()


def test_without_fallback_every_class_can_go():
    """Released behaviour: no class passes, every logit becomes the fill value."""
    logits = torch.randn(2, 4, 3, 3) * 0.01
    out = prompt_denoise(logits, threshold=1.0, fallback=False)
    assert (out == -100).all()
    # classes that pass stay untouched, with or without the fallback
    logits[0, 2, 1, 1] = 5.0  # softmax(10 x) saturates at that pixel
    out = prompt_denoise(logits, threshold=1.0, fallback=False)
    assert torch.equal(out[0, 2], logits[0, 2])
    assert (out[0, [0, 1, 3]] == -100).all() and (out[1] == -100).all()


# -- test-time modes of the segmentor (MaskCLIP path; ReCLIP inherits them) ------------
@pytest.fixture(scope='module')
def maskclip(tmp_path_factory):
    from mmengine.config import Config
    from mmseg.registry import MODELS

    from tests.clip_utils import TINY, save_random_clip
    clip = save_random_clip(str(tmp_path_factory.mktemp('clip') / 'tiny.pt'))
    cfg = Config.fromfile('configs/maskclip/maskclip_vit-b16_voc.py')
    cfg.model.backbone.update(model_name=TINY, pretrained=clip)
    cfg.model.decode_head.update(in_channels=64, templates='single')
    cfg.model.decode_head.text_encoder.update(model_name=TINY, pretrained=clip)
    return MODELS.build(cfg.model).eval()


def set_modes(model, **modes):
    for key, value in modes.items():
        setattr(model, key, value)


def test_upsample_modes(maskclip):
    img = torch.randn(1, 3, 64, 88)  # 4 x 6 grid over the 96-wide padded input
    metas = [dict(img_shape=(64, 88), ori_shape=(64, 88))]
    with torch.no_grad():
        grid = maskclip.grid_logits(img)
        set_modes(maskclip, upsample_mode='released', pd_threshold=None)
        released = maskclip.inference(img, metas)
        set_modes(maskclip, upsample_mode='padded_crop')
        padded_crop = maskclip.inference(img, metas)
    assert grid.shape == (1, 20, 4, 6)
    direct = F.interpolate(grid, size=(64, 88), mode='bilinear', align_corners=False)
    crop = F.interpolate(grid, size=(64, 96), mode='bilinear', align_corners=False)[..., :88]
    assert_close_to_scale(released, direct, rtol=1e-6)
    assert_close_to_scale(padded_crop, crop, rtol=1e-6)
    assert (released - padded_crop).abs().max() > 1e-3


def test_pd_modes(maskclip):
    img = torch.randn(1, 3, 64, 80)
    metas = [dict(img_shape=(64, 80), ori_shape=(64, 80))]
    with torch.no_grad():
        grid = maskclip.grid_logits(img)
        peak = (10 * grid).softmax(1).flatten(2).amax(2)[0]
        threshold = float(peak.sort(descending=True).values[2])  # three classes pass
        set_modes(
            maskclip,
            upsample_mode='released',
            pd_threshold=threshold,
            pd_mode='grid',
            pd_fallback=False)
        out = maskclip.inference(img, metas)
    keep = peak >= threshold
    assert keep.sum() == 3
    expected = torch.where(keep[None, :, None, None], grid, torch.tensor(-100.0))
    expected = F.interpolate(expected, size=(64, 80), mode='bilinear', align_corners=False)
    assert_close_to_scale(out, expected, rtol=1e-6)  # values up to 100 (the -100 fill)
    # grid-level peaks need the whole-image grid: slide mode is refused
    maskclip.test_cfg = dict(mode='slide', crop_size=(64, 64), stride=(32, 32))
    try:
        with pytest.raises(ValueError, match="pd_mode='grid'"):
            maskclip.inference(img, metas)
    finally:
        maskclip.test_cfg = dict(mode='whole')
        set_modes(
            maskclip,
            pd_threshold=None,
            pd_mode='upsampled',
            pd_fallback=True,
            upsample_mode='padded_crop')


@pytest.mark.parametrize('option', [dict(pd_mode='input'), dict(upsample_mode='crop')])
def test_unknown_mode_is_refused(option):
    from mmseg_reclip.models.segmentors import MaskCLIP
    with pytest.raises(ValueError, match=list(option)[0]):
        MaskCLIP(backbone=dict(), decode_head=dict(), **option)


def test_distiller_takes_the_same_denoise_path():
    """The distiller and the CLIP segmentors share one prompt-denoising path
    (:class:`PromptDenoiseMixin`): same settings, same result; the distiller has no
    grid-level mode."""
    from mmseg_reclip.models.segmentors import MaskCLIP, PromptDenoiseMixin, ReCLIPDistiller
    assert issubclass(MaskCLIP, PromptDenoiseMixin)
    assert issubclass(ReCLIPDistiller, PromptDenoiseMixin)
    assert ReCLIPDistiller.inference is MaskCLIP.inference is PromptDenoiseMixin.inference
    logits = torch.randn(2, 5, 6, 6, generator=torch.Generator().manual_seed(0))
    mixin = PromptDenoiseMixin()
    mixin.init_prompt_denoise(0.99, 10.0, 'upsampled', pd_fallback=False)
    assert torch.equal(
        mixin.denoise(logits, 'upsampled'), prompt_denoise(logits, 0.99, 10.0, fallback=False))
    assert mixin.denoise(logits, 'grid') is logits  # not this segmentor's stage
    mixin.init_prompt_denoise(None)
    assert mixin.denoise(logits) is logits  # off
    with pytest.raises(ValueError, match='pd_mode'):
        ReCLIPDistiller.init_prompt_denoise(
            ReCLIPDistiller.__new__(ReCLIPDistiller), 0.5, pd_mode='grid')
