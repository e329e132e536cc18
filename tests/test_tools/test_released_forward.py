"""The released configs predict like the authors' released test (issue: released-forward
fidelity): a non-multiple-of-16 image, prompt denoising at the released thresholds
(including 1.0), against the independent re-implementation in
:mod:`tests.released_reference`; and each of our own defaults breaks that equality."""

import pytest
import torch
from mmengine.config import Config
from mmengine.runner import load_checkpoint
from mmseg.structures import SegDataSample

from tests.numeric_utils import assert_close_to_scale
from tests.released_reference import (C, M, archive_clip_file, build_released_segmentor,
                                      load_converter, released_forward, released_tensors,
                                      released_test, write_released)
from tests.tool_utils import REPO_ROOT


@pytest.fixture(scope='module')
def clip_file(tmp_path_factory):
    """Random tiny CLIP saved like a state dict from OpenAI's archive."""
    return archive_clip_file(tmp_path_factory)


RESIZED = (64, 88)  # resized test image: 88 is not a multiple of 16 (4 x 6 grid over 96)
ORIGINAL = (50, 69)  # original image size: the released test resizes back to it
THRESHOLDS = (0.3, 0.5, 0.85, 0.95, 1.0)  # released PD values (VOC 1.0, ..., COCO 0.95)


@pytest.fixture(scope='module')
def released_models(tmp_path_factory, clip_file):
    """Per decoder variant: the converted model (released VOC config), its released
    tensors and the independent grid-level output for one image. ``confident`` scales
    the decoder's BatchNorm so that some classes saturate softmax(10 x) (pass PD 1.0)."""
    folder = tmp_path_factory.mktemp('released')
    torch.manual_seed(5)
    img = torch.randn(1, 3, *RESIZED)
    out = {}
    for variant, scale in (('plain', 1.0), ('confident', 40.0)):
        tensors = released_tensors(seed=1)
        tensors['decoder_norm2.weight'] = tensors['decoder_norm2.weight'] * scale
        tensors['decoder_norm2.bias'] = tensors['decoder_norm2.bias'] * scale
        src = write_released(folder / f'{variant}.pth', tensors)
        dst = str(folder / f'{variant}_converted.pth')
        load_converter().convert(src, dst, num_classes=C)
        model = build_released_segmentor(clip_file)
        load_checkpoint(model, dst, map_location='cpu', strict=False, logger='silent')
        model.eval()
        grid = released_forward(clip_file, tensors, img)['out']
        out[variant] = (model, grid)
    return img, out


def predict(model, img, **settings):
    """Our segmentor's test route (``predict``: inference + mmseg's postprocessing) with
    some test-time settings changed for this call."""
    saved = {k: getattr(model, k) for k in settings}
    for key, value in settings.items():
        setattr(model, key, value)
    try:
        with torch.no_grad():
            sample = SegDataSample(metainfo=dict(img_shape=RESIZED, ori_shape=ORIGINAL))
            result = model.predict(img, [sample])[0]
    finally:
        for key, value in saved.items():
            setattr(model, key, value)
    return result.seg_logits.data[None], result.pred_sem_seg.data


@pytest.mark.parametrize('variant', ['plain', 'confident'])
@pytest.mark.parametrize('threshold', (None, ) + THRESHOLDS)
def test_released_config_predicts_like_released_test(released_models, variant, threshold):
    img, models = released_models
    model, grid = models[variant]
    # no threshold: the released test with PD 0 (every peak passes)
    logits, pred = released_test(grid, RESIZED, ORIGINAL, threshold or 0.0)
    our_logits, our_pred = predict(model, img, pd_threshold=threshold)
    assert our_logits.shape == (1, C) + ORIGINAL
    assert_close_to_scale(our_logits, logits, rtol=1e-5)  # logits near 5: not absolute
    assert torch.equal(our_pred, pred)


