from .clip_loader import (CLIP_PRETRAINED_KEY, check_model_name, check_pretrained, create_clip,
                          merge_clip_cfg, register_model_configs, set_block_layernorm_eps,
                          shared_clip_models)
from .clip_ops import (class_max_over_names, dense_class_logits, gumbel_softmax_hard,
                       resize_pos_embed_grid)
from .seeding import step_generator, step_seed
from .frozen import freeze
from .io import atomic_torch_save
from .amp import autocast_dtype, autocast_off, fp32, precision_context, resolve_precision

__all__ = [
    'CLIP_PRETRAINED_KEY', 'check_model_name', 'check_pretrained', 'create_clip',
    'merge_clip_cfg', 'register_model_configs', 'set_block_layernorm_eps',
    'shared_clip_models',
    'class_max_over_names', 'dense_class_logits', 'resize_pos_embed_grid', 'freeze',
    'gumbel_softmax_hard', 'atomic_torch_save', 'step_generator', 'step_seed',
    'autocast_dtype', 'autocast_off', 'fp32', 'precision_context', 'resolve_precision'
]
