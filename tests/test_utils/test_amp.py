"""Mixed precision on CPU (bf16 autocast): the fp32 islands, a stage-1 and a stage-2
training step through ``DeviceAmpOptimWrapper``, inference, and Q built under autocast.

Tolerances: bf16 keeps 8 mantissa bits (relative rounding 2^-9 ≈ 2e-3 per operation).
The frozen CLIP features and the logits ``Lq − B`` after ~10 low-precision layers are
compared with an absolute tolerance of 0.05 on cosines/logits of magnitude ≤ 1 (rectified
logits ≤ ~3); losses within 5 % relative; the argmax map must agree on ≥ 90 % of pixels.
"""
import copy

import pytest
import torch
from mmengine.registry import init_default_scope
from mmseg.structures import SegDataSample

import mmseg_reclip  # noqa: F401  (registrations)
from mmseg_reclip.models.losses import reclip_contrastive_loss
from mmseg_reclip.models.utils import gumbel_softmax_hard
from mmseg_reclip.utils.amp import precision_context
from tests.clip_utils import save_random_clip
from tests.distill_utils import student_cfg, teacher_cfg

BF16 = dict(device_type='cpu', dtype=torch.bfloat16)


def build(cfg):
    from mmengine.config import ConfigDict
    from mmseg.registry import MODELS
    init_default_scope('mmseg')
    return MODELS.build(ConfigDict(copy.deepcopy(cfg)))


@pytest.fixture(scope='module')
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp('amp')
    clip = save_random_clip(str(root / 'tiny_clip.pt'))
    torch.manual_seed(0)
    teacher = build(teacher_cfg(clip))
    teacher.init_weights()
    head = teacher.decode_head
    with torch.no_grad():
        head.bias_extractor.context.normal_(0, 0.02)
        head.bias_extractor.pe_proj.weight.normal_(0, 0.05)
        head.mask_decoder.norm.running_var.uniform_(0.5, 2.0)
    ckpt = str(root / 'teacher.pth')
    classes = tuple(n[0] for n in head.class_names)
    torch.save(
        dict(meta=dict(dataset_meta=dict(classes=classes)), state_dict=teacher.state_dict()), ckpt)
    return clip, ckpt


def samples(n=2, size=(64, 64)):
    hyps = ((1, 3), (0, 5, 7))
    out = []
    for i in range(n):
        s = SegDataSample()
        s.set_metainfo(
            dict(img_shape=size, ori_shape=size, pad_shape=size, hypothesis=list(hyps[i % 2])))
        out.append(s)
    return out


def images(n=2, size=(64, 64), seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, *size, generator=g)


def wrapper_for(model, dtype):
    cfg = dict(
        type='OptimWrapper',
        optimizer=dict(type='SGD', lr=0.01, momentum=0.9),
        constructor='TrainableOptimWrapperConstructor')
    if dtype is not None:
        cfg.update(type='DeviceAmpOptimWrapper', dtype=dtype)
    from mmseg.registry import OPTIM_WRAPPER_CONSTRUCTORS
    ctor = OPTIM_WRAPPER_CONSTRUCTORS.build(
        dict(type=cfg.pop('constructor'), optim_wrapper_cfg=cfg))
    return ctor(model)


def train_step(model, wrapper, inputs, data):
    """The runner's train step: loss under the wrapper's (autocast) context, update."""
    model.train()
    with wrapper.optim_context(model):
        losses = model.loss(inputs, data)
    loss = sum(v for k, v in losses.items() if 'loss' in k)
    wrapper.backward(loss)
    grads = {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}
    wrapper.step()
    wrapper.zero_grad()
    return losses, grads


# ------------------------------------------------------------------------ fp32 islands
def test_gumbel_is_fp32_under_autocast():
    g = torch.Generator().manual_seed(0)
    logits = 100 * torch.randn(2, 5, 6, 7, generator=g).bfloat16().float()
    ref = gumbel_softmax_hard(logits, 1.0, 1, torch.Generator().manual_seed(1))
    with torch.autocast(**BF16):
        got = gumbel_softmax_hard(logits.bfloat16(), 1.0, 1, torch.Generator().manual_seed(1))
    assert got.dtype == torch.float32
    assert torch.equal(got, ref)  # same noise, same fp32 arithmetic: bit-identical


def test_contrastive_loss_is_fp32_under_autocast():
    g = torch.Generator().manual_seed(0)
    feats = torch.nn.functional.normalize(torch.randn(2, 16, 4, 4, generator=g), dim=1)
    masks = torch.nn.functional.one_hot(torch.randint(0, 3, (2, 4, 4), generator=g),
                                        3).permute(0, 3, 1, 2).float()
    queries = torch.nn.functional.normalize(torch.randn(3, 16, generator=g), dim=1)
    hyp = torch.tensor([[1, 0, 1], [0, 1, 1]], dtype=torch.bool)
    ref = reclip_contrastive_loss(feats, masks, queries, hyp)
    with torch.autocast(**BF16):
        got = reclip_contrastive_loss(feats, masks, queries, hyp)
    assert got.dtype == torch.float32
    assert torch.equal(got, ref)


