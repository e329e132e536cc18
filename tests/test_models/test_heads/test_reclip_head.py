"""ReCLIPHead, Gumbel masks and the trainable-only optimizer constructor, each against an
independent computation (the contrastive loss: tests/test_models/test_losses/)."""
import pytest
import torch
import torch.nn.functional as F
from mmengine.optim import build_optim_wrapper
from mmseg.registry import MODELS, OPTIM_WRAPPER_CONSTRUCTORS

from mmseg_reclip.models.decode_heads import RectifiedClassifier, bias_logits, rectify
from mmseg_reclip.models.losses import reclip_contrastive_loss
from mmseg_reclip.models.utils import gumbel_softmax_hard
from tests.clip_utils import TINY
from tests.experiment_utils import C, D, build_head, head_cfg, random_feats

TRAINABLE = {
    'classifier.bias_extractor.context', 'classifier.bias_extractor.pe_proj.weight',
    'classifier.bias_extractor.pe_proj.bias', 'classifier.mask_decoder.conv.weight',
    'classifier.mask_decoder.conv.bias', 'classifier.mask_decoder.norm.weight',
    'classifier.mask_decoder.norm.bias'
}


def randomize_decoder(head, seed=0):
    """Non-trivial BN statistics so that eval BN is not the identity."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        bn = head.mask_decoder.norm
        bn.running_mean.copy_(0.1 * torch.randn(C, generator=g))
        bn.running_var.copy_(0.5 + torch.rand(C, generator=g))
        bn.weight.copy_(1 + 0.2 * torch.randn(C, generator=g))
        bn.bias.copy_(0.1 * torch.randn(C, generator=g))
        head.bias_extractor.pe_proj.bias.copy_(0.1 * torch.randn(D, generator=g))


# -- bias, rectification, decoder --------------------------------------------------------
def loop_bias(pos, ref):
    """B[c, y, x] = sum_d P[d, y, x] R[c, d], with explicit loops."""
    num_dims, h, w = pos.shape
    out = torch.zeros(ref.shape[0], h, w, dtype=torch.float64)
    for c in range(ref.shape[0]):
        for y in range(h):
            for x in range(w):
                out[c, y, x] = sum(float(pos[d, y, x]) * float(ref[c, d]) for d in range(num_dims))
    return out


def test_bias_logits_matches_loops():
    g = torch.Generator().manual_seed(0)
    pos, ref = torch.randn(6, 3, 4, generator=g), torch.randn(5, 6, generator=g)
    out = bias_logits(pos, ref)
    assert out.shape == (5, 3, 4)
    torch.testing.assert_close(out.double(), loop_bias(pos, ref), rtol=1e-5, atol=1e-5)


def test_head_bias_is_projected_pe_times_reference(clip_file):
    head = build_head(clip_file)
    randomize_decoder(head)
    head.eval()
    size = (3, 5)
    with torch.no_grad():
        ref = head.bias_extractor.reference_embeddings()
        # P by hand: bicubic resize of CLIP's PE grid, then W·pe + b per position
        grid = F.interpolate(
            head.text_encoder.image_pos_embed[None], size=size, mode='bicubic',
            align_corners=False)[0]
        weight = head.bias_extractor.pe_proj.weight[:, :, 0, 0]
        pos = (weight @ grid.flatten(1) + head.bias_extractor.pe_proj.bias[:, None])
        pos = pos.reshape(D, *size)
        torch.testing.assert_close(
            head.bias_extractor.positional_features(size), pos, rtol=1e-5, atol=1e-6)
        bias = head.bias_extractor(size)
    assert ref.shape == (C, D)
    torch.testing.assert_close(ref.norm(), torch.tensor(1.0))  # R / ||R||_F (released)
    torch.testing.assert_close(bias.double(), loop_bias(pos, ref), rtol=1e-5, atol=1e-5)


def test_reference_norm_modes(clip_file):
    head = build_head(clip_file, bias_extractor=dict(ref_norm='row'))
    with torch.no_grad():
        torch.testing.assert_close(head.bias_extractor.reference_embeddings().norm(dim=-1),
                                   torch.ones(C))
    with pytest.raises(ValueError, match='ref_norm'):
        build_head(clip_file, bias_extractor=dict(ref_norm='frobenius'))


def test_rectify_modes():
    g = torch.Generator().manual_seed(0)
    lq, b = torch.randn(2, 3, 4, 5, generator=g), torch.randn(3, 4, 5, generator=g)
    torch.testing.assert_close(rectify(lq, b, 'subtract'), lq - b[None])
    torch.testing.assert_close(rectify(lq, b, 'add'), lq + b[None])
    assert torch.equal(rectify(lq, b, 'none'), lq)
    per_image = torch.randn(2, 3, 4, 5, generator=g)  # an image-dependent bias
    torch.testing.assert_close(rectify(lq, per_image, 'subtract'), lq - per_image)
    # an unknown mode is refused when the classifier is built, before anything runs
    with pytest.raises(ValueError, match="bias_mode must be one of .*'multiply'"):
        RectifiedClassifier(lambda feats: feats, num_classes=3, embed_dim=4, bias_mode='multiply')


@pytest.mark.parametrize('bias_mode', ['subtract', 'add', 'none'])
def test_head_forward_matches_independent(clip_file, bias_mode):
    head = build_head(clip_file, bias_mode=bias_mode)
    randomize_decoder(head)
    head.eval()
    feats = random_feats(2, D, 3, 5)
    with torch.no_grad():
        out = head.forward((feats, ))
        queries = head.queries()
        # query logits with the synonym max written out
        per_name = torch.einsum('bdhw,nd->bnhw', feats, queries)
        lq = torch.stack([
            per_name[:, 0], per_name[:, 1], per_name[:, 2],
            torch.maximum(per_name[:, 3], per_name[:, 4])
        ],
                         dim=1)
        pos = head.bias_extractor.positional_features((3, 5))
        bias = loop_bias(pos, head.bias_extractor.reference_embeddings()).float()
        rect = {'subtract': lq - bias, 'add': lq + bias, 'none': lq}[bias_mode]
        x = F.conv2d(
            torch.cat([feats, rect], 1),
            head.mask_decoder.conv.weight,
            head.mask_decoder.conv.bias,
            padding=2)
        bn = head.mask_decoder.norm
        expected = (x - bn.running_mean[:, None, None]) / torch.sqrt(
            bn.running_var[:, None, None] + bn.eps) * bn.weight[:, None, None] + \
            bn.bias[:, None, None]
    assert queries.shape == (5, D)
    assert out.shape == (2, C, 3, 5)
    assert (out - expected).abs().max() <= 1e-5


def test_decoder_output_shape_train_and_eval(clip_file):
    head = build_head(clip_file)
    for training in (True, False):
        head.train(training)
        for shape in [(1, D, 2, 2), (3, D, 7, 4)]:
            out = head.forward((random_feats(*shape), ))
            assert out.shape == (shape[0], C) + shape[2:]
            assert torch.isfinite(out).all()


def test_bias_cached_at_eval_per_size(clip_file):
    head = build_head(clip_file)
    head.eval()
    b1 = head.bias_extractor((3, 4))
    assert head.bias_extractor((3, 4)) is b1
    b2 = head.bias_extractor((5, 6))
    assert b2 is not b1 and b2.shape == (C, 5, 6)
    assert head.bias_extractor((3, 4)) is b1 and head.bias_extractor((5, 6)) is b2
    assert not b1.requires_grad

    head.train()  # training: recomputed every call, with a graph to the parameters
    bt = head.bias_extractor((3, 4))
    assert bt is not b1 and bt.requires_grad
    assert head.bias_extractor((3, 4)) is not bt
    head.eval()
    b3 = head.bias_extractor((3, 4))
    assert b3 is not b1
    torch.testing.assert_close(b3, b1)

    state = {k: v.clone() for k, v in head.state_dict().items()}
    state['classifier.bias_extractor.context'] += 0.5
    state['classifier.bias_extractor.pe_proj.bias'] += 0.5
    head.load_state_dict(state, strict=True)
    b4 = head.bias_extractor((3, 4))
    assert b4 is not b3
    assert (b4 - b3).abs().max() > 1e-4
    with torch.no_grad():
        fresh = bias_logits(
            head.bias_extractor.positional_features((3, 4)),
            head.bias_extractor.reference_embeddings())
    torch.testing.assert_close(b4, fresh)


# -- trainable parameters and the optimizer ---------------------------------------------
def test_only_context_pe_proj_decoder_train(clip_file):
    head = build_head(clip_file)
    head.train()
    trainable = {n for n, p in head.named_parameters() if p.requires_grad}
    assert trainable == TRAINABLE
    assert not head.text_encoder.tower.training  # frozen CLIP stays in eval
    # and gradient reaches each of them through the stage-1 loss path
    feats = random_feats(2, D, 3, 4)
    masks = head.classifier.sample_masks(head.forward((feats, )))
    hyp = torch.tensor([[True, False, True, False], [False, True, True, True]])
    loss = reclip_contrastive_loss(feats, masks, head.queries(), hyp, head.name_to_class)
    loss.backward()
    for name, param in head.named_parameters():
        if param.requires_grad:
            assert param.grad is not None and param.grad.abs().sum() > 0, name


def build_segmentor(clip_file):
    return MODELS.build(
        dict(
            type='ReCLIP',
            data_preprocessor=dict(
                type='SegDataPreProcessor',
                mean=[122.771, 116.746, 104.094],
                std=[68.501, 66.632, 70.323],
                bgr_to_rgb=True,
                size_divisor=16),
            backbone=dict(type='CLIPViTBackbone', model_name=TINY, pretrained=clip_file),
            decode_head=head_cfg(clip_file)))


def test_optimizer_gets_exactly_the_trainable_parameters(clip_file):
    model = build_segmentor(clip_file)
    expected = {id(p): n for n, p in model.named_parameters() if p.requires_grad}
    assert set(expected.values()) == {'decode_head.' + n for n in TRAINABLE}
    assert len(list(model.parameters())) > len(expected)  # frozen CLIP params exist

    optim_cfg = dict(
        type='OptimWrapper', optimizer=dict(type='SGD', lr=0.01, momentum=0.9, weight_decay=5e-4))
    constructor = OPTIM_WRAPPER_CONSTRUCTORS.build(
        dict(type='TrainableOptimWrapperConstructor', optim_wrapper_cfg=optim_cfg))
    wrapper = constructor(model)
    params = [p for group in wrapper.optimizer.param_groups for p in group['params']]
    assert len(params) == len(expected)
    assert {id(p) for p in params} == set(expected)
    assert all(g['weight_decay'] == 5e-4 and g['lr'] == 0.01
               for g in wrapper.optimizer.param_groups)

    # the runner's route: `constructor` and `paramwise_cfg` in the optim_wrapper config
    wrapper = build_optim_wrapper(
        model,
        dict(
            optim_cfg,
            constructor='TrainableOptimWrapperConstructor',
            paramwise_cfg=dict(custom_keys={'context': dict(decay_mult=0.0)})))
    groups = wrapper.optimizer.param_groups
    assert {id(p) for g in groups for p in g['params']} == set(expected)
    decay = {expected[id(p)]: g['weight_decay'] for g in groups for p in g['params']}
    assert decay['decode_head.classifier.bias_extractor.context'] == 0.0
    assert decay['decode_head.classifier.bias_extractor.pe_proj.weight'] == 5e-4


def test_head_query_logits_synonyms_max(clip_file):
    head = build_head(clip_file)
    feats = random_feats(1, D, 2, 3)
    with torch.no_grad():
        logits = head.query_logits(feats)
        queries = head.queries()
    tv = torch.einsum('bdhw,d->bhw', feats, queries[3])
    television = torch.einsum('bdhw,d->bhw', feats, queries[4])
    torch.testing.assert_close(logits[:, 3], torch.maximum(tv, television))
    torch.testing.assert_close(logits[:, 0], torch.einsum('bdhw,d->bhw', feats, queries[0]))


# -- Gumbel masks -------------------------------------------------------------------------
@pytest.mark.parametrize('tau,scale', [(1.0, 100.0), (1.0, 1.0), (0.5, 3.0)])
def test_gumbel_softmax_hard_one_hot_with_gradient(tau, scale):
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 7, 5, 6, generator=g).requires_grad_(True)
    masks = gumbel_softmax_hard(scale * logits, tau, 1, torch.Generator().manual_seed(1))
    assert masks.shape == logits.shape
    assert ((masks == 0) | (masks == 1)).all()  # exactly one-hot values
    assert (masks.sum(dim=1) == 1).all()
    weights = torch.randn(masks.shape, generator=g)
    (masks * weights).sum().backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0
    assert torch.isfinite(logits.grad).all()


def test_gumbel_same_seed_same_masks():
    logits = torch.zeros(2, 5, 8, 8)  # masks come from the noise alone
    m1 = gumbel_softmax_hard(logits, 1.0, 1, torch.Generator().manual_seed(7))
    m2 = gumbel_softmax_hard(logits, 1.0, 1, torch.Generator().manual_seed(7))
    m3 = gumbel_softmax_hard(logits, 1.0, 1, torch.Generator().manual_seed(8))
    assert torch.equal(m1, m2)
    assert not torch.equal(m1, m3)
    # argmax of logits + Gumbel noise: each class wins somewhere with flat logits
    assert (m1.sum(dim=(0, 2, 3)) > 0).all()


def test_head_sample_masks_seeded(clip_file):
    head = build_head(clip_file, mask_decoder=dict(noise_seed=11))
    logits = torch.zeros(2, C, 6, 6)
    m1, m2 = head.classifier.sample_masks(logits), head.classifier.sample_masks(logits)
    assert torch.equal(m1, m2)
    assert ((m1 == 0) | (m1 == 1)).all() and (m1.sum(1) == 1).all()
    head.mask_decoder.noise_seed = 12
    assert not torch.equal(head.classifier.sample_masks(logits), m1)
