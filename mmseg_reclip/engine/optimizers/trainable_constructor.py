"""Optimizer constructor that gives the optimizer only the trainable parameters."""
import torch.nn as nn
from mmengine.optim import DefaultOptimWrapperConstructor, OptimWrapper
from mmseg.registry import OPTIM_WRAPPER_CONSTRUCTORS, OPTIM_WRAPPERS, OPTIMIZERS


@OPTIM_WRAPPER_CONSTRUCTORS.register_module()
class TrainableOptimWrapperConstructor(DefaultOptimWrapperConstructor):
    """Like mmengine's default constructor, but frozen parameters never reach the optimizer.

    mmengine's default constructor hands every parameter to the optimizer, frozen ones
    included. ReCLIP freezes CLIP structurally; with this constructor the optimizer
    (and its state, and weight decay) sees only what trains: for stage 1 the context
    vectors, PE projection and mask decoder. ``paramwise_cfg`` works as usual.
    """

    def add_params(self,
                   params: list,
                   module: nn.Module,
                   prefix: str = '',
                   is_dcn_module=None) -> None:
        # A fully frozen submodule (CLIP: ~300 tensors for ViT-B-16) never reaches the
        # paramwise rules, whose per-parameter "skipped since requires_grad=False"
        # warnings would flood the log.
        if not any(p.requires_grad for p in module.parameters()):
            return
        super().add_params(params, module, prefix, is_dcn_module)

    def __call__(self, model: nn.Module) -> OptimWrapper:
        if hasattr(model, 'module'):
            model = model.module
        optim_wrapper_cfg = self.optim_wrapper_cfg.copy()
        optim_wrapper_cfg.setdefault('type', 'OptimWrapper')
        optimizer_cfg = self.optimizer_cfg.copy()
        groups = []
        self.add_params(groups, model)
        groups = [g for g in groups if g['params'][0].requires_grad]
        if not groups:
            raise ValueError('The model has no trainable parameter: nothing to optimise.')
        optimizer_cfg['params'] = groups
        optimizer = OPTIMIZERS.build(optimizer_cfg)
        return OPTIM_WRAPPERS.build(optim_wrapper_cfg, default_args=dict(optimizer=optimizer))