def test_distill_losses_are_fp32_under_autocast():
    """Both distillation losses: fp32 output from bf16 inputs under autocast, and the
    same value as their fp32 computation of the same (bf16-rounded) inputs."""
    from mmseg_reclip.models.losses.distill_losses import (feature_guided_l1_loss,
                                                           mask_guided_ce_loss)
    g = torch.Generator().manual_seed(0)
    logits = (10 * torch.randn(2, 5, 6, 7, generator=g)).bfloat16()
    target = torch.randint(0, 5, (2, 24, 28), generator=g)
    target[0, :3] = 255
    s_feats = torch.randn(2, 8, 6, 7, generator=g).bfloat16()
    t_feats = torch.randn(2, 8, 24, 28, generator=g)
    valid = torch.rand(2, 24, 28, generator=g) > 0.3
    refs = (mask_guided_ce_loss(logits.float(),
                                target), feature_guided_l1_loss(s_feats.float(), t_feats, valid))
    with torch.autocast(**BF16):
        gots = (mask_guided_ce_loss(logits,
                                    target), feature_guided_l1_loss(s_feats, t_feats, valid))
    for got, ref in zip(gots, refs):
        assert got.dtype == torch.float32
        assert torch.equal(got, ref)


def test_mask_decoder_norm_and_inherited_bias_are_fp32_under_autocast(files):
    """The decoder's BN output (training: batch statistics; eval: running ones) and the
    student's inherited bias B are fp32 under bf16 autocast (the teacher's learnt B is
    not an island: it runs under autocast with the rest of its forward)."""
    model = build(teacher_cfg(files[0]))
    head = model.decode_head
    g = torch.Generator().manual_seed(0)
    feats = torch.nn.functional.normalize(torch.randn(2, 64, 5, 6, generator=g), dim=1)
    rect = torch.randn(2, 20, 5, 6, generator=g)
    for training in (True, False):
        head.mask_decoder.train(training)
        with torch.autocast(**BF16):
            out = head.mask_decoder(feats, rect)
        assert out.dtype == torch.float32, training
        assert head.mask_decoder.norm.running_mean.dtype == torch.float32
    # the student's inherited (frozen) B: an fp32 island, bit-identical to fp32
    student = build(student_cfg(*files))
    student.init_weights()
    extractor = student.decode_head.bias_extractor
    fresh = copy.deepcopy(extractor)  # an empty cache: computed under autocast, not reused
    ref = extractor((5, 6))
    with torch.autocast(**BF16):
        got = fresh((5, 6))
    assert got.dtype == torch.float32
    assert torch.equal(got, ref)


def test_device_amp_wrapper_on_cpu(files):
    model = build(teacher_cfg(files[0]))
    wrapper = wrapper_for(model, 'bfloat16')
    assert type(wrapper).__name__ == 'DeviceAmpOptimWrapper'
    assert wrapper.cast_dtype == torch.bfloat16
    assert 'loss_scaler' in wrapper.state_dict()
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match='bfloat16'):
            wrapper_for(model, 'float16')


# ------------------------------------------------------------------ stage 1 under AMP
def test_stage1_step_bf16_close_to_fp32(files):
    torch.manual_seed(0)
    ref_model = build(teacher_cfg(files[0]))
    ref_model.init_weights()
    amp_model = copy.deepcopy(ref_model)
    inputs, data = images(), samples()
    ref_losses, ref_grads = train_step(ref_model, wrapper_for(ref_model, None), inputs, data)
    amp_losses, amp_grads = train_step(amp_model, wrapper_for(amp_model, 'bfloat16'), inputs, data)
    ref, amp = ref_losses['decode.loss_contrast'], amp_losses['decode.loss_contrast']
    assert amp.dtype == torch.float32 and torch.isfinite(amp)
    assert abs(amp.item() - ref.item()) <= 0.05 * abs(ref.item())
    assert set(amp_grads) == set(ref_grads)
    for name, g in amp_grads.items():
        assert g.dtype == torch.float32 and torch.isfinite(g).all(), name
    # BN statistics were updated in fp32 and stayed finite
    bn = amp_model.decode_head.mask_decoder.norm
    assert bn.running_mean.dtype == torch.float32 and torch.isfinite(bn.running_var).all()
    for (n, p), (_, q) in zip(ref_model.named_parameters(), amp_model.named_parameters()):
        if p.requires_grad:
            assert p.dtype == q.dtype == torch.float32, n
            assert torch.isfinite(q).all(), n


def test_queries_built_under_autocast_are_fp32_exact(files):
    ref = build(teacher_cfg(files[0]))
    amp = build(teacher_cfg(files[0]))
    with torch.autocast(**BF16):
        q_amp = amp.decode_head.queries()
    q_ref = ref.decode_head.queries()
    assert q_amp.dtype == torch.float32
    assert torch.equal(q_amp, q_ref)


