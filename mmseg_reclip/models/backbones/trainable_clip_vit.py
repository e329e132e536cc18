"""CLIP's image encoder, fine-tuned (paper Table VI, docs/method.md §11.6)."""
from typing import Optional, Tuple

import torch
from mmseg.registry import MODELS

from .clip_vit import CLIPViTBackbone, dense_features


@MODELS.register_module()
class TrainableCLIPViTBackbone(CLIPViTBackbone):
    """:class:`CLIPViTBackbone` with the image encoder unfrozen (the ablation of Table VI).

    Every parameter of the image tower gets gradients, follows ``train()``, and is saved
    in checkpoints (its weights change). The dense feature path is the same as the
    frozen backbone's. The text tower and the query embeddings stay frozen.

    Args: as :class:`CLIPViTBackbone` (``save_weights`` is always True).

    Shapes: as :class:`CLIPViTBackbone`.
    """

    def __init__(self,
                 model_name: str = 'ViT-B-16',
                 pretrained: Optional[str] = 'openai',
                 ln_eps: Optional[float] = None,
                 quick_gelu: Optional[bool] = None,
                 init_cfg: Optional[dict] = None):
        super().__init__(
            model_name=model_name,
            pretrained=pretrained,
            ln_eps=ln_eps,
            quick_gelu=quick_gelu,
            save_weights=True,
            init_cfg=init_cfg)
        self.visual.requires_grad_(True)
        # `freeze` bound an always-eval `train` on the instance: drop it.
        if 'train' in vars(self.visual):
            del self.visual.train
        self.visual.train(self.training)

    def forward(self, img: torch.Tensor) -> Tuple[torch.Tensor]:
        return (dense_features(self.visual, self.pad_to_patch(img)), )
