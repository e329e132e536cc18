"""In-process tests of the distributed glue (config adaptation, wrappers) and of the
per-sample seeding of training data. No process group is created here."""
import copy
import pickle

import numpy as np
import pytest
import torch
import torch.nn as nn
from mmengine.config import Config
from mmengine.dataset import InfiniteSampler, pseudo_collate
from torch.utils.data import DataLoader

from mmseg_reclip.utils import (AutoDistributedDataParallel, InferenceModelWrapper, SeededIndex,
                                StepSeededDataset, StepSeededSampler, adapt_cfg_to_device,
                                data_seeding, sample_seed, seeded_rng, setup_distributed,
                                sync_bn_to_bn, use_auto_ddp)
from tests.data_utils import make_voc_layout
from tests.tool_utils import REPO_ROOT

RECLIP_VOC = str(REPO_ROOT / 'configs' / 'reclip' / 'reclip_vit-b16_voc.py')


def _cfg(launcher='pytorch'):
    cfg = Config.fromfile(RECLIP_VOC)
    cfg.launcher = launcher
    return cfg


def _has_sync_bn(node) -> bool:
    return 'SyncBN' in repr(node.to_dict() if isinstance(node, Config) else node)


# ----------------------------------------------------------------------------- devices
def test_gpu_path_is_left_as_mmseg_has_it():
    """With CUDA: NCCL, SyncBN and the Runner's default DDP (device_ids=[local_rank])."""
    cfg = _cfg('pytorch')
    before = copy.deepcopy(cfg.to_dict())
    adapt_cfg_to_device(cfg, use_cuda=True)
    assert cfg.to_dict() == before
    assert cfg.env_cfg.dist_cfg.backend == 'nccl'
    assert cfg.model.decode_head.norm_cfg.type == 'SyncBN'
    assert cfg.get('model_wrapper_cfg') is None  # Runner: device_ids=[LOCAL_RANK]
    setup_distributed(cfg, use_cuda=True)  # no process group: the Runner makes it
    assert not torch.distributed.is_initialized()


def test_cpu_distributed_config():
    cfg = _cfg('pytorch')
    adapt_cfg_to_device(cfg, use_cuda=False)
    assert cfg.env_cfg.dist_cfg.backend == 'gloo'
    assert cfg.model.decode_head.norm_cfg == dict(type='BN', requires_grad=True)
    assert not _has_sync_bn(cfg)
    assert cfg.model_wrapper_cfg == dict(
        type='MMDistributedDataParallel',
        device_ids=None,
        broadcast_buffers=False,
        find_unused_parameters=False)


def test_cpu_single_process_config():
    """One process without CUDA: SyncBN -> BN, no distributed settings touched."""
    cfg = _cfg('none')
    cfg.sync_bn = 'torch'
    setup_distributed(cfg, use_cuda=False)
    assert not _has_sync_bn(cfg) and 'sync_bn' not in cfg
    assert cfg.env_cfg.dist_cfg.backend == 'nccl'
    assert cfg.get('model_wrapper_cfg') is None
    assert not torch.distributed.is_initialized()


def test_cpu_keeps_explicit_wrapper_settings():
    cfg = _cfg('slurm')
    cfg.model_wrapper_cfg = dict(type='MMDistributedDataParallel', find_unused_parameters=True)
    adapt_cfg_to_device(cfg, use_cuda=False)
    assert cfg.model_wrapper_cfg == dict(
        type='MMDistributedDataParallel', find_unused_parameters=True, device_ids=None)
    cfg = _cfg('slurm')
    use_auto_ddp(cfg)  # what tools/test.py does; a DDP subclass gets device_ids=None
    adapt_cfg_to_device(cfg, use_cuda=False)
    assert cfg.model_wrapper_cfg.type == 'AutoDistributedDataParallel'
    assert cfg.model_wrapper_cfg.device_ids is None
    cfg = _cfg('slurm')
    cfg.model_wrapper_cfg = dict(type='InferenceModelWrapper')  # not DDP
    adapt_cfg_to_device(cfg, use_cuda=False)
    assert 'device_ids' not in cfg.model_wrapper_cfg