def test_inference_bf16_close_to_fp32(files):
    torch.manual_seed(0)
    model = build(teacher_cfg(files[0]))
    model.init_weights()
    with torch.no_grad():
        model.decode_head.bias_extractor.context.normal_(0, 0.02)
    model.eval()
    img = images(1, (64, 96), seed=3)
    metas = [dict(img_shape=(64, 96), ori_shape=(64, 96), pad_shape=(64, 96))]
    with torch.no_grad():
        ref = model.encode_decode(img, metas)
        model.decode_head.bias_extractor._cache.clear()
        with precision_context('bf16', 'cpu'):
            amp = model.encode_decode(img, metas)  # caches a bias computed under bf16
        again = model.encode_decode(img, metas)  # fp32 after bf16: not the bf16 bias
    assert torch.isfinite(amp).all()
    assert (amp.float() - ref).abs().max() <= 0.05 * max(1.0, ref.abs().max().item())
    agree = (amp.argmax(1) == ref.argmax(1)).float().mean().item()
    assert agree >= 0.9, agree
    assert torch.equal(again, ref)
    # the bias cache keeps the bf16 and the fp32 bias apart
    assert len(model.decode_head.bias_extractor._cache) == 2


def test_crop_vote_scores_bf16_close_to_fp32(files):
    model = build(teacher_cfg(files[0]))
    model.eval()
    crops = images(6, (224, 224), seed=4)
    ref = model.global_class_scores(crops)
    with precision_context('bf16', 'cpu'):
        amp = model.global_class_scores(crops)
    assert torch.isfinite(amp).all()
    assert (amp.float() - ref).abs().max() <= 0.05


# ------------------------------------------------------------------ stage 2 under AMP
def test_stage2_step_bf16_close_to_fp32(files):
    clip, ckpt = files
    torch.manual_seed(0)
    ref_model = build(student_cfg(clip, ckpt))
    ref_model.init_weights()
    amp_model = copy.deepcopy(ref_model)
    inputs, data = images(), samples()
    ref_losses, _ = train_step(ref_model, wrapper_for(ref_model, None), inputs, data)
    amp_losses, amp_grads = train_step(amp_model, wrapper_for(amp_model, 'bfloat16'), inputs, data)
    assert set(ref_losses) == set(amp_losses)
    for key, ref in ref_losses.items():
        if 'loss' not in key:
            continue
        amp = amp_losses[key]
        assert amp.dtype == torch.float32 and torch.isfinite(amp), key
        assert abs(amp.item() - ref.item()) <= 0.05 * abs(ref.item()) + 1e-3, key
    assert amp_grads and all(torch.isfinite(g).all() for g in amp_grads.values())


# ------------------------------------------------------------------ GPU: fp16 + scaler
@pytest.mark.skipif(not torch.cuda.is_available(), reason='fp16 autocast needs a GPU')
@pytest.mark.parametrize('wrapper_type', ['AmpOptimWrapper', 'DeviceAmpOptimWrapper'])
def test_stage1_fp16_with_loss_scaler_on_gpu(files, wrapper_type):
    torch.manual_seed(0)
    ref_model = build(teacher_cfg(files[0])).cuda()
    ref_model.init_weights()
    amp_model = copy.deepcopy(ref_model)
    inputs, data = images().cuda(), samples()
    ref_losses, _ = train_step(ref_model, wrapper_for(ref_model, None), inputs, data)
    from mmseg.registry import OPTIM_WRAPPER_CONSTRUCTORS
    wrapper = OPTIM_WRAPPER_CONSTRUCTORS.build(
        dict(
            type='TrainableOptimWrapperConstructor',
            optim_wrapper_cfg=dict(
                type=wrapper_type,
                dtype='float16',
                loss_scale='dynamic',
                optimizer=dict(type='SGD', lr=0.01, momentum=0.9))))(
                    amp_model)
    assert wrapper.loss_scaler.is_enabled()
    amp_losses, amp_grads = train_step(amp_model, wrapper, inputs, data)
    ref, amp = ref_losses['decode.loss_contrast'], amp_losses['decode.loss_contrast']
    assert amp.dtype == torch.float32 and torch.isfinite(amp)
    assert abs(amp.item() - ref.item()) <= 0.05 * abs(ref.item())
    assert wrapper.loss_scaler.get_scale() > 1  # dynamic loss scaling is active
    for g in amp_grads.values():
        assert torch.isfinite(g).all()
    assert all(torch.isfinite(p).all() for p in amp_model.parameters())
    amp_model.eval()
    img = images(1, (64, 96), seed=3).cuda()
    metas = [dict(img_shape=(64, 96), ori_shape=(64, 96), pad_shape=(64, 96))]
    with torch.no_grad():
        ref_out = amp_model.encode_decode(img, metas)
        with torch.autocast('cuda', dtype=torch.float16):
            out = amp_model.encode_decode(img, metas)
    assert torch.isfinite(out).all()
    assert (out.float() - ref_out).abs().max() <= 0.05 * max(1.0, ref_out.abs().max().item())
