"""ReCLIP++ distillation losses (docs/method.md §7).

Total = CE + λ1·L1 + λ2·contrastive (λ1 = λ2 = 0.5): each term is one registered loss
whose ``loss_weight`` is its λ; :class:`ReCLIPStudentHead` sums the configured list.
The student tensors are used as they are (never detached: the released code detached
the student features, so only the CE term trained).

Every loss module is called with one :class:`DistillBatch` (the student's tensors and
the :class:`DistillTargets` of the teacher) and declares in ``needs`` which target
fields it reads, so the distiller computes only those.
"""
from dataclasses import dataclass
from typing import Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmseg.registry import MODELS

from ...utils.amp import fp32
from .contrastive_loss import reclip_contrastive_loss

__all__ = [
    'DistillTargets', 'DistillBatch', 'MaskGuidedCELoss', 'FeatureGuidedL1Loss',
    'TextGuidedContrastiveLoss', 'mask_guided_ce_loss', 'feature_guided_l1_loss'
]


@dataclass
class DistillTargets:
    """What the student learns from, for one batch (from :class:`DistillTeacher`, the
    pseudo labels and the crop-vote hook).

    Attributes:
        valid (Tensor): ``[B, H, W]`` bool: image pixels (not batch padding).
        target (Tensor, optional): ``[B, H, W]`` long CE target at image size: the
            teacher's argmax (online) or the pseudo label (offline); ``ignore_index`` on
            padding.
        feats (Tensor, optional): ``[B, D, H, W]`` teacher ``F`` upsampled (bilinear)
            to image size.
        hypothesis (Tensor, optional): ``[B, C]`` bool crop-vote hypotheses.
    """
    valid: torch.Tensor
    target: Optional[torch.Tensor] = None
    feats: Optional[torch.Tensor] = None
    hypothesis: Optional[torch.Tensor] = None


@dataclass
class DistillBatch:
    """Everything a distillation loss reads (built by :class:`ReCLIPStudentHead`).

    Attributes:
        feats (Tensor): ``[B, D, h, w]`` L2-normalised student features ``F_s``.
        logits (Tensor): ``[B, C, h, w]`` inherited decoder output ``O`` on ``F_s``.
        masks (Tensor): ``[B, C, h, w]`` hard Gumbel masks of ``logits``.
        queries (Tensor): ``[N, D]`` inherited ``Q``.
        name_map (Tensor, optional): ``[N]`` class of each name, ``None`` with one name
            per class (as :attr:`MaskCLIPHead.name_map`).
        targets (DistillTargets): the teacher side.
    """
    feats: torch.Tensor
    logits: torch.Tensor
    masks: torch.Tensor
    queries: torch.Tensor
    name_map: Optional[torch.Tensor]
    targets: DistillTargets


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

    #: the :class:`DistillTargets` fields read
    needs: Tuple[str, ...] = ('target', )

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

    def forward(self, batch: DistillBatch) -> torch.Tensor:
        if batch.targets.target is None:
            raise ValueError('MaskGuidedCELoss needs the teacher (or pseudo-label) target.')
        return self.loss_weight * mask_guided_ce_loss(batch.logits, batch.targets.target,
                                                      self.ignore_index, self.align_corners)

    @property
    def loss_name(self) -> str:
        return self._loss_name


@MODELS.register_module()
class FeatureGuidedL1Loss(nn.Module):
    """Feature-guided term: :func:`feature_guided_l1_loss` × ``loss_weight`` (λ1 = 0.5)."""

    #: the :class:`DistillTargets` fields read
    needs: Tuple[str, ...] = ('feats', )

    def __init__(self,
                 loss_weight: float = 0.5,
                 align_corners: bool = False,
                 loss_name: str = 'loss_feat_l1'):
        super().__init__()
        self.loss_weight = loss_weight
        self.align_corners = align_corners
        self._loss_name = loss_name

    def forward(self, batch: DistillBatch) -> torch.Tensor:
        targets = batch.targets
        if targets.feats is None:
            raise ValueError('FeatureGuidedL1Loss needs the teacher features (run the '
                             'teacher online).')
        return self.loss_weight * feature_guided_l1_loss(batch.feats, targets.feats, targets.valid,
                                                         self.align_corners)

    @property
    def loss_name(self) -> str:
        return self._loss_name


@MODELS.register_module()
class TextGuidedContrastiveLoss(nn.Module):
    """Text-guided term: the stage-1 :func:`reclip_contrastive_loss` on the student's
    features and Gumbel masks with the crop-vote hypotheses, × ``loss_weight`` (λ2 = 0.5).
    """

    #: the :class:`DistillTargets` fields read
    needs: Tuple[str, ...] = ('hypothesis', )

    def __init__(self,
                 loss_weight: float = 0.5,
                 logit_scale: float = 100.0,
                 loss_name: str = 'loss_text'):
        super().__init__()
        self.loss_weight = loss_weight
        self.logit_scale = logit_scale
        self._loss_name = loss_name

    def forward(self, batch: DistillBatch) -> torch.Tensor:
        if batch.targets.hypothesis is None:
            raise ValueError('TextGuidedContrastiveLoss needs the crop-vote hypotheses.')
        return self.loss_weight * reclip_contrastive_loss(batch.feats, batch.masks, batch.queries,
                                                          batch.targets.hypothesis, batch.name_map,
                                                          self.logit_scale)

    @property
    def loss_name(self) -> str:
        return self._loss_name
