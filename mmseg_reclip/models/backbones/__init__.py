from .clip_vit import CLIPViTBackbone
from .frozen_segmentor_embedder import FrozenSegmentorEmbedder
from .trainable_clip_vit import TrainableCLIPViTBackbone

__all__ = ['CLIPViTBackbone', 'FrozenSegmentorEmbedder', 'TrainableCLIPViTBackbone']
