"""compute_bias_maps returns exactly the tensors of the segmentors' heads (MaskCLIP,
ReCLIP, the distilled student)."""
import pytest
import torch

from mmseg_reclip.evaluation.bias_maps import bias_map, compute_bias_maps
from tests.clip_utils import save_random_clip
from tests.e2e_utils import MASKCLIP, STAGE1, STAGE2, build_model, clip_options, student_options


@pytest.fixture(scope='module')
def models(tmp_path_factory):
    clip = save_random_clip(str(tmp_path_factory.mktemp('bias_maps') / 'tiny.pt'))
    torch.manual_seed(0)
    reclip = build_model(STAGE1, clip_options(clip))
    with torch.no_grad():  # a non-trivial "trained" head: random decoder BN statistics
        head = reclip.decode_head
        head.mask_decoder.norm.running_mean.normal_()
        head.mask_decoder.norm.running_var.uniform_(0.5, 2)
        head.bias_extractor.pe_proj.weight.normal_(0, 0.1)
    student = build_model(STAGE2, student_options('unused.pth'))
    student.decode_head.load_from_teacher(reclip.decode_head)
    maskclip = build_model(MASKCLIP, clip_options(clip))
    inputs = torch.randn(2, 3, 48, 64)
    return dict(reclip=reclip, student=student, maskclip=maskclip, inputs=inputs)


def metas(inputs):
    shape = tuple(inputs.shape[-2:])
    return [dict(img_shape=shape, ori_shape=shape, pad_shape=shape)] * len(inputs)


@torch.no_grad()
def test_reclip_maps_are_the_heads_tensors(models):
    model, x = models['reclip'], models['inputs']
    maps = compute_bias_maps(model, x)
    head = model.decode_head
    feats = model.extract_feat(x)[0]
    lq = head.query_logits(feats)
    b = head.bias_extractor(feats.shape[-2:])
    torch.testing.assert_close(maps['Lq'], lq, rtol=0, atol=0)
    torch.testing.assert_close(maps['B'], b, rtol=0, atol=0)
    torch.testing.assert_close(maps['Lr'], lq - b, rtol=0, atol=0)
    torch.testing.assert_close(maps['logits'], head.forward([feats]), rtol=0, atol=0)
    # The final masks are the segmentor's own prediction (prompt denoising included).
    model.pd_threshold = 0.5
    maps = compute_bias_maps(model, x)
    expected = model.inference(x, metas(x)).argmax(dim=1)
    assert torch.equal(maps['masks'], expected)
    model.pd_threshold = 1.0
    # Stand-alone bias map: no image needed.
    torch.testing.assert_close(bias_map(head, (5, 7)), head.bias_extractor((5, 7)))
    assert bias_map(head, (5, 7)).shape == (20, 5, 7)


@torch.no_grad()
def test_student_maps_are_the_heads_tensors(models):
    model, x = models['student'], models['inputs']
    maps = compute_bias_maps(model, x)
    head = model.decode_head
    feats = head.forward_features(model.extract_feat(x))
    lq = head.query_logits(feats)
    b = head.bias_extractor(feats.shape[-2:])
    torch.testing.assert_close(maps['Lq'], lq, rtol=0, atol=0)
    torch.testing.assert_close(maps['B'], b, rtol=0, atol=0)
    torch.testing.assert_close(maps['Lr'], lq - b, rtol=0, atol=0)
    torch.testing.assert_close(maps['logits'], head.classifier(feats), rtol=0, atol=0)
    assert torch.equal(maps['masks'], model.inference(x, metas(x)).argmax(dim=1))
    # The student inherited the teacher's bias: same B on the same grid.
    teacher = models['reclip'].decode_head
    torch.testing.assert_close(
        bias_map(head, (6, 8)), teacher.bias_extractor((6, 8)), rtol=1e-5, atol=1e-6)


@torch.no_grad()
def test_maskclip_has_no_bias(models):
    model, x = models['maskclip'], models['inputs']
    maps = compute_bias_maps(model, x)
    assert set(maps) == {'Lq', 'masks'}
    feats = model.extract_feat(x)[0]
    torch.testing.assert_close(maps['Lq'], model.decode_head.query_logits(feats))
    assert torch.equal(maps['masks'], model.inference(x, metas(x)).argmax(dim=1))
    assert bias_map(model.decode_head, (4, 4)) is None


@torch.no_grad()
@pytest.mark.parametrize('upsample_mode', ['padded_crop', 'released'])
def test_masks_follow_the_models_upsampling(models, upsample_mode):
    """On a 40x56 input (not a multiple of the 16-px patch) the two upsampling modes
    give other predictions; the bias maps' masks are the model's own in either mode."""
    model = models['reclip']
    x = torch.randn(2, 3, 40, 56, generator=torch.Generator().manual_seed(3))
    saved = model.upsample_mode, model.pd_threshold
    try:
        model.pd_threshold = None
        model.upsample_mode = upsample_mode
        maps = compute_bias_maps(model, x)
        own = model.inference(x, metas(x)).argmax(dim=1)
        model.upsample_mode = ({'padded_crop', 'released'} - {upsample_mode}).pop()
        other = model.inference(x, metas(x)).argmax(dim=1)
    finally:
        model.upsample_mode, model.pd_threshold = saved
    assert (own != other).sum() > 100  # the two modes really differ on this input
    assert torch.equal(maps['masks'], own)


@torch.no_grad()
def test_masks_follow_the_models_batch_padding(models):
    """'released' mode resizes to the unpadded size: the report passes the data
    preprocessor's padding as the model's whole-image inference reads it."""
    model = models['reclip']
    x = torch.randn(1, 3, 48, 64, generator=torch.Generator().manual_seed(4))
    padding = (0, 8, 0, 8)  # a 40x56 image padded to 48x64
    meta = dict(img_shape=(48, 64), ori_shape=(40, 56), pad_shape=(48, 64), padding_size=padding)
    saved = model.upsample_mode, model.pd_threshold
    try:
        model.pd_threshold = None
        model.upsample_mode = 'released'
        maps = compute_bias_maps(model, x, padding)
        own = model.inference(x, [meta]).argmax(dim=1)[:, :40, :56]
        unpadded = compute_bias_maps(model, x)['masks'][:, :40, :56]
    finally:
        model.upsample_mode, model.pd_threshold = saved
    assert (unpadded != own).sum() > 100  # the padding matters on this input
    assert torch.equal(maps['masks'][:, :40, :56], own)