def test_sync_bn_to_bn_nested():
    node = dict(
        a=[dict(type='SyncBN', eps=1e-3), (dict(norm=dict(type='MMSyncBN')), )],
        b=dict(type='BN'),
        c='SyncBN')
    assert sync_bn_to_bn(node) == 2
    assert node['a'][0] == dict(type='BN', eps=1e-3)
    assert node['a'][1][0]['norm']['type'] == 'BN' and node['c'] == 'SyncBN'


def test_auto_ddp_wraps_frozen_models_for_inference():
    frozen = nn.Linear(2, 2).requires_grad_(False)
    wrapped = AutoDistributedDataParallel(module=frozen, device_ids=None, broadcast_buffers=False)
    assert isinstance(wrapped, InferenceModelWrapper) and wrapped.module is frozen
    from mmengine.model import is_model_wrapper
    assert is_model_wrapper(wrapped)
    with pytest.raises(RuntimeError, match='no trainable parameter'):
        wrapped.train_step({}, None)
    # A trainable model goes to DDP, which needs a process group.
    with pytest.raises((RuntimeError, ValueError)):
        AutoDistributedDataParallel(module=nn.Linear(2, 2), device_ids=None)


# ----------------------------------------------------------------------------- seeding
class _ArangeDataset:
    """A toy dataset whose items are draws of every global generator."""

    def __len__(self):
        return 6

    def __getitem__(self, idx):
        import random
        return (int(idx), random.random(), float(np.random.rand()), float(torch.rand(())))


def _sampler(seed=0, rank=0, monkeypatch=None, inner=None):
    if monkeypatch is not None:
        monkeypatch.setattr(data_seeding, 'get_rank', lambda: rank)
    return StepSeededSampler(
        _ArangeDataset(), inner or dict(type='InfiniteSampler', shuffle=True), seed=seed)


def _take(it, n):
    return [next(it) for _ in range(n)]


def test_sample_seed_depends_on_every_component():
    base = sample_seed(0, 0, 5, 0)
    assert base == sample_seed(0, 0, 5, 0)
    assert len({
        base,
        sample_seed(1, 0, 5, 0),
        sample_seed(0, 1, 5, 0),
        sample_seed(0, 0, 6, 0),
        sample_seed(0, 0, 5, 1)
    }) == 5
    assert 0 <= base < 2**63


def test_seeded_index_pickles():
    idx = SeededIndex(3, 12345)
    back = pickle.loads(pickle.dumps(idx))
    assert back == 3 and back.seed == 12345 and isinstance(back, SeededIndex)
    assert [10, 11, 12, 13][idx] == 13


def test_sampler_seeds_follow_seed_position_and_rank(monkeypatch):
    a = _take(iter(_sampler(0, 0, monkeypatch)), 10)
    b = _take(iter(_sampler(0, 0, monkeypatch)), 10)
    assert [(int(i), i.seed) for i in a] == [(int(i), i.seed) for i in b]
    # same order of indices as the wrapped InfiniteSampler
    plain = InfiniteSampler(_ArangeDataset(), shuffle=True, seed=0)
    assert [int(i) for i in a] == _take(iter(plain), 10)
    assert [i.seed for i in a] == [sample_seed(0, 0, p, 0) for p in range(10)]
    other_rank = _take(iter(_sampler(0, 1, monkeypatch)), 10)
    assert not {i.seed for i in a} & {i.seed for i in other_rank}
    other_seed = _take(iter(_sampler(1, 0, monkeypatch)), 10)
    assert not {i.seed for i in a} & {i.seed for i in other_seed}


