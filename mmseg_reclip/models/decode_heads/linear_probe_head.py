"""Linear-probing head (paper Table I, docs/method.md §11.9): a 1x1 classifier, GT-trained."""
from typing import Tuple

import torch
from mmseg.models.decode_heads.decode_head import BaseDecodeHead
from mmseg.registry import MODELS


@MODELS.register_module()
class LinearProbeHead(BaseDecodeHead):
    """``logits = W·e + b`` per pixel: one 1x1 convolution (``conv_seg``) on frozen pixel
    embeddings ``e`` (docs/method.md §11.9). Nothing else: no convs, no norm, no dropout.

    The evaluation protocol of the paper's Table I (linear probing, following
    MaskContrast): the only component of this repository trained with ground-truth
    labels (``configs/linear_probe/``).

    Args:
        in_channels (int): ``D`` of the embeddings.
        num_classes (int): ``C`` (the dataset's).
        Other arguments: see mmseg's ``BaseDecodeHead`` (``loss_decode``: cross-entropy).

    Shapes:
        ``forward(inputs)``: ``inputs[in_index]`` ``[B, D, h, w]`` → ``[B, C, h, w]``.
    """

    def __init__(self, in_channels: int, num_classes: int, **kwargs):
        kwargs.setdefault('dropout_ratio', 0.0)
        super().__init__(
            in_channels=in_channels, channels=in_channels, num_classes=num_classes, **kwargs)

    def forward(self, inputs: Tuple[torch.Tensor, ...]) -> torch.Tensor:
        return self.cls_seg(self._transform_inputs(inputs))
