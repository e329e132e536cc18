"""FeatureGuidedL1Loss: reads only the target it declares; λ times the L1 distance of the
upsampled student features to the teacher's, averaged over the valid region."""
import torch
import torch.nn.functional as F

import mmseg_reclip  # noqa: F401
from mmseg_reclip.models.losses import FeatureGuidedL1Loss
from tests.loss_utils import check_reads_only_what_it_declares, full_targets, make_batch


def test_reads_only_what_it_declares():
    check_reads_only_what_it_declares(FeatureGuidedL1Loss(loss_weight=1.0))


def test_value_is_lambda_times_an_independent_computation():
    targets = full_targets()
    batch = make_batch(**targets)
    feats_up = F.interpolate(batch.feats, size=(16, 24), mode='bilinear', align_corners=False)
    l1 = ((feats_up - targets['feats']).abs() * batch.targets.valid[:, None]).sum() / (
        batch.targets.valid.sum() * 4)
    torch.testing.assert_close(FeatureGuidedL1Loss(loss_weight=0.5)(batch), 0.5 * l1)
