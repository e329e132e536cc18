"""MaskGuidedCELoss: reads only the target it declares; λ times mmseg-style cross entropy of
the upsampled student logits against the teacher's labels."""
import torch
import torch.nn.functional as F

import mmseg_reclip  # noqa: F401
from mmseg_reclip.models.losses import MaskGuidedCELoss
from tests.loss_utils import check_reads_only_what_it_declares, full_targets, make_batch


def test_reads_only_what_it_declares():
    check_reads_only_what_it_declares(MaskGuidedCELoss(loss_weight=1.0))


def test_value_is_lambda_times_an_independent_computation():
    targets = full_targets()
    batch = make_batch(**targets)
    up = F.interpolate(batch.logits, size=(16, 24), mode='bilinear', align_corners=False)
    ce = F.cross_entropy(up, targets['target'], ignore_index=255)
    torch.testing.assert_close(MaskGuidedCELoss(loss_weight=0.7)(batch), 0.7 * ce)
