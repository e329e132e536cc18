"""The distillation losses read one typed record (DistillBatch): each reads only the
target fields it declares in ``needs``, is its λ times an independent computation, and
names a missing target."""
import pytest
import torch
import torch.nn.functional as F

import mmseg_reclip  # noqa: F401
from mmseg_reclip.models.losses import (DistillBatch, DistillTargets, FeatureGuidedL1Loss,
                                        MaskGuidedCELoss, TextGuidedContrastiveLoss,
                                        reclip_contrastive_loss)


def make_batch(**targets):
    """A batch with student tensors and only the given target fields (B=2, C=3, D=4,
    grid 4x6, image 16x24)."""
    g = torch.Generator().manual_seed(0)
    feats = F.normalize(torch.randn(2, 4, 4, 6, generator=g), dim=1)
    logits = torch.randn(2, 3, 4, 6, generator=g)
    masks = F.one_hot(logits.argmax(1), 3).permute(0, 3, 1, 2).float()
    valid = torch.ones(2, 16, 24, dtype=torch.bool)
    valid[1, :, 20:] = False
    return DistillBatch(
        feats=feats,
        logits=logits,
        masks=masks,
        queries=F.normalize(torch.randn(3, 4, generator=g), dim=1),
        name_map=None,
        targets=DistillTargets(valid=valid, **targets))


def full_targets():
    g = torch.Generator().manual_seed(1)
    target = torch.randint(0, 3, (2, 16, 24), generator=g)
    target[1, :, 20:] = 255
    return dict(
        target=target,
        feats=torch.randn(2, 4, 16, 24, generator=g),
        hypothesis=torch.tensor([[True, False, True], [False, True, False]]))


@pytest.mark.parametrize('loss_type',
                         [MaskGuidedCELoss, FeatureGuidedL1Loss, TextGuidedContrastiveLoss])
def test_each_loss_reads_only_what_it_declares(loss_type):
    loss = loss_type(loss_weight=1.0)
    full = full_targets()
    declared = {k: v for k, v in full.items() if k in loss.needs}
    assert declared, 'every loss reads some target'
    # the declared fields suffice and give the value of the full record
    torch.testing.assert_close(loss(make_batch(**declared)), loss(make_batch(**full)))
    # without them: a clear error naming what is missing
    with pytest.raises(ValueError, match='needs the'):
        loss(make_batch(**{k: v for k, v in full.items() if k not in loss.needs}))


def test_values_are_lambda_times_an_independent_computation():
    targets = full_targets()
    batch = make_batch(**targets)
    up = F.interpolate(batch.logits, size=(16, 24), mode='bilinear', align_corners=False)
    ce = F.cross_entropy(up, targets['target'], ignore_index=255)
    torch.testing.assert_close(MaskGuidedCELoss(loss_weight=0.7)(batch), 0.7 * ce)
    feats_up = F.interpolate(batch.feats, size=(16, 24), mode='bilinear', align_corners=False)
    l1 = ((feats_up - targets['feats']).abs() * batch.targets.valid[:, None]).sum() / (
        batch.targets.valid.sum() * 4)
    torch.testing.assert_close(FeatureGuidedL1Loss(loss_weight=0.5)(batch), 0.5 * l1)
    # the stage-1 contrastive loss (tested in test_reclip_head.py) on the student's tensors
    text = reclip_contrastive_loss(batch.feats, batch.masks, batch.queries, targets['hypothesis'])
    torch.testing.assert_close(TextGuidedContrastiveLoss(loss_weight=0.5)(batch), 0.5 * text)
    assert text > 0
