"""CLIP's image encoder, fine-tuned (paper Table VI, docs/method.md §11.6)."""
from typing import Tuple

import torch
from mmseg.registry import MODELS

from .clip_vit import CLIPViTBackbone, dense_features


@MODELS.register_module()
class TrainableCLIPViTBackbone(CLIPViTBackbone):
    """:class:`CLIPViTBackbone` with the image encoder unfrozen (the ablation of Table VI).

    Every parameter of the image tower gets gradients, follows ``train()``, and is saved
    in checkpoints (its weights change). The dense feature path (``dense_mode``) is the
    frozen backbone's, with gradients. The text tower and the query embeddings stay
    frozen.

    Args: those of :class:`CLIPViTBackbone` (``model_name``, ``pretrained``,
        ``dense_mode``, ...), by keyword; ``save_weights`` is always True.

    Shapes: as :class:`CLIPViTBackbone`.
    """

    def __init__(self, **kwargs):
        if not kwargs.get('save_weights', True):
            raise ValueError('TrainableCLIPViTBackbone always saves its weights (they are '
                             'trained): remove save_weights=False from its config.')
        super().__init__(**dict(kwargs, save_weights=True))
        self.visual.requires_grad_(True)
        # `freeze` bound an always-eval `train` on the instance: drop it.
        if 'train' in vars(self.visual):
            del self.visual.train
        self.visual.train(self.training)

    def forward(self, img: torch.Tensor) -> Tuple[torch.Tensor]:
        img = self.pad_to_patch(img)
        return (dense_features(self.visual, img, self.dense_mode, self.naclip_std), )
