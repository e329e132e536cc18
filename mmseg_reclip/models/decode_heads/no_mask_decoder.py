"""No mask decoder (conference ReCLIP, docs/method.md §11.2): ``O = Lr``, Gumbel masks of it."""
from typing import Optional

import torch
from mmengine.model import BaseModule
from mmseg.registry import MODELS

from ..utils import gumbel_masks


@MODELS.register_module()
class NoMaskDecoder(BaseModule):
    """The identity in place of :class:`RectifiedMaskDecoder`: ``O = Lr`` (fp32), and the
    same hard Gumbel-softmax masks (docs/method.md §11.2). No parameters.

    Args:
        in_channels (int): ``D`` (filled in by the head; unused, kept for the interface).
        num_classes (int): ``C`` (filled in by the head; checked against ``Lr``).
        norm_cfg (dict, optional): filled in by the head; unused.
        gumbel_scale (float): logits multiplier before the hard Gumbel-softmax
            (conference ReCLIP: 1000).
        gumbel_tau (float): Gumbel-softmax temperature (1).
        noise_seed (int, optional): base seed of the Gumbel noise (default: the Runner's).

    Shapes:
        ``forward(feats, rectified)``: ``[B, D, h, w]``, ``[B, C, h, w]`` →
        ``[B, C, h, w]``; ``sample_masks(logits)``: ``[B, C, h, w]`` one-hot.
    """

    def __init__(self,
                 in_channels: int,
                 num_classes: int,
                 norm_cfg: Optional[dict] = None,
                 gumbel_scale: float = 1000.0,
                 gumbel_tau: float = 1.0,
                 noise_seed: Optional[int] = None,
                 init_cfg: Optional[dict] = None):
        super().__init__(init_cfg=init_cfg)
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.gumbel_scale = gumbel_scale
        self.gumbel_tau = gumbel_tau
        self.noise_seed = noise_seed

    def forward(self, feats: torch.Tensor, rectified: torch.Tensor) -> torch.Tensor:
        """``O = Lr`` ``[B, C, h, w]`` (fp32)."""
        if rectified.shape[1] != self.num_classes:
            raise ValueError(f'NoMaskDecoder: {rectified.shape[1]} logit channels for '
                             f'num_classes={self.num_classes}.')
        return rectified.float()

    def sample_masks(self, logits: torch.Tensor) -> torch.Tensor:
        """Hard Gumbel-softmax masks ``[B, C, h, w]`` (one-hot, differentiable)."""
        return gumbel_masks(logits, self.gumbel_scale, self.gumbel_tau, self.noise_seed)
