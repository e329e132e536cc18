"""Distributed training and testing on GPUs (NCCL) and on CPU-only machines (gloo).

The launch scripts (``tools/dist_train.sh``, ``tools/slurm_train.sh`` and their test
counterparts) start one process per device with ``--launcher pytorch`` or
``--launcher slurm``, as in mmseg. On GPUs nothing here changes what mmengine does:
NCCL, ``torch.cuda.set_device(local_rank)``, SyncBN and
``DistributedDataParallel(device_ids=[local_rank])``.

On a machine without CUDA, mmengine 0.10.7 cannot start: both its ``pytorch`` and
``slurm`` launchers call ``torch.cuda.set_device``. :func:`setup_distributed` then
creates the process group itself, with gloo, *before* the Runner is built, and the
config keeps ``launcher='pytorch'``/``'slurm'`` so that the Runner still shards the data
and wraps the model in DDP (it skips ``init_dist`` when a process group exists). With
``launcher='none'`` the model would not be wrapped: the data would be sharded but the
gradients never averaged, and the ranks would silently diverge.

:func:`adapt_cfg_to_device` makes the config runnable without CUDA (every run, one
process or many): ``SyncBN`` becomes ``BN`` (``torch.nn.SyncBatchNorm`` only runs on
GPUs), ``sync_bn`` is dropped, the DDP wrapper gets ``device_ids=None`` and the
distributed backend becomes gloo. On CPU each rank's BN therefore normalises with its
own batch statistics; everything else (gradient averaging, data sharding) is as on GPUs.

``CUDA_VISIBLE_DEVICES=`` (empty) hides the GPUs of a GPU machine and selects the CPU
path.
"""
import datetime
import logging
import os
import subprocess
import sys
from typing import Any, Optional

import torch
import torch.distributed as torch_dist
from mmengine.config import Config
from mmengine.logging import print_log

__all__ = [
    'cuda_available', 'sync_bn_to_bn', 'adapt_cfg_to_device', 'init_cpu_dist', 'setup_distributed',
    'teardown_distributed', 'log_once', 'LOOPBACK_ADDRS'
]

#: Norm layer types that need CUDA (torch's SyncBatchNorm; mmcv's compiled MMSyncBN).
SYNC_BN_TYPES = ('SyncBN', 'MMSyncBN', 'SyncBatchNorm')
LOOPBACK_ADDRS = ('127.0.0.1', 'localhost', '::1')
_DDP_WRAPPERS = ('MMDistributedDataParallel', 'DistributedDataParallel')


def cuda_available() -> bool:
    """Whether this process can use CUDA (``CUDA_VISIBLE_DEVICES=`` hides GPUs)."""
    return torch.cuda.is_available()


def log_once(msg: str, level: int = logging.INFO) -> None:
    """Log once per job: before the Runner exists every rank would print."""
    rank = os.environ.get('RANK', os.environ.get('SLURM_PROCID', '0'))
    if rank in ('', '0') or level >= logging.WARNING:
        print_log(msg, logger='current', level=level)


def sync_bn_to_bn(node: Any) -> int:
    """Replace ``type='SyncBN'`` (and ``MMSyncBN``) by ``'BN'`` everywhere in a config.

    Args:
        node: a :class:`Config`, dict, list or tuple, modified in place.

    Returns:
        int: the number of norm configs changed.
    """
    count = 0
    if isinstance(node, Config):
        node = node._cfg_dict
    if isinstance(node, dict):
        if node.get('type') in SYNC_BN_TYPES:
            node['type'] = 'BN'
            count += 1
        for value in node.values():
            count += sync_bn_to_bn(value)
    elif isinstance(node, (list, tuple)):
        for value in node:
            count += sync_bn_to_bn(value)
    return count


def _is_ddp_wrapper(wrapper_type: Any) -> bool:
    """Whether a ``model_wrapper_cfg`` type is (a subclass of) torch's DDP."""
    if isinstance(wrapper_type, str):
        from mmengine.registry import MODEL_WRAPPERS
        if wrapper_type in _DDP_WRAPPERS:
            return True
        wrapper_type = MODEL_WRAPPERS.get(wrapper_type)
    return isinstance(wrapper_type, type) and issubclass(wrapper_type,
                                                         torch.nn.parallel.DistributedDataParallel)


