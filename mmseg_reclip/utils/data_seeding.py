"""Data augmentation seeded by (seed, epoch, position, rank): reproducible and resumable.

mmengine seeds augmentation per *process*: the main process with ``randomness.seed``
(the same on every rank unless ``diff_rank_seed``) and each dataloader worker with
``seed + num_workers * rank + worker_id``. What a sample gets then depends on the
number of workers, on which worker loads it and on whatever else drew from the global
``random``/``numpy``/``torch`` generators before it; with ``num_workers=0`` every rank
draws the same augmentation parameters.

Here every sample is augmented under its own seed instead:

* :class:`StepSeededSampler` wraps the configured sampler. It runs in the main
  process, counts the samples it hands out on this rank and attaches to every index
  a seed derived from ``(seed, epoch, position, rank)`` with ``position = iteration ×
  batch_size + slot`` (:func:`sample_seed`).
* :class:`StepSeededDataset` wraps the configured dataset. It seeds ``random``,
  ``numpy.random`` and torch's CPU generator from that seed, runs the pipeline and
  restores the three generators, in the worker or in the main process alike.

The augmentation of a sample is therefore a function of the seed, its position in the
run and the rank only: the same with any ``num_workers``, unaffected by other users of
the global generators, different on every rank. On ``--resume`` mmengine's
``IterBasedTrainLoop`` advances the dataloader by the iterations already done, so the
sampler hands out the same positions and the resumed run continues bit-identically
(Gumbel noise is seeded per step too: :func:`mmseg_reclip.models.utils.step_seed`).

The dataset base configs (``configs/_base_/datasets``) set both wrappers in
``train_dataloader``, so the config alone describes the run: mmseg's own
``tools/train.py`` and ours give the same one.
"""
import random
from typing import Any, Iterator, Optional

import numpy as np
import torch
from mmengine.dist import get_rank, sync_random_seed
from mmseg.registry import DATA_SAMPLERS, DATASETS
from torch.utils.data import Dataset, Sampler

from .seeding import derive_seed

__all__ = ['sample_seed', 'SeededIndex', 'StepSeededSampler', 'StepSeededDataset', 'seeded_rng']


def sample_seed(seed: int, epoch: int, position: int, rank: int) -> int:
    """A 63-bit seed for one sample, from ``(seed, epoch, position, rank)``.

    ``position`` counts the samples handed out on ``rank`` since the start of
    ``epoch`` (iteration-based training: one endless epoch, ``position = iteration ×
    batch_size + slot``).
    """
    return derive_seed(seed, epoch, position, rank)


class SeededIndex(int):
    """A dataset index that carries the seed its sample is augmented with."""

    seed: int

    def __new__(cls, index: int, seed: int) -> 'SeededIndex':
        obj = super().__new__(cls, index)
        obj.seed = int(seed)
        return obj

    def __reduce__(self):  # through the dataloader workers' queues
        return SeededIndex, (int(self), self.seed)

    def __repr__(self) -> str:
        return f'SeededIndex({int(self)}, seed={self.seed})'


class seeded_rng:
    """Context manager: seed ``random``, ``numpy.random`` and torch's CPU generator,
    then restore their previous states on exit."""

    def __init__(self, seed: int):
        self.seed = int(seed)

    def __enter__(self) -> 'seeded_rng':
        self._states = (random.getstate(), np.random.get_state(), torch.get_rng_state())
        random.seed(self.seed)
        np.random.seed(self.seed % 2**32)
        torch.manual_seed(self.seed)
        return self

    def __exit__(self, *exc) -> None:
        py_state, np_state, torch_state = self._states
        random.setstate(py_state)
        np.random.set_state(np_state)
        torch.set_rng_state(torch_state)


@DATA_SAMPLERS.register_module()
class StepSeededSampler(Sampler):
    """Wrap a sampler; attach a per-sample seed to every index it yields.

    Args:
        dataset: the dataset (passed on to the wrapped sampler).
        sampler (dict): config of the wrapped sampler (e.g.
            ``dict(type='InfiniteSampler', shuffle=True)``); it is built with the same
            ``dataset`` and ``seed``.
        seed (int, optional): base seed; the Runner passes ``randomness.seed``. None:
            a random seed shared by all ranks (as mmengine's samplers do).

    The position counter continues across ``iter()`` calls (an ``InfiniteSampler``
    also continues where it stopped) and restarts at 0 when ``set_epoch`` changes the
    epoch.
    """

    def __init__(self, dataset, sampler: dict, seed: Optional[int] = None) -> None:
        if seed is None:
            seed = sync_random_seed()
        self.seed = int(seed)
        self.rank = get_rank()
        self.sampler = DATA_SAMPLERS.build(
            sampler, default_args=dict(dataset=dataset, seed=self.seed))
        self.epoch = 0
        self.position = 0

    def __iter__(self) -> Iterator[SeededIndex]:
        for index in self.sampler:
            seed = sample_seed(self.seed, self.epoch, self.position, self.rank)
            self.position += 1
            yield SeededIndex(int(index), seed)

    def __len__(self) -> int:
        return len(self.sampler)

    def set_epoch(self, epoch: int) -> None:
        if epoch != self.epoch:
            self.position = 0
        self.epoch = epoch
        if hasattr(self.sampler, 'set_epoch'):
            self.sampler.set_epoch(epoch)


@DATASETS.register_module()
class StepSeededDataset(Dataset):
    """Wrap a dataset; load every :class:`SeededIndex` under its own seed.

    A plain ``int`` index is loaded as the wrapped dataset would load it. Everything
    else (``metainfo``, ``get_data_info``, ``full_init``, ``__len__``, attributes) is
    the wrapped dataset's.

    Args:
        dataset (dict | Dataset): the wrapped dataset or its config.
    """

    def __init__(self, dataset: Any) -> None:
        self.dataset = DATASETS.build(dataset) if isinstance(dataset, dict) else dataset

    @property
    def metainfo(self) -> dict:
        return self.dataset.metainfo

    def full_init(self) -> None:
        if hasattr(self.dataset, 'full_init'):
            self.dataset.full_init()

    def get_data_info(self, idx: int) -> dict:
        return self.dataset.get_data_info(int(idx))

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, idx):
        seed = getattr(idx, 'seed', None)
        if seed is None:
            return self.dataset[idx]
        with seeded_rng(seed):
            return self.dataset[int(idx)]

    def __getattr__(self, name: str):
        # only called for attributes not found on the wrapper itself
        if name == 'dataset':
            raise AttributeError(name)
        return getattr(self.dataset, name)

    def __repr__(self) -> str:
        return f'StepSeededDataset(\n{self.dataset!r})'
