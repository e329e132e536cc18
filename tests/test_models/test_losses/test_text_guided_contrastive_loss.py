"""TextGuidedContrastiveLoss: reads only the target it declares; λ times the stage-1
contrastive loss (test_contrastive_loss.py) on the student's tensors."""
import torch

import mmseg_reclip  # noqa: F401
from mmseg_reclip.models.losses import TextGuidedContrastiveLoss, reclip_contrastive_loss
from tests.loss_utils import check_reads_only_what_it_declares, full_targets, make_batch


def test_reads_only_what_it_declares():
    check_reads_only_what_it_declares(TextGuidedContrastiveLoss(loss_weight=1.0))


def test_value_is_lambda_times_the_stage1_loss():
    targets = full_targets()
    batch = make_batch(**targets)
    text = reclip_contrastive_loss(batch.feats, batch.masks, batch.queries, targets['hypothesis'])
    torch.testing.assert_close(TextGuidedContrastiveLoss(loss_weight=0.5)(batch), 0.5 * text)
    assert text > 0
