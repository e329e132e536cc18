from .amp import autocast_dtype, autocast_off, fp32, precision_context, resolve_precision
from .clip_loader import (CLIP_PRETRAINED_KEY, create_clip, merge_clip_cfg, register_model_configs,
                          set_block_layernorm_eps, shared_clip_models)
from .clip_ops import (class_max_over_names, dense_class_logits, gumbel_masks, gumbel_softmax_hard,
                       name_map, resize_pos_embed_grid)
from .frozen import freeze
from .hypothesis import hypothesis_multi_hot
from .io import TMP_PREFIX, atomic_torch_save, atomic_write
from .seeding import derive_seed, step_generator, step_seed

__all__ = [
    'CLIP_PRETRAINED_KEY', 'create_clip', 'merge_clip_cfg', 'register_model_configs',
    'set_block_layernorm_eps', 'shared_clip_models', 'class_max_over_names', 'dense_class_logits',
    'name_map', 'resize_pos_embed_grid', 'freeze', 'gumbel_softmax_hard', 'gumbel_masks',
    'atomic_torch_save', 'atomic_write', 'TMP_PREFIX', 'hypothesis_multi_hot', 'derive_seed',
    'step_generator', 'step_seed', 'autocast_dtype', 'autocast_off', 'fp32', 'precision_context',
    'resolve_precision'
]
