"""ReCLIP++ stage-1 contrastive loss between mask-pooled features and the text queries."""
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmseg.registry import MODELS

from ...utils.amp import fp32
from ..utils import class_max_over_names


def mask_pooled_features(feats: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """``pooled_c = Σ_hw (F ⊙ M_c) / (h·w)`` (docs/method.md §6: divided by the pixel count).

    Args:
        feats (Tensor): ``[B, D, h, w]``.
        masks (Tensor): ``[B, C, h, w]``.

    Returns:
        Tensor: ``[B, C, D]``.
    """
    h, w = feats.shape[-2:]
    return torch.einsum('bdhw,bchw->bcd', feats, masks.to(feats.dtype)) / (h * w)


@fp32  # pooling sums and CE over 100·cos logits stay fp32 under autocast
def reclip_contrastive_loss(feats: torch.Tensor,
                            masks: torch.Tensor,
                            queries: torch.Tensor,
                            hypothesis: torch.Tensor,
                            name_to_class: Optional[torch.Tensor] = None,
                            logit_scale: float = 100.0) -> torch.Tensor:
    """Contrastive loss of docs/method.md §6.

    For each image and each class ``c`` of its hypothesis:
    ``CE(logit_scale · pooled_c · Qᵀ, c)``; averaged over the image's hypothesis
    classes, then over the images that have a non-empty hypothesis. With no such image
    the loss is an exact zero that still depends on the inputs (no NaN).

    Args:
        feats (Tensor): ``[B, D, h, w]`` features.
        masks (Tensor): ``[B, C, h, w]`` (one-hot) masks.
        queries (Tensor): ``[N, D]`` query embeddings.
        hypothesis (Tensor): ``[B, C]`` bool, the classes each image contains.
        name_to_class (Tensor, optional): ``[N]`` class of each query name.
        logit_scale (float): CLIP's 100.

    Returns:
        Tensor: scalar.
    """
    batch, num_classes = masks.shape[:2]
    pooled = mask_pooled_features(feats, masks)  # [B, C, D]
    logits = pooled @ queries.to(pooled.dtype).t()  # [B, C, N]
    logits = logit_scale * class_max_over_names(logits, name_to_class, num_classes, dim=-1)
    target = torch.arange(num_classes, device=logits.device).repeat(batch)
    ce = F.cross_entropy(logits.flatten(0, 1), target, reduction='none').view(batch, num_classes)
    hyp = hypothesis.to(ce.dtype)
    count = hyp.sum(dim=1)
    per_image = (ce * hyp).sum(dim=1) / count.clamp_min(1)
    valid = (count > 0).to(ce.dtype)
    return (per_image * valid).sum() / valid.sum().clamp_min(1)


@MODELS.register_module()
class ReCLIPContrastiveLoss(nn.Module):
    """Registered wrapper of :func:`reclip_contrastive_loss`.

    Args:
        logit_scale (float): logit scale of the pooled-feature/query cosine (100).
        loss_weight (float): multiplier of the loss.
        loss_name (str): key in the loss dict (must start with ``loss_``).
    """

    def __init__(self,
                 logit_scale: float = 100.0,
                 loss_weight: float = 1.0,
                 loss_name: str = 'loss_contrast'):
        super().__init__()
        self.logit_scale = logit_scale
        self.loss_weight = loss_weight
        self._loss_name = loss_name

    def forward(self,
                feats: torch.Tensor,
                masks: torch.Tensor,
                queries: torch.Tensor,
                hypothesis: torch.Tensor,
                name_to_class: Optional[torch.Tensor] = None,
                **kwargs) -> torch.Tensor:
        return self.loss_weight * reclip_contrastive_loss(feats, masks, queries, hypothesis,
                                                          name_to_class, self.logit_scale)

    @property
    def loss_name(self) -> str:
        return self._loss_name
