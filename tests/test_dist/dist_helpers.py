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
* :class:`NodeInfoHook` records where every rank runs (host, network namespace,
  address) and its TCP connections, for the multi-node Slurm test.
"""
import json
import os
import os.path as osp
import signal
import socket
from typing import Dict, List

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
            params={
                k: v.detach().cpu().clone()
                for k, v in model.named_parameters() if v.requires_grad
            },
            buffers={
                k: v.detach().cpu().clone()
                for k, v in model.named_buffers()
            },
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
        decoder = self.mask_decoder
        soft = (decoder.gumbel_scale * logits / decoder.gumbel_tau).softmax(1)
        hard = torch.zeros_like(soft).scatter_(1, soft.argmax(1, keepdim=True), 1.0)
        return hard - soft.detach() + soft


def _tcp_hex_addr(text: str) -> str:
    """``0B09E70A:13BF`` of ``/proc/net/tcp`` -> ``10.231.9.11:5055`` (IPv4, and IPv6
    only where it maps an IPv4 address)."""
    addr, port = text.split(':')
    raw = bytes.fromhex(addr)
    if len(raw) == 16:  # four host-order 32-bit words
        raw = b''.join(raw[i:i + 4][::-1] for i in range(0, 16, 4))
        if raw[:12] != b'\0' * 10 + b'\xff' * 2:
            return f'[{socket.inet_ntop(socket.AF_INET6, raw)}]:{int(port, 16)}'
        raw = raw[12:]
    else:
        raw = raw[::-1]
    return f'{socket.inet_ntoa(raw)}:{int(port, 16)}'


def established_tcp() -> List[List[str]]:
    """``[local, remote]`` of every established TCP connection of this process's
    network namespace."""
    conns = []
    for table in ('/proc/net/tcp', '/proc/net/tcp6'):
        if not osp.exists(table):
            continue
        with open(table) as f:
            for line in f.readlines()[1:]:
                fields = line.split()
                if len(fields) > 3 and fields[3] == '01':  # TCP_ESTABLISHED
                    conns.append([_tcp_hex_addr(fields[1]), _tcp_hex_addr(fields[2])])
    return conns


def interface_bytes() -> Dict[str, Dict[str, int]]:
    """Bytes sent and received by each network interface of this namespace."""
    stats = {}
    for name in sorted(os.listdir('/sys/class/net')):
        entry = {}
        for key in ('tx_bytes', 'rx_bytes'):
            try:
                with open(f'/sys/class/net/{name}/statistics/{key}') as f:
                    entry[key] = int(f.read())
            except (OSError, ValueError):
                pass
        stats[name] = entry
    return stats


def node_info_path(work_dir: str, rank: int) -> str:
    return osp.join(work_dir, f'node_info_rank{rank}.json')


@HOOKS.register_module()
class NodeInfoHook(Hook):
    """Write ``node_info_rank<r>.json``: the Slurm node, host name, network namespace,
    resolved addresses, per-interface traffic during training and, at the end of
    training (the gloo connections still open), the established TCP connections."""

    priority = 'LOWEST'

    def before_train(self, runner) -> None:
        self._bytes_before = interface_bytes()

    def after_train(self, runner) -> None:
        host = socket.gethostname()
        master = os.environ.get('MASTER_ADDR', '')
        info = dict(
            rank=get_rank(),
            slurm_procid=os.environ.get('SLURM_PROCID'),
            slurm_nodeid=os.environ.get('SLURM_NODEID'),
            slurm_nodename=os.environ.get('SLURMD_NODENAME'),
            hostname=host,
            host_ip=socket.gethostbyname(host),
            master_addr=master,
            master_ip=socket.gethostbyname(master) if master else None,
            netns=os.readlink('/proc/self/ns/net'),
            bytes_before=self._bytes_before,
            bytes_after=interface_bytes(),
            tcp=established_tcp(),
            trainable_bytes=sum(p.numel() * p.element_size() for p in runner.model.parameters()
                                if p.requires_grad))
        with open(node_info_path(runner.work_dir, get_rank()), 'w') as f:
            json.dump(info, f, indent=1)
