"""Seeds derived from (seed, counters...): per-step Gumbel noise and per-sample data.

:func:`derive_seed` is the one way the project turns a base seed and counters into a
seed; :func:`step_seed` (Gumbel noise, per iteration and rank) and
:func:`mmseg_reclip.utils.data_seeding.sample_seed` (augmentation, per sample) use it.
"""
from typing import Optional

import numpy as np
import torch
from mmengine.dist import get_rank
from mmengine.logging import MessageHub


def derive_seed(base_seed: int, *counters: int) -> int:
    """A 63-bit seed from ``base_seed`` and integer ``counters`` (NumPy's
    ``SeedSequence``: distinct inputs give statistically independent seeds)."""
    state = np.random.SeedSequence([int(base_seed) % 2**63, *(int(c) for c in counters)])
    return int(state.generate_state(1, dtype=np.uint64)[0] % 2**63)


def step_seed(base_seed: Optional[int] = None) -> int:
    """A 63-bit seed from ``(base_seed, iteration, rank)``.

    ``base_seed`` defaults to ``torch.initial_seed()``, which mmengine's Runner sets from
    ``randomness.seed``; the iteration is the Runner's current one (``MessageHub`` info
    ``'iter'``, 0 outside a Runner). The same run, or a resumed one, draws the same noise
    at the same step on the same rank.
    """
    seed = torch.initial_seed() if base_seed is None else base_seed
    hub = MessageHub.get_current_instance()
    iteration = int(hub.get_info('iter', 0) or 0)
    return derive_seed(seed, iteration, get_rank())


def step_generator(device: torch.device, base_seed: Optional[int] = None) -> torch.Generator:
    """A ``torch.Generator`` on ``device`` seeded by :func:`step_seed`."""
    gen = torch.Generator(device=device)
    gen.manual_seed(step_seed(base_seed))
    return gen
