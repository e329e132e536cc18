"""A DDP wrapper that also accepts models without trainable parameters.

mmengine's Runner wraps every model of a distributed run in
``DistributedDataParallel``, which refuses a module without a parameter that requires a
gradient. Training-free configs (MaskCLIP) are such models, so ``dist_test.sh`` /
``slurm_test.sh`` could not run them. :class:`AutoDistributedDataParallel` is mmengine's
``MMDistributedDataParallel`` for a model with trainable parameters (identical
behaviour, ``device_ids`` and all) and an :class:`InferenceModelWrapper` for a frozen
model (nothing to synchronise: each rank runs its share of the test set and the
evaluator gathers the results). ``tools/test.py`` uses it for distributed runs whose
config sets no ``model_wrapper_cfg``.
"""
from typing import Any

import torch.nn as nn
from mmengine.model import MMDistributedDataParallel
from mmengine.registry import MODEL_WRAPPERS

__all__ = ['AutoDistributedDataParallel', 'InferenceModelWrapper', 'use_auto_ddp']


@MODEL_WRAPPERS.register_module()
class InferenceModelWrapper(nn.Module):
    """Holds a frozen model for distributed inference (``.module``; val/test steps).

    Args:
        module (nn.Module): the model (an mmengine ``BaseModel``).
        **kwargs: DDP arguments (``device_ids``, ``broadcast_buffers``, ...), ignored.
    """

    def __init__(self, module: nn.Module, **kwargs: Any) -> None:
        super().__init__()
        self.module = module

    def val_step(self, data):
        return self.module.val_step(data)

    def test_step(self, data):
        return self.module.test_step(data)

    def train_step(self, data, optim_wrapper):
        raise RuntimeError(f'{type(self.module).__name__} has no trainable parameter: '
                           'nothing to train.')

    def forward(self, *args, **kwargs):
        return self.module(*args, **kwargs)


@MODEL_WRAPPERS.register_module()
class AutoDistributedDataParallel(MMDistributedDataParallel):
    """``MMDistributedDataParallel``, or :class:`InferenceModelWrapper` for a model
    without trainable parameters (which DDP rejects)."""

    def __new__(cls, module: nn.Module = None, *args: Any, **kwargs: Any):
        if module is not None and not any(p.requires_grad for p in module.parameters()):
            return InferenceModelWrapper(module)  # not a cls instance: no DDP __init__
        return super().__new__(cls)


def use_auto_ddp(cfg) -> bool:
    """Wrap with :class:`AutoDistributedDataParallel` (distributed runs whose config
    has no ``model_wrapper_cfg``; the arguments are the Runner's defaults). In place.

    Returns:
        bool: whether ``cfg.model_wrapper_cfg`` was set.
    """
    if cfg.get('launcher', 'none') == 'none' or cfg.get('model_wrapper_cfg', None) is not None:
        return False
    cfg.model_wrapper_cfg = dict(
        type='AutoDistributedDataParallel',
        broadcast_buffers=False,
        find_unused_parameters=cfg.get('find_unused_parameters', False))
    return True