def adapt_cfg_to_device(cfg: Config, use_cuda: Optional[bool] = None) -> Config:
    """Make ``cfg`` runnable on the devices this machine has (in place).

    With CUDA nothing changes (NCCL, SyncBN, ``device_ids=[local_rank]`` as in mmseg).
    Without CUDA:

    * every ``SyncBN`` norm config becomes ``BN`` and ``cfg.sync_bn`` is dropped;
    * for a distributed launcher, ``env_cfg.dist_cfg.backend`` becomes ``'gloo'`` and
      the DDP wrapper is built with ``device_ids=None`` (``model_wrapper_cfg``; a
      wrapper type that is not DDP is left alone).

    Args:
        cfg (Config): the full config; ``cfg.launcher`` must be set.
        use_cuda (bool, optional): override CUDA detection (tests).

    Returns:
        Config: ``cfg``.
    """
    use_cuda = cuda_available() if use_cuda is None else use_cuda
    if use_cuda:
        return cfg
    n = sync_bn_to_bn(cfg)
    if n:
        log_once(f'CUDA is not available: {n} SyncBN norm config(s) converted to BN '
                 '(each process normalises with its own batch statistics).')
    if cfg.get('sync_bn', None) is not None:
        log_once(f'CUDA is not available: ignoring sync_bn={cfg.sync_bn!r}.')
        cfg.pop('sync_bn')
    if cfg.get('launcher', 'none') == 'none':
        return cfg

    if cfg.get('env_cfg', None) is None:
        cfg.env_cfg = dict()
    if cfg.env_cfg.get('dist_cfg', None) is None:
        cfg.env_cfg['dist_cfg'] = dict()
    dist_cfg = cfg.env_cfg['dist_cfg']
    backend = dist_cfg.get('backend', 'nccl')
    if backend != 'gloo':
        log_once(f'CUDA is not available: distributed backend {backend!r} -> \'gloo\'.')
        dist_cfg['backend'] = 'gloo'

    wrapper = cfg.get('model_wrapper_cfg', None)
    if wrapper is None:
        # What mmengine's Runner builds by default, minus the GPU index.
        cfg.model_wrapper_cfg = dict(
            type='MMDistributedDataParallel',
            device_ids=None,
            broadcast_buffers=False,
            find_unused_parameters=cfg.get('find_unused_parameters', False))
    elif 'device_ids' not in wrapper and _is_ddp_wrapper(
            wrapper.get('type', 'MMDistributedDataParallel')):
        wrapper['device_ids'] = None
    return cfg


def _loopback_gloo_ifname(master_addr: Optional[str]) -> None:
    """All ranks on this host: let gloo use the loopback interface.

    Gloo otherwise binds to the address the host name resolves to, which in
    containers is often not routable between the processes.
    """
    if (master_addr in LOOPBACK_ADDRS and 'GLOO_SOCKET_IFNAME' not in os.environ
            and sys.platform.startswith('linux') and os.path.exists('/sys/class/net/lo')):
        os.environ['GLOO_SOCKET_IFNAME'] = 'lo'


def _slurm_env(port: Optional[int] = None) -> None:
    """RANK/WORLD_SIZE/LOCAL_RANK/MASTER_* from Slurm's variables (as mmengine does)."""
    proc_id = int(os.environ['SLURM_PROCID'])
    ntasks = int(os.environ['SLURM_NTASKS'])
    node_list = os.environ['SLURM_NODELIST']
    local_rank = int(os.environ.get('SLURM_LOCALID', proc_id))
    if port is not None:
        os.environ['MASTER_PORT'] = str(port)
    os.environ.setdefault('MASTER_PORT', '29500')
    if 'MASTER_ADDR' not in os.environ:
        out = subprocess.run(['scontrol', 'show', 'hostname', node_list],
                             capture_output=True,
                             text=True)
        names = out.stdout.split()
        if out.returncode != 0 or not names:
            raise RuntimeError(
                f'`scontrol show hostname {node_list}` failed ({out.stderr.strip()}); '
                'set MASTER_ADDR to the first node of the job.')
        os.environ['MASTER_ADDR'] = names[0]
    os.environ['WORLD_SIZE'] = str(ntasks)
    os.environ['LOCAL_RANK'] = str(local_rank)
    os.environ['RANK'] = str(proc_id)


