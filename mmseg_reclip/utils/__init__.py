"""Run-time utilities of the tools: distributed setup on GPUs and CPUs, data seeding.

Importing this package registers :class:`StepSeededSampler`, :class:`StepSeededDataset`
and the :class:`AutoDistributedDataParallel` model wrapper.
"""
from .data_seeding import SeededIndex, StepSeededDataset, StepSeededSampler, sample_seed, seeded_rng
from .dist import adapt_cfg_to_device, setup_distributed, sync_bn_to_bn, teardown_distributed
from .model_wrappers import AutoDistributedDataParallel, InferenceModelWrapper, use_auto_ddp

__all__ = [
    'SeededIndex', 'StepSeededDataset', 'StepSeededSampler', 'sample_seed', 'seeded_rng',
    'adapt_cfg_to_device', 'setup_distributed', 'sync_bn_to_bn', 'teardown_distributed',
    'AutoDistributedDataParallel', 'InferenceModelWrapper', 'use_auto_ddp'
]
