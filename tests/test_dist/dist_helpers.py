"""Test-only components loaded by the training processes of the distributed tests
(``custom_imports = dict(imports=['mmseg_reclip', 'tests.test_dist.dist_helpers'])``).

* :class:`DumpParamsHook` saves every rank's final parameters and buffers, so a test
  can compare the ranks (the checkpoint holds rank 0's only).
* :class:`InterruptHook` kills every rank with SIGKILL right after a checkpoint, as a
  preempted job dies.
* :class:`NoSyncDDP` is DDP that never averages gradients: the negative control of the
  "ranks end identical" check.
* :class:`NoiseFreeReCLIPHead` is the ReCLIP head with noise-free straight-through
  masks, for runs without any per-rank randomness.
"""
import os
import os.path as osp
import signal

import torch
from mmengine.dist import barrier, get_rank
from mmengine.hooks import Hook
from mmengine.model import MMDistributedDataParallel, is_model_wrapper
from mmengine.registry import MODEL_WRAPPERS
from mmseg.registry import HOOKS, MODELS

from mmseg_reclip.models.decode_heads.reclip_head import ReCLIPHead


def dump_path(work_dir: str, rank: int, prefix: str = 'final') -> str:
    return osp.join(work_dir, f'{prefix}_state_rank{rank}.pth')


@HOOKS.register_module()
class DumpParamsHook(Hook):
    """Save ``{'params': trainable, 'buffers': all, 'iter': n}`` of every rank before
    (``initial_state_rank<r>.pth``) and after (``final_state_rank<r>.pth``) training."""

    priority = 'LOWEST'

    def _dump(self, runner, prefix: str) -> None:
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        state = dict(
            params={k: v.detach().cpu().clone() for k, v in model.named_parameters()
                    if v.requires_grad},
            buffers={k: v.detach().cpu().clone() for k, v in model.named_buffers()},
            iter=runner.iter)
        torch.save(state, dump_path(runner.work_dir, get_rank(), prefix))

    def before_train(self, runner) -> None:
        self._dump(runner, 'initial')

    def after_train(self, runner) -> None:
        self._dump(runner, 'final')


@HOOKS.register_module()
class InterruptHook(Hook):
    """SIGKILL every rank after iteration ``at_iter`` (once its checkpoint is saved)."""

    priority = 'LOWEST'  # after CheckpointHook (VERY_LOW)

    def __init__(self, at_iter: int):
        self.at_iter = at_iter

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        if runner.iter + 1 == self.at_iter:
            barrier()  # rank 0 has written the checkpoint
            os.kill(os.getpid(), signal.SIGKILL)


@MODEL_WRAPPERS.register_module()
class NoSyncDDP(MMDistributedDataParallel):
    """DDP whose backward never all-reduces: each rank keeps its own gradients."""

    def train_step(self, data, optim_wrapper):
        with self.no_sync():
            return super().train_step(data, optim_wrapper)


@MODELS.register_module()
class NoiseFreeReCLIPHead(ReCLIPHead):
    """ReCLIP head whose masks are straight-through argmax masks without Gumbel noise."""

    def sample_masks(self, logits: torch.Tensor) -> torch.Tensor:
        soft = (self.gumbel_scale * logits / self.gumbel_tau).softmax(1)
        hard = torch.zeros_like(soft).scatter_(1, soft.argmax(1, keepdim=True), 1.0)
        return hard - soft.detach() + soft
