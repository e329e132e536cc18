"""Make a submodule structurally frozen: no gradients, always eval, optionally not saved."""
from typing import Iterable

import torch.nn as nn


def _always_eval(module: nn.Module, mode: bool = True) -> nn.Module:
    # Bound over nn.Module.train: the frozen part ignores the parent's train() switch.
    nn.Module.train(module, False)
    return module


def freeze(module: nn.Module, save_weights: bool = True) -> nn.Module:
    """Freeze ``module`` in place and return it.

    Parameters get ``requires_grad=False`` (so no optimizer built by mmengine sees them
    and DDP ignores them), and ``module.train(True)`` keeps it in eval mode (BatchNorm
    statistics, dropout). With ``save_weights=False`` the module's tensors are left out of
    ``state_dict()`` (they are rebuilt from the frozen source at construction, e.g.
    CLIP's ``pretrained`` weights) and a checkpoint without them loads without
    missing-key warnings.
    """
    module.requires_grad_(False)
    module.train = _always_eval.__get__(module)
    module.eval()
    if not save_weights:
        module._register_state_dict_hook(_drop_all)
        module._register_load_state_dict_pre_hook(_fill_missing_from_self, with_module=True)
    return module


def _drop_all(module, state_dict, prefix, local_metadata):
    for key in [k for k in state_dict if k.startswith(prefix)]:
        del state_dict[key]
    return state_dict


def _fill_missing_from_self(module, state_dict, prefix, local_metadata, strict, missing_keys,
                            unexpected_keys, error_msgs):
    for name, tensor in _own_tensors(module):
        state_dict.setdefault(prefix + name, tensor)


def _own_tensors(module: nn.Module) -> Iterable:
    yield from module.named_parameters()
    for name, buf in module.named_buffers():
        owner, _, leaf = name.rpartition('.')
        if leaf not in module.get_submodule(owner)._non_persistent_buffers_set:
            yield name, buf  # non-persistent buffers are never in a state dict
