"""ReCLIPContrastiveLoss / reclip_contrastive_loss (docs/method.md): hand-computed
values, the default scale, the synonym maximum and empty hypotheses."""
import math

import pytest
import torch
import torch.nn.functional as F

from mmseg_reclip.models.losses import reclip_contrastive_loss


def softplus(x):
    return math.log1p(math.exp(x))


def case_two_pixels():
    """D=2, C=2, h=1, w=2: pixel 0 = (0.6, 0.8), pixel 1 = (1, 0); class 0 -> pixel 1."""
    feats = torch.tensor([[0.6, 1.0], [0.8, 0.0]]).reshape(1, 2, 1, 2)
    masks = torch.tensor([[0.0, 1.0], [1.0, 0.0]]).reshape(1, 2, 1, 2)
    return feats, masks


def test_contrastive_loss_hand_made():
    feats, masks = case_two_pixels()
    queries = torch.eye(2)
    # pooled_0 = (1, 0) / 2 -> logits 10 (0.5, 0) = (5, 0): CE = log(1 + e^-5)
    # pooled_1 = (0.6, 0.8) / 2 -> logits (3, 4), target 1: CE = log(1 + e^-1)
    ce0, ce1 = softplus(-5.0), softplus(-1.0)
    both = torch.tensor([[True, True]])
    loss = reclip_contrastive_loss(feats, masks, queries, both, logit_scale=10.0)
    assert loss.item() == pytest.approx((ce0 + ce1) / 2, rel=1e-6)
    only1 = torch.tensor([[False, True]])
    loss = reclip_contrastive_loss(feats, masks, queries, only1, logit_scale=10.0)
    assert loss.item() == pytest.approx(ce1, rel=1e-6)

    # second image: both pixels (0, 1), all pixels class 1 -> logits (0, 10) for class 1
    feats2 = torch.cat([feats, torch.tensor([0.0, 0.0, 1.0, 1.0]).reshape(1, 2, 1, 2)])
    masks2 = torch.cat([masks, torch.tensor([0.0, 0.0, 1.0, 1.0]).reshape(1, 2, 1, 2)])
    hyp = torch.tensor([[True, True], [False, True]])
    loss = reclip_contrastive_loss(feats2, masks2, queries, hyp, logit_scale=10.0)
    # mean over each image's hypothesis classes, then over images
    assert loss.item() == pytest.approx(((ce0 + ce1) / 2 + softplus(-10.0)) / 2, rel=1e-6)


def test_contrastive_loss_default_scale_divides_by_hw():
    """h = w = 2, logit scale 100: pooled features are divided by h*w = 4."""
    pixels = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0], [0.6, 0.8]])  # (0,0) (0,1)...
    feats = pixels.t().reshape(1, 2, 2, 2)
    masks = torch.tensor([[1.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 1.0]]).reshape(1, 2, 2, 2)
    queries = torch.eye(2)
    # pooled_0 = (1, 1) / 4 -> logits (25, 25): CE = log 2
    # pooled_1 = (0.6, 1.8) / 4 -> logits (15, 45): CE = log(1 + e^-30)
    loss = reclip_contrastive_loss(feats, masks, queries, torch.tensor([[True, False]]))
    assert loss.item() == pytest.approx(math.log(2), rel=1e-6)
    loss = reclip_contrastive_loss(feats, masks, queries, torch.tensor([[True, True]]))
    assert loss.item() == pytest.approx((math.log(2) + softplus(-30.0)) / 2, rel=1e-6)


def test_contrastive_loss_synonyms_max():
    feats, masks = case_two_pixels()
    # names: q0 -> class 0, q1 and q2 -> class 1
    queries = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]])
    name_to_class = torch.tensor([0, 1, 1])
    # class 0: name logits 10 (0.5, 0, 0.3) -> class logits (5, max(0, 3)) = (5, 3)
    # class 1: name logits 10 (0.3, 0.4, 0.5) -> class logits (3, max(4, 5)) = (3, 5)
    loss = reclip_contrastive_loss(
        feats, masks, queries, torch.tensor([[True, True]]), name_to_class, logit_scale=10.0)
    assert loss.item() == pytest.approx(softplus(-2.0), rel=1e-6)


def test_contrastive_loss_empty_hypothesis():
    g = torch.Generator().manual_seed(0)
    feats = F.normalize(torch.randn(3, 8, 4, 4, generator=g), dim=1)
    masks = F.one_hot(torch.randint(0, 5, (3, 4, 4), generator=g), 5).permute(0, 3, 1, 2)
    masks = masks.float()
    queries = F.normalize(torch.randn(5, 8, generator=g), dim=-1)
    hyp = torch.zeros(3, 5, dtype=torch.bool)
    hyp[1, [0, 2, 4]] = True
    # images 0 and 2 (empty) contribute nothing: the loss is image 1's alone
    loss = reclip_contrastive_loss(feats, masks, queries, hyp)
    alone = reclip_contrastive_loss(feats[1:2], masks[1:2], queries, hyp[1:2])
    torch.testing.assert_close(loss, alone)

    # all empty: exactly 0, finite (zero) gradients, no NaN
    feats.requires_grad_(True)
    masks.requires_grad_(True)
    loss = reclip_contrastive_loss(feats, masks, queries, torch.zeros(3, 5, dtype=torch.bool))
    assert loss.item() == 0.0
    loss.backward()
    for t in (feats, masks):
        assert t.grad is not None and torch.isfinite(t.grad).all()
        assert t.grad.abs().max() == 0
