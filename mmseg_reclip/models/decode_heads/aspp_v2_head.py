"""DeepLab V2 atrous spatial pyramid pooling (ASPP-V2), the distillation student's head.

Design note — part of the student head, not a neck. In DeepLab V2 the ASPP *is* the
classifier: the parallel dilated 3x3 convs are the last layer and their outputs are
summed (V3's ASPP with image pooling, BN and a concat+fuse conv is a different module,
mmseg's ``ASPPHead``). In ReCLIP++ (docs/method.md §7) that sum is followed directly by the
projection into CLIP's text-aligned space and the L2 normalisation; all three together
turn backbone features into the student's ``F``. :class:`ReCLIPStudentHead` therefore
owns this path (``feature_module=dict(type='ASPPV2')``), which leaves mmseg's ``neck``
slot free for what necks do — fusing the levels of a multi-scale backbone (e.g. an FPN
for ConvNeXt / Swin / MiT students) — and keeps every student tensor the distillation
losses need (``F``, decoder logits, masks) in one module. :class:`ASPPV2` is registered
on its own so that a config can swap it for another feature module.
"""
from typing import Optional, Sequence

import torch
import torch.nn as nn
from mmengine.model import BaseModule
from mmengine.model.weight_init import normal_init
from mmseg.registry import MODELS


@MODELS.register_module()
class ASPPV2(BaseModule):
    """Four parallel dilated 3x3 convs whose outputs are summed (DeepLab V2).

    Args:
        in_channels (int): channels of the backbone (or neck) feature map.
        channels (int): output channels of every branch (and of the sum): 512.
        dilations (Sequence[int]): one branch per dilation; DeepLab V2: (6, 12, 18, 24).
            Padding equals the dilation, so the spatial size is kept.
        bias (bool): conv bias (DeepLab V2: True).
        init_std (float): std of the normal weight init (DeepLab V2: 0.01); biases 0.

    Shapes:
        ``[B, in_channels, h, w]`` → ``[B, channels, h, w]``.
    """

    def __init__(self,
                 in_channels: int,
                 channels: int = 512,
                 dilations: Sequence[int] = (6, 12, 18, 24),
                 bias: bool = True,
                 init_std: float = 0.01,
                 init_cfg: Optional[dict] = None):
        super().__init__(init_cfg=init_cfg)
        if len(dilations) == 0:
            raise ValueError('ASPPV2 needs at least one dilation.')
        self.in_channels = in_channels
        self.channels = channels
        self.dilations = tuple(int(d) for d in dilations)
        self.init_std = init_std
        self.branches = nn.ModuleList(
            nn.Conv2d(in_channels, channels, 3, padding=d, dilation=d, bias=bias)
            for d in self.dilations)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for conv in self.branches:
            normal_init(conv, mean=0.0, std=self.init_std, bias=0.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.branches[0](x)
        for conv in self.branches[1:]:
            out = out + conv(x)
        return out
