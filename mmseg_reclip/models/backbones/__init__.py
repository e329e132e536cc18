from .clip_vit import CLIPViTBackbone, dense_features

__all__ = ['CLIPViTBackbone', 'dense_features']
