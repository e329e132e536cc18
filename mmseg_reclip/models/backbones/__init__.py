from .clip_vit import CLIPViTBackbone, dense_features
from .frozen_segmentor_embedder import FrozenSegmentorEmbedder
from .trainable_clip_vit import TrainableCLIPViTBackbone

__all__ = [
    'CLIPViTBackbone', 'dense_features', 'FrozenSegmentorEmbedder', 'TrainableCLIPViTBackbone'
]
