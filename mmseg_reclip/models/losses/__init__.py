from .contrastive_loss import (ReCLIPContrastiveLoss, mask_pooled_features,
                               reclip_contrastive_loss)

__all__ = ['ReCLIPContrastiveLoss', 'reclip_contrastive_loss', 'mask_pooled_features']
from .distill_losses import FeatureGuidedL1Loss, MaskGuidedCELoss, TextGuidedContrastiveLoss  # noqa: F401,E402,E501
