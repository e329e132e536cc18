"""Coupled bias extraction of the conference ReCLIP (docs/method.md §11.1)."""
from contextlib import nullcontext
from typing import Optional, Tuple

import torch
from mmseg.registry import MODELS

from ...utils.amp import autocast_dtype, autocast_off
from ..utils import resize_pos_embed_grid
from .bias_extractor import ReferenceBiasExtractor


def coupled_bias_logits(feats: torch.Tensor, reference: torch.Tensor,
                        space: torch.Tensor) -> torch.Tensor:
    """Conference-ReCLIP bias ``B = F·Rᵀ + S`` (docs/method.md §11.1).

    Args:
        feats (Tensor): ``[B, D, h, w]`` CLIP's visual feature map ``F``.
        reference (Tensor): ``[C, D]`` reference text embeddings ``R``.
        space (Tensor): ``[C, h, w]`` space-preference bias ``S`` (projected PE).

    Returns:
        Tensor: ``[B, C, h, w]`` (image-dependent).
    """
    return torch.einsum('bdhw,cd->bchw', feats, reference.to(feats.dtype)) + space.to(feats.dtype)


@MODELS.register_module()
class CoupledBiasExtractor(ReferenceBiasExtractor):
    """Bias of the conference ReCLIP: ``B = F·Rᵀ + Conv1x1(PE_{h×w})`` ``[B, C, h, w]``.

    - class-preference bias ``F·Rᵀ``: the similarity of CLIP's visual feature map
      ``F`` with the Reference features ``R`` (the same learnable CoOp prompt as
      :class:`ReferenceBiasExtractor`). ``F`` carries PE, so this part also carries
      space: the coupling that ReCLIP++ removed (docs/method.md §11.1).
    - space-preference bias ``S = Conv1x1(PE_{h×w})``: CLIP's PE grid resized to the
      feature grid and projected straight to ``C`` channels (``pe_channels → C``).

    Both parts are subtracted from the query logits by the head (``bias_mode``). ``S``
    does not depend on the image: outside training it is cached per grid size like the
    ReCLIP++ bias; ``F·Rᵀ`` is computed per image. Inherits the learnt / inherited modes,
    the context init and :meth:`inherit` of :class:`ReferenceBiasExtractor` (the
    inherited ``pe_proj`` is ``[C, pe_channels, 1, 1]``).

    Args: as :class:`ReferenceBiasExtractor`.

    Shapes:
        ``forward(size, feats)``: ``size = (h, w)``, ``feats`` ``[B, D, h, w]`` →
        ``[B, C, h, w]``; :meth:`space_bias` → ``[C, h, w]``.
    """

    #: ``B`` depends on the image (no head-alone bias map, see ``bias_maps.bias_map``).
    image_dependent = True

    def __init__(self, num_classes: int, embed_dim: int, **kwargs):
        super().__init__(num_classes, embed_dim, **kwargs)
        # The PE is projected to class logits directly (not into the joint space).
        self.pe_proj = torch.nn.Conv2d(self.pe_proj.in_channels, num_classes, 1, bias=True)

    def positional_features(self, size: Tuple[int, int]) -> torch.Tensor:
        """``S`` ``[C, h, w]``: the 1x1 projection of CLIP's PE grid resized to ``size``."""
        grid = resize_pos_embed_grid(self.pe_grid(), tuple(size))
        return self.pe_proj(grid[None])[0]

    def space_bias(self, size: Tuple[int, int]) -> torch.Tensor:
        """``S`` ``[C, h, w]``, with gradients while training a learnt extractor, else
        cached per (size, device, dtype, autocast dtype)."""
        if self.learnt and self.training:
            return self.positional_features(size)
        device, dtype = self.pe_proj.weight.device, self.pe_proj.weight.dtype
        amp = autocast_dtype(device) if self.learnt else None
        key = ('space', tuple(size), device, dtype, amp)
        if key not in self._cache:
            with torch.no_grad(), (nullcontext() if self.learnt else autocast_off()):
                self._cache[key] = self.positional_features(size)
        return self._cache[key]

    def forward(self, size: Tuple[int, int], feats: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Bias logits ``B`` ``[B, C, h, w]`` for the features ``F`` of a ``size`` grid."""
        if feats is None:
            raise ValueError('CoupledBiasExtractor needs the visual features: call it as '
                             'extractor(size, feats=F) with F [B, D, h, w] (its class-'
                             'preference bias is the similarity of F and R).')
        if tuple(feats.shape[-2:]) != tuple(size):
            raise ValueError(
                f'feats grid {tuple(feats.shape[-2:])} differs from size {tuple(size)}.')
        if self.learnt and self.training:
            ref = self.reference_embeddings()
        else:
            ref = self._frozen_reference()
        return coupled_bias_logits(feats, ref, self.space_bias(size))

    def _frozen_reference(self) -> torch.Tensor:
        # R only changes while training: computed once per (device, dtype, autocast) outside.
        device, dtype = self.pe_proj.weight.device, self.pe_proj.weight.dtype
        amp = autocast_dtype(device) if self.learnt else None
        key = ('reference', device, dtype, amp)
        if key not in self._cache:
            with torch.no_grad(), (nullcontext() if self.learnt else autocast_off()):
                self._cache[key] = self.reference_embeddings()
        return self._cache[key]
