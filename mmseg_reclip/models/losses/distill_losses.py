"""ReCLIP++ distillation losses (docs/method.md §7).

Total = CE + λ1·L1 + λ2·contrastive (λ1 = λ2 = 0.5): each term is one registered loss
whose ``loss_weight`` is its λ; :class:`ReCLIPStudentHead` sums the configured list.
The student tensors are used as they are (never detached: the released code detached
the student features, so only the CE term trained).

Every loss module is called with the same keyword arguments (the student head passes
them all) and reads the ones it needs:

- ``student_feats`` ``[B, D, h, w]`` L2-normalised student features ``F_s``,
- ``student_logits`` ``[B, C, h, w]`` inherited decoder output on ``F_s``,
- ``student_masks`` ``[B, C, h, w]`` hard Gumbel masks of ``student_logits``,
- ``queries`` ``[N, D]``, ``name_to_class`` ``[N]``, ``hypothesis`` ``[B, C]`` bool,
- ``teacher_target`` ``[B, H, W]`` long: teacher argmax at image size,
- ``teacher_feats`` ``[B, D, H, W]``: teacher ``F`` upsampled (bilinear) to image size,
- ``valid`` ``[B, H, W]`` bool: image pixels (not batch padding), or None.
"""
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmseg.registry import MODELS

from ..utils import fp32
from .contrastive_loss import reclip_contrastive_loss


def upsample_to(x: torch.Tensor, size: tuple, align_corners: bool = False) -> torch.Tensor:
    """Bilinear resize of ``[B, K, h, w]`` to ``size`` (no-op when already there)."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=tuple(size), mode='bilinear', align_corners=align_corners)


@fp32  # sums over every pixel: fp32 under autocast
def mask_guided_ce_loss(student_logits: torch.Tensor,
                        teacher_target: torch.Tensor,
                        ignore_index: int = 255,
                        align_corners: bool = False) -> torch.Tensor:
    """Cross-entropy of the student's logits, upsampled (bilinear) to the target's size,
    against the teacher's argmax masks; mean over non-ignored pixels (0 if none).

    Args:
        student_logits (Tensor): ``[B, C, h, w]``.
        teacher_target (Tensor): ``[B, H, W]`` long class indices or ``ignore_index``.
    """
    logits = upsample_to(student_logits, teacher_target.shape[-2:], align_corners)
    ce = F.cross_entropy(logits, teacher_target.long(), ignore_index=ignore_index, reduction='sum')
    count = (teacher_target != ignore_index).sum()
    return ce / count.clamp_min(1).to(ce.dtype)


@fp32  # sums over every pixel: fp32 under autocast
def feature_guided_l1_loss(student_feats: torch.Tensor,
                           teacher_feats: torch.Tensor,
                           valid: Optional[torch.Tensor] = None,
                           align_corners: bool = False) -> torch.Tensor:
    """Mean absolute difference of the student features, upsampled (bilinear) to the
    teacher features' size (image size), and the teacher features.

    Args:
        student_feats (Tensor): ``[B, D, h, w]``.
        teacher_feats (Tensor): ``[B, D, H, W]`` (already at image size).
        valid (Tensor, optional): ``[B, H, W]`` bool; mean over valid pixels only.
    """
    diff = (upsample_to(student_feats, teacher_feats.shape[-2:], align_corners) -
            teacher_feats.to(student_feats.dtype)).abs()
    if valid is None:
        return diff.mean()
    weight = valid[:, None].to(diff.dtype)
    return (diff * weight).sum() / (weight.sum() * diff.shape[1]).clamp_min(1)


@MODELS.register_module()
class MaskGuidedCELoss(nn.Module):
    """Mask-guided term: :func:`mask_guided_ce_loss` × ``loss_weight`` (1)."""

    uses_hypothesis = False
    needs_teacher_feats = False

    def __init__(self,
                 loss_weight: float = 1.0,
                 ignore_index: int = 255,
                 align_corners: bool = False,
                 loss_name: str = 'loss_mask_ce'):
        super().__init__()
        self.loss_weight = loss_weight
        self.ignore_index = ignore_index
        self.align_corners = align_corners
        self._loss_name = loss_name

    def forward(self, student_logits: torch.Tensor, teacher_target: torch.Tensor,
                **kwargs) -> torch.Tensor:
        if teacher_target is None:
            raise ValueError('MaskGuidedCELoss needs the teacher (or pseudo-label) target.')
        return self.loss_weight * mask_guided_ce_loss(student_logits, teacher_target,
                                                      self.ignore_index, self.align_corners)

    @property
    def loss_name(self) -> str:
        return self._loss_name


@MODELS.register_module()
class FeatureGuidedL1Loss(nn.Module):
    """Feature-guided term: :func:`feature_guided_l1_loss` × ``loss_weight`` (λ1 = 0.5)."""

    uses_hypothesis = False
    needs_teacher_feats = True

    def __init__(self,
                 loss_weight: float = 0.5,
                 align_corners: bool = False,
                 loss_name: str = 'loss_feat_l1'):
        super().__init__()
        self.loss_weight = loss_weight
        self.align_corners = align_corners
        self._loss_name = loss_name

    def forward(self,
                student_feats: torch.Tensor,
                teacher_feats: torch.Tensor,
                valid: Optional[torch.Tensor] = None,
                **kwargs) -> torch.Tensor:
        if teacher_feats is None:
            raise ValueError('FeatureGuidedL1Loss needs the teacher features (run the '
                             'teacher online).')
        return self.loss_weight * feature_guided_l1_loss(student_feats, teacher_feats, valid,
                                                         self.align_corners)

    @property
    def loss_name(self) -> str:
        return self._loss_name


@MODELS.register_module()
class TextGuidedContrastiveLoss(nn.Module):
    """Text-guided term: the stage-1 :func:`reclip_contrastive_loss` on the student's
    features and Gumbel masks with the crop-vote hypotheses, × ``loss_weight`` (λ2 = 0.5).
    """

    uses_hypothesis = True
    needs_teacher_feats = False

    def __init__(self,
                 loss_weight: float = 0.5,
                 logit_scale: float = 100.0,
                 loss_name: str = 'loss_text'):
        super().__init__()
        self.loss_weight = loss_weight
        self.logit_scale = logit_scale
        self._loss_name = loss_name

    def forward(self,
                student_feats: torch.Tensor,
                student_masks: torch.Tensor,
                queries: torch.Tensor,
                hypothesis: torch.Tensor,
                name_to_class: Optional[torch.Tensor] = None,
                **kwargs) -> torch.Tensor:
        return self.loss_weight * reclip_contrastive_loss(
            student_feats, student_masks, queries, hypothesis, name_to_class, self.logit_scale)

    @property
    def loss_name(self) -> str:
        return self._loss_name
