"""Rectified mask decoder (docs/method.md §4): ``O = BN(Conv(concat(F, Lr)))`` and Gumbel masks."""
from typing import Optional

import torch
import torch.nn as nn
from mmcv.cnn import build_norm_layer
from mmengine.model import BaseModule
from mmengine.model.weight_init import constant_init, kaiming_init
from mmseg.registry import MODELS

from ...utils.amp import autocast_off
from ..utils import gumbel_masks


@MODELS.register_module()
class RectifiedMaskDecoder(BaseModule):
    """``O = BN(Conv_{k×k}(concat(F, Lr)))`` (``D + C → C`` channels, padding ``k // 2``,
    no activation), and the hard Gumbel-softmax masks of the stage-1 and text-guided
    losses (docs/method.md §4).

    The convolution is initialised Kaiming-normal (fan-out) and BN with weight 1, bias 0
    (:meth:`reset_parameters`). Under autocast the convolution runs in low precision;
    BN (its batch statistics and running buffers) always runs in fp32. The
    distillation student holds a frozen copy (BN then uses the running statistics).

    Args:
        in_channels (int): ``D``, channels of the features ``F`` (filled in by the head).
        num_classes (int): ``C`` (filled in by the head).
        kernel_size (int): decoder convolution kernel (5).
        norm_cfg (dict): the norm (``BN``; ``SyncBN`` on GPUs; default: the head's).
        gumbel_scale (float): logits multiplier before the hard Gumbel-softmax (100;
            conference ReCLIP: 1000).
        gumbel_tau (float): Gumbel-softmax temperature (1).
        noise_seed (int, optional): base seed of the Gumbel noise (default: the Runner's
            seed); the noise of a step depends on (seed, iteration, rank).

    Shapes:
        ``forward(feats, rectified)``: ``[B, D, h, w]`` and ``[B, C, h, w]`` →
        ``[B, C, h, w]`` (fp32); ``sample_masks(logits)``: ``[B, C, h, w]`` one-hot.
    """

    def __init__(self,
                 in_channels: int,
                 num_classes: int,
                 kernel_size: int = 5,
                 norm_cfg: dict = dict(type='BN'),
                 gumbel_scale: float = 100.0,
                 gumbel_tau: float = 1.0,
                 noise_seed: Optional[int] = None,
                 init_cfg: Optional[dict] = None):
        super().__init__(init_cfg=init_cfg)
        if kernel_size % 2 != 1:
            raise ValueError(f'kernel_size must be odd (same-size output), got {kernel_size}')
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.kernel_size = kernel_size
        self.gumbel_scale = gumbel_scale
        self.gumbel_tau = gumbel_tau
        self.noise_seed = noise_seed
        self.conv = nn.Conv2d(
            in_channels + num_classes, num_classes, kernel_size, padding=kernel_size // 2)
        self.norm = build_norm_layer(norm_cfg, num_classes)[1]
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Initialise conv and BN as the released code (docs/method.md §4)."""
        kaiming_init(self.conv, mode='fan_out', nonlinearity='relu', distribution='normal')
        constant_init(self.norm, 1, bias=0)

    def init_weights(self) -> None:
        # mmengine's default init would overwrite the method's initialisation.
        self.reset_parameters()

    def forward(self, feats: torch.Tensor, rectified: torch.Tensor) -> torch.Tensor:
        """``BN(conv(concat(F, Lr)))`` ``[B, C, h, w]``."""
        out = self.conv(torch.cat([feats, rectified.to(feats.dtype)], dim=1))
        with autocast_off():
            return self.norm(out.float())

    def sample_masks(self, logits: torch.Tensor) -> torch.Tensor:
        """Hard Gumbel-softmax masks ``[B, C, h, w]`` (one-hot, differentiable)."""
        return gumbel_masks(logits, self.gumbel_scale, self.gumbel_tau, self.noise_seed)
