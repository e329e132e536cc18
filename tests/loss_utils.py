"""Helpers of the distillation-loss tests: a DistillBatch of seeded random student tensors
(B=2, C=3, D=4, grid 4x6, image 16x24) with chosen target fields, and a full set of
targets."""
import pytest
import torch
import torch.nn.functional as F

from mmseg_reclip.models.losses import DistillBatch, DistillTargets


def make_batch(**targets) -> DistillBatch:
    """A batch with student tensors and only the given target fields; the second image's
    last 4 columns are outside the valid region."""
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


def full_targets() -> dict:
    """Every target field a distillation loss can read (ignored pixels outside the valid
    region)."""
    g = torch.Generator().manual_seed(1)
    target = torch.randint(0, 3, (2, 16, 24), generator=g)
    target[1, :, 20:] = 255
    return dict(
        target=target,
        feats=torch.randn(2, 4, 16, 24, generator=g),
        hypothesis=torch.tensor([[True, False, True], [False, True, False]]))


def check_reads_only_what_it_declares(loss) -> None:
    """The fields in ``loss.needs`` suffice and give the value of the full record; without
    them the loss raises an error naming what is missing."""
    full = full_targets()
    declared = {k: v for k, v in full.items() if k in loss.needs}
    assert declared, 'every loss reads some target'
    torch.testing.assert_close(loss(make_batch(**declared)), loss(make_batch(**full)))
    with pytest.raises(ValueError, match='needs the'):
        loss(make_batch(**{k: v for k, v in full.items() if k not in loss.needs}))
