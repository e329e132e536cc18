from .contrastive_loss import ReCLIPContrastiveLoss, mask_pooled_features, reclip_contrastive_loss
from .distill_losses import (DistillBatch, DistillTargets, FeatureGuidedL1Loss, MaskGuidedCELoss,
                             TextGuidedContrastiveLoss)

__all__ = [
    'ReCLIPContrastiveLoss', 'reclip_contrastive_loss', 'mask_pooled_features', 'DistillBatch',
    'DistillTargets', 'FeatureGuidedL1Loss', 'MaskGuidedCELoss', 'TextGuidedContrastiveLoss'
]
