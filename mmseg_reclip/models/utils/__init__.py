from .clip_loader import (CLIP_PRETRAINED_KEY, create_clip, merge_clip_cfg, register_model_configs,
                          set_block_layernorm_eps, shared_clip_models)
from .clip_ops import (class_max_over_names, dense_class_logits, gumbel_masks, gumbel_softmax_hard,
                       name_map, resize_pos_embed_grid)
from .frozen import freeze

__all__ = [
    'CLIP_PRETRAINED_KEY', 'create_clip', 'merge_clip_cfg', 'register_model_configs',
    'set_block_layernorm_eps', 'shared_clip_models', 'class_max_over_names', 'dense_class_logits',
    'name_map', 'resize_pos_embed_grid', 'freeze', 'gumbel_softmax_hard', 'gumbel_masks'
]