def _mpi_env() -> None:
    os.environ.setdefault('MASTER_PORT', '29500')
    if 'MASTER_ADDR' not in os.environ:
        raise KeyError('The environment variable MASTER_ADDR is not set')
    os.environ['WORLD_SIZE'] = os.environ['OMPI_COMM_WORLD_SIZE']
    os.environ['RANK'] = os.environ['OMPI_COMM_WORLD_RANK']
    os.environ['LOCAL_RANK'] = os.environ['OMPI_COMM_WORLD_LOCAL_RANK']


def init_cpu_dist(launcher: str,
                  backend: str = 'gloo',
                  timeout: Optional[float] = None,
                  port: Optional[int] = None) -> None:
    """Create the default process group for a CPU-only run (no ``torch.cuda`` call).

    Args:
        launcher (str): ``'pytorch'`` (torchrun sets ``RANK``, ``WORLD_SIZE``,
            ``MASTER_ADDR``/``MASTER_PORT``), ``'slurm'`` (derived from ``SLURM_*``
            and ``scontrol``, ``MASTER_PORT`` 29500 unless set) or ``'mpi'``.
        backend (str): ``'gloo'``.
        timeout (float, optional): seconds (``env_cfg.dist_cfg.timeout``).
        port (int, optional): master port for Slurm (``env_cfg.dist_cfg.port``).
    """
    if launcher == 'slurm':
        _slurm_env(port)
    elif launcher == 'mpi':
        _mpi_env()
    elif launcher != 'pytorch':
        raise ValueError(f'Invalid launcher type: {launcher}')
    _loopback_gloo_ifname(os.environ.get('MASTER_ADDR'))
    kwargs = {}
    if timeout is not None:
        kwargs['timeout'] = datetime.timedelta(seconds=timeout)
    torch_dist.init_process_group(
        backend=backend,
        init_method='env://',
        rank=int(os.environ['RANK']),
        world_size=int(os.environ['WORLD_SIZE']),
        **kwargs)


def setup_distributed(cfg: Config, use_cuda: Optional[bool] = None) -> Config:
    """Adapt ``cfg`` to the devices and, without CUDA, start the gloo process group.

    Call it in the tools after the config is complete and before the Runner is built.
    With CUDA (or ``launcher='none'``, or a process group already created) only
    :func:`adapt_cfg_to_device` runs, and mmengine's Runner initialises the
    distributed environment as usual (NCCL).

    Args:
        cfg (Config): the full config, with ``cfg.launcher``.
        use_cuda (bool, optional): override CUDA detection (tests).

    Returns:
        Config: ``cfg``.
    """
    use_cuda = cuda_available() if use_cuda is None else use_cuda
    adapt_cfg_to_device(cfg, use_cuda)
    launcher = cfg.get('launcher', 'none')
    if use_cuda or launcher == 'none':
        return cfg
    if torch_dist.is_available() and torch_dist.is_initialized():
        return cfg
    dist_cfg = dict(cfg.env_cfg.dist_cfg)
    backend = dist_cfg.pop('backend', 'gloo')
    init_cpu_dist(
        launcher,
        backend=backend,
        timeout=dist_cfg.pop('timeout', None),
        port=dist_cfg.pop('port', None))
    log_once(f'CPU distributed run: {backend} process group, rank {torch_dist.get_rank()} of '
             f'{torch_dist.get_world_size()} (launcher={launcher!r}).')
    return cfg


def teardown_distributed() -> None:
    """Wait for every rank, then destroy the default process group (if any).

    Run at the end of the tools: a process that exits with a live gloo group can abort
    ("terminate called without an active exception") when its peers close their
    connections first.
    """
    if torch_dist.is_available() and torch_dist.is_initialized():
        try:
            torch_dist.barrier()
        finally:
            torch_dist.destroy_process_group()
