from .contrastive_loss import ReCLIPContrastiveLoss, reclip_contrastive_loss
from .distill_losses import (DistillBatch, DistillTargets, FeatureGuidedL1Loss, MaskGuidedCELoss,
                             TextGuidedContrastiveLoss)

__all__ = [
    'ReCLIPContrastiveLoss', 'reclip_contrastive_loss', 'DistillBatch', 'DistillTargets',
    'FeatureGuidedL1Loss', 'MaskGuidedCELoss', 'TextGuidedContrastiveLoss'
]