def test_released_modes_are_what_makes_it_match(released_models):
    """Each released mode is needed: our own defaults differ from the released test on
    this image and these thresholds (so the comparison above can fail)."""
    img, models = released_models
    # upsampling: padded size + crop moves the logits of a non-multiple-of-16 image
    model, grid = models['plain']
    logits, _ = released_test(grid, RESIZED, ORIGINAL, 0.0)
    ours, _ = predict(model, img, upsample_mode='padded_crop', pd_threshold=None)
    assert (ours - logits).abs().max() > 1e-3
    # no fallback: no class reaches 1.0, so the released test removes every class (all
    # logits -100: the argmax is class 0 up to the rounding of the bilinear resizes,
    # which the released mode reproduces op for op); our fallback keeps the best class
    logits, _ = released_test(grid, RESIZED, ORIGINAL, 1.0)
    assert (logits + 100).abs().max() < 1e-3
    ours, pred = predict(model, img, pd_threshold=1.0, pd_fallback=True)
    assert (ours > -99).any() and len(pred.unique()) == 1
    # grid-level peaks: the kept classes differ from peaks taken after upsampling for
    # some (decoder, threshold)
    differs = 0
    for variant in models:
        model, grid = models[variant]
        for threshold in THRESHOLDS:
            logits, _ = released_test(grid, RESIZED, ORIGINAL, threshold)
            ours, _ = predict(model, img, pd_threshold=threshold, pd_mode='upsampled')
            kept = (logits > -99).flatten(2).any(-1)
            kept_ours = (ours > -99).flatten(2).any(-1)
            differs += int(not torch.equal(kept, kept_ours))
    assert differs >= 1
    # and the released thresholds keep different class sets (PD is really exercised):
    # plain keeps 6, 1, 1, 0, 0 classes at 0.3 ... 1.0, confident 6, 5, 5, 5, 5
    kept_sets = {
        tuple((released_test(grid, RESIZED, ORIGINAL, t)[0] > -99).flatten(2).any(-1)[0].tolist())
        for _, grid in models.values()
        for t in THRESHOLDS
    }
    assert len(kept_sets) >= 4


def test_released_upsampling_ignores_batch_padding(released_models):
    """A data preprocessor that pads test batches to a multiple of 16 (test_cfg) changes
    nothing: the released resize target is the unpadded size."""
    _, models = released_models
    model, _ = models['confident']
    raw = torch.randint(0, 256, (3, ) + RESIZED, dtype=torch.uint8)

    def run():
        sample = SegDataSample(metainfo=dict(img_shape=RESIZED, ori_shape=ORIGINAL))
        with torch.no_grad():
            return model.test_step(dict(inputs=[raw], data_samples=[sample]))[0]

    plain = run()
    preprocessor = model.data_preprocessor
    preprocessor.test_cfg = dict(size_divisor=16)
    try:
        padded = run()
    finally:
        preprocessor.test_cfg = None
    assert tuple(padded.metainfo['img_padding_size']) == (0, 8, 0, 0)
    assert_close_to_scale(padded.seg_logits.data, plain.seg_logits.data, rtol=1e-5)
    assert torch.equal(padded.pred_sem_seg.data, plain.pred_sem_seg.data)


@pytest.mark.parametrize('dataset,num_classes,threshold', [('voc', 20, 1.0), ('context', 59, 0.85),
                                                           ('ade', 150, 0.5),
                                                           ('cityscapes', 19, 0.5),
                                                           ('cocostuff27', 27, 0.95)])
def test_every_released_config_has_the_released_settings(dataset, num_classes, threshold):
    """All five released configs (one shared base): released eps (image tower only),
    upsampling, prompt denoising with the released threshold, tokenisation."""
    cfg = Config.fromfile(str(REPO_ROOT / f'configs/reclip/reclip_vit-b16_released_{dataset}.py'))
    model, head = cfg.model, cfg.model.decode_head
    assert model.backbone.ln_eps == 1e-6
    assert head.text_encoder.get('ln_eps') is None  # CLIP's 1e-5 on the text tower
    assert (model.upsample_mode, model.pd_mode, model.pd_fallback) == \
        ('released', 'grid', False)
    assert model.pd_threshold == threshold and model.test_cfg.mode == 'whole'
    extractor = head.bias_extractor
    assert (extractor.num_context, extractor.ref_norm, extractor.name_token_mode) == \
        (M, 'global', 'released')
    assert head.num_classes == num_classes == cfg.num_classes
    # the matching own config differs only in the released switches
    own = Config.fromfile(str(REPO_ROOT / f'configs/reclip/reclip_vit-b16_{dataset}.py'))
    assert own.model.pd_threshold == threshold
    assert own.test_dataloader == cfg.test_dataloader
    assert own.custom_hooks == cfg.custom_hooks
