"""The Gumbel noise of the hard masks depends on (seed, iteration, rank), and only on them.

Ranks are real: two gloo processes (``torch.multiprocessing``) draw the masks of one
step; the same (seed, iteration, rank) drawn in this process must give the same masks.
"""
import os.path as osp

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from mmengine.logging import MessageHub

from mmseg_reclip.models.utils import gumbel_softmax_hard
from mmseg_reclip.utils.seeding import step_generator, step_seed

SHAPE = (2, 5, 8, 8)  # flat logits: the masks come from the noise alone


def masks_at(iteration: int, seed: int) -> torch.Tensor:
    """Hard masks of flat logits at ``iteration`` (set as the Runner does)."""
    MessageHub.get_current_instance().update_info('iter', iteration)
    gen = step_generator(torch.device('cpu'), seed)
    return gumbel_softmax_hard(torch.zeros(SHAPE), 1.0, 1, gen)


@pytest.fixture
def message_hub():
    hub = MessageHub.get_instance('test_gumbel_seed')
    yield hub
    hub.update_info('iter', 0)


def _rank_worker(rank: int, world_size: int, init_file: str, out_dir: str) -> None:
    dist.init_process_group(
        'gloo', init_method=f'file://{init_file}', rank=rank, world_size=world_size)
    try:
        MessageHub.get_instance(f'rank{rank}')
        out = {it: masks_at(it, seed=3) for it in (0, 1)}
        torch.save(out, osp.join(out_dir, f'rank{rank}.pth'))
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope='module')
def two_rank_masks(tmp_path_factory):
    root = tmp_path_factory.mktemp('gumbel_ranks')
    # spawn, not fork: forking after torch's OpenMP pool has run deadlocks the workers
    mp.start_processes(
        _rank_worker,
        args=(2, str(root / 'init'), str(root)),
        nprocs=2,
        join=True,
        start_method='spawn')
    return [torch.load(root / f'rank{r}.pth', weights_only=True) for r in range(2)]


def test_masks_differ_across_ranks_in_one_step(two_rank_masks):
    r0, r1 = two_rank_masks
    for it in (0, 1):
        assert not torch.equal(r0[it], r1[it])


def test_masks_differ_across_iterations_in_one_rank(two_rank_masks, message_hub):
    for rank_masks in two_rank_masks:
        assert not torch.equal(rank_masks[0], rank_masks[1])
    assert not torch.equal(masks_at(0, seed=3), masks_at(1, seed=3))


def test_equal_seed_iteration_rank_give_equal_masks(two_rank_masks, message_hub):
    # this process is rank 0 of no process group: the same triple as the worker's rank 0
    assert not dist.is_initialized()
    for it in (0, 1):
        assert torch.equal(masks_at(it, seed=3), two_rank_masks[0][it])
        assert torch.equal(masks_at(it, seed=3), masks_at(it, seed=3))
    assert not torch.equal(masks_at(0, seed=3), masks_at(0, seed=4))


def test_step_seed_components(message_hub):
    message_hub.update_info('iter', 5)
    at5 = step_seed(1)
    assert at5 == step_seed(1) and at5 != step_seed(2)
    message_hub.update_info('iter', 6)
    assert step_seed(1) != at5
    # default base seed: torch's initial seed (set by the Runner's randomness.seed)
    torch.manual_seed(123)
    assert step_seed() == step_seed(123)


@pytest.mark.parametrize('head', ['ReCLIPHead', 'ReCLIPStudentHead'])
def test_heads_draw_the_step_noise(head, message_hub, tmp_path):
    """Both heads' masks are the step generator's Gumbel draw at (noise_seed, iter)."""
    from mmseg.registry import MODELS

    from tests.clip_utils import TINY, save_random_clip
    if head == 'ReCLIPHead':
        clip = save_random_clip(str(tmp_path / 'tiny.pt'))
        module = MODELS.build(
            dict(
                type='ReCLIPHead',
                class_names=['cat', 'dog', 'sky'],
                num_classes=3,
                in_channels=64,
                templates='single',
                show_progress=False,
                query_cache_dir=None,
                bias_extractor=dict(num_context=4),
                mask_decoder=dict(noise_seed=9, gumbel_scale=7.0, gumbel_tau=0.5),
                text_encoder=dict(type='OpenCLIPTextEncoder', model_name=TINY, pretrained=clip)))
    else:
        module = MODELS.build(
            dict(
                type='ReCLIPStudentHead',
                in_channels=8,
                channels=8,
                num_classes=3,
                class_names=['cat', 'dog', 'sky'],
                embed_dim=8,
                bias_extractor=dict(pe_channels=8, pe_grid=(2, 2)),
                feature_module=None,
                mask_decoder=dict(noise_seed=9, gumbel_scale=7.0, gumbel_tau=0.5)))
    logits = torch.randn(2, 3, 6, 6, generator=torch.Generator().manual_seed(0))
    per_iter = []
    for it in (0, 1):
        message_hub.update_info('iter', it)
        got = module.classifier.sample_masks(logits)
        expected = gumbel_softmax_hard(7.0 * logits, 0.5, 1, step_generator(logits.device, 9))
        assert torch.equal(got, expected)
        per_iter.append(got)
    assert not torch.equal(per_iter[0], per_iter[1])


def test_step_and_sample_seeds_are_one_derivation(message_hub):
    """``step_seed`` (Gumbel noise) and ``sample_seed`` (augmentation) are both
    ``derive_seed`` of their components, in order."""
    from mmseg_reclip.utils import sample_seed
    from mmseg_reclip.utils.seeding import derive_seed
    message_hub.update_info('iter', 7)
    assert step_seed(3) == derive_seed(3, 7, 0)
    assert sample_seed(3, 1, 7, 0) == derive_seed(3, 1, 7, 0)
    assert derive_seed(3, 7, 0) != derive_seed(3, 0, 7)  # order matters
    assert 0 <= derive_seed(-1, 2**40) < 2**63