def test_sampler_position_continues_and_restarts_per_epoch(monkeypatch):
    s = _sampler(0, 0, monkeypatch)
    it1 = iter(s)
    first = _take(it1, 4)
    second = _take(iter(s), 4)  # InfiniteSampler continues where it stopped
    full = _take(iter(_sampler(0, 0, monkeypatch)), 8)
    assert [(int(i), i.seed) for i in first + second] == [(int(i), i.seed) for i in full]
    d = _sampler(0, 0, monkeypatch, dict(type='DefaultSampler', shuffle=True))
    e0 = list(d)
    d.set_epoch(1)
    e1 = list(d)
    assert [i.seed for i in e0] == [sample_seed(0, 0, p, 0) for p in range(6)]
    assert [i.seed for i in e1] == [sample_seed(0, 1, p, 0) for p in range(6)]


def test_seeded_rng_restores_global_state():
    torch.manual_seed(7)
    np.random.seed(7)
    expect = (float(np.random.rand()), float(torch.rand(())))
    torch.manual_seed(7)
    np.random.seed(7)
    with seeded_rng(123):
        inside = (float(np.random.rand()), float(torch.rand(())))
    assert (float(np.random.rand()), float(torch.rand(()))) == expect
    with seeded_rng(123):
        assert (float(np.random.rand()), float(torch.rand(()))) == inside
    assert torch.initial_seed() == 7


def test_dataset_item_depends_only_on_its_seed():
    ds = StepSeededDataset(_ArangeDataset())
    idx = SeededIndex(2, 99)
    np.random.seed(0)
    a = ds[idx]
    np.random.seed(1)
    torch.manual_seed(5)
    assert ds[idx] == a and a[0] == 2
    assert ds[SeededIndex(2, 100)] != a
    assert len(ds) == 6 and ds[3][0] == 3  # plain ints load as usual


def _voc_loader(root, num_workers, seed=0):
    ds = StepSeededDataset(
        dict(
            type='PascalVOC20Dataset',
            data_root=root,
            data_prefix=dict(img_path='JPEGImages', seg_map_path='SegmentationClass'),
            ann_file='ImageSets/Segmentation/train.txt',
            pipeline=[
                dict(type='LoadImageFromFile'),
                dict(type='RandomResize', scale=(128, 64), ratio_range=(0.5, 2.0), keep_ratio=True),
                dict(type='RandomCrop', crop_size=(48, 48), cat_max_ratio=1.0),
                dict(type='RandomFlip', prob=0.5),
                dict(type='PhotoMetricDistortion'),
                dict(type='PackSegInputs')
            ]))
    ds.full_init()
    sampler = StepSeededSampler(ds, dict(type='InfiniteSampler', shuffle=True), seed=seed)
    return DataLoader(
        ds, batch_size=2, sampler=sampler, num_workers=num_workers, collate_fn=pseudo_collate)


def _batches(loader, n):
    """``n`` batches as flat lists of image tensors (crops may be smaller than 48)."""
    it = iter(loader)
    return [img for _ in range(n) for img in next(it)['inputs']]


def _same(a, b) -> bool:
    return len(a) == len(b) and all(x.shape == y.shape and torch.equal(x, y) for x, y in zip(a, b))


def test_augmentation_is_independent_of_workers(tmp_path):
    """The real VOC pipeline: the same batches with 0 or 2 workers, whatever the global
    generators' state; another seed gives other batches."""
    root = make_voc_layout(str(tmp_path / 'voc'), n_generated=3)
    ref = _batches(_voc_loader(root, 0), 4)
    assert len(ref) == 8 and not _same(ref[:2], ref[2:4])
    np.random.seed(123)  # other users of the global generators change nothing
    assert _same(ref, _batches(_voc_loader(root, 0), 4))
    assert _same(ref, _batches(_voc_loader(root, 2), 4))
    assert not _same(ref, _batches(_voc_loader(root, 0, seed=1), 4))


def test_configs_carry_the_seeding_wrappers():
    cfg = _cfg('none')
    # the configs carry the wrappers themselves (so mmseg's own train.py seeds too)
    loader = cfg.train_dataloader
    assert loader.sampler == dict(
        type='StepSeededSampler', sampler=dict(type='InfiniteSampler', shuffle=True))
    assert loader.dataset.type == 'StepSeededDataset'
    assert loader.dataset.dataset.type == 'PascalVOC20Dataset'
