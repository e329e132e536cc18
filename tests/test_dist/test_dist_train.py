"""Multi-process training and testing through the real launch scripts (2 processes).

Without CUDA the scripts run on CPU with gloo (``mmseg_reclip.utils.dist``); on a GPU
machine the same tests exercise NCCL. Every run is a tiny ReCLIP (random tiny CLIP,
4 images, 64-pixel crops, 4 iterations).
"""
import re
from pathlib import Path

import pytest
import torch

from tests.test_dist.dist_utils import (assert_params_close, assert_ranks_identical,
                                        assert_states_equal, dist_train, free_port,
                                        hypothesis_cache, load_states, run_script, write_config)
from tests.tool_utils import run_tool

WORLD = 2


# ----------------------------------------------------------------------------- runs
# deterministic_run (2 ranks x batch 2, dist_train.sh) is in conftest.py: the multi-node
# Slurm test compares against it too.
@pytest.fixture(scope='module')
def stochastic_config(dist_assets):
    root = dist_assets['root']
    return write_config(
        root / 'sto_2x2.py',
        dist_assets['clip'],
        dist_assets['data'],
        kind='stochastic',
        batch_size=2)


@pytest.fixture(scope='module')
def stochastic_run(dist_assets, stochastic_config):
    """2 ranks, Gumbel noise, random augmentation, BN: 4 iterations without a stop."""
    work_dir = dist_assets['root'] / 'wd_sto_full'
    proc = dist_train(stochastic_config, WORLD, work_dir)
    return dict(
        work_dir=work_dir,
        log=proc.stdout,
        states=load_states(work_dir, WORLD),
        initial=load_states(work_dir, WORLD, 'initial'))


# ----------------------------------------------------------------------------- training
def test_two_ranks_average_gradients_and_match_one_process(deterministic_run, single_process_run):
    """dist_train.sh with 2 processes: both ranks end identical, training moved the
    weights, and the result equals one process with the same global batch."""
    states, initial = deterministic_run['states'], deterministic_run['initial']
    log = deterministic_run['log']
    assert 'Distributed training: True' in log
    assert re.search(r'rank 0 of 2', log), log[-3000:]
    assert_ranks_identical(states)
    moved = max(
        float((states[0]['params'][k] - initial[0]['params'][k]).abs().max())
        for k in states[0]['params'])
    assert moved > 1e-4, f'training did not change the parameters (max move {moved:.3g})'
    assert states[0]['iter'] == single_process_run['state']['iter'] == 4
    worst = assert_params_close(states[0], single_process_run['state'], atol=1e-6)
    print(f'2 processes vs 1 process: max |param diff| = {worst:.3g}')


def test_rank_check_catches_unsynchronised_gradients(dist_assets):
    """Negative control: the same 2-process run with DDP's all-reduce disabled must
    fail :func:`assert_ranks_identical` (the ranks see different images)."""
    root = dist_assets['root']
    cfg = write_config(
        root / 'det_nosync.py',
        dist_assets['clip'],
        dist_assets['data'],
        kind='deterministic',
        batch_size=2,
        max_iters=2,
        checkpoint_interval=1000,
        extra="model_wrapper_cfg = dict(type='NoSyncDDP')")
    work_dir = root / 'wd_nosync'
    dist_train(cfg, WORLD, work_dir)
    with pytest.raises(AssertionError, match='parameters differ from rank 0'):
        assert_ranks_identical(load_states(work_dir, WORLD))


def test_crop_vote_prepass_is_split_across_ranks(deterministic_run, single_process_run):
    """The hypothesis pre-pass runs on half the images per rank; the gathered 2-rank
    cache equals the 1-rank cache."""
    assert 'Computing crop_vote hypotheses for 4 images (rank 0: 2)' in deterministic_run['log']
    assert 'Computing crop_vote hypotheses for 4 images (rank 0: 4)' in single_process_run['log']
    two = hypothesis_cache(deterministic_run['work_dir'])
    one = hypothesis_cache(single_process_run['work_dir'])
    assert len(two['hypotheses']) == 4
    assert two['hypotheses'] == one['hypotheses']
    assert two['key'] == one['key']


def test_stochastic_ranks_stay_identical(stochastic_run):
    """With Gumbel noise, random augmentation and per-rank BN statistics the trainable
    parameters are still identical on both ranks (gradients are averaged)."""
    assert_ranks_identical(stochastic_run['states'])
    # BN running statistics are per rank on CPU (broadcast_buffers=False, as mmseg):
    # the ranks really saw different data.
    bufs = [s['buffers'] for s in stochastic_run['states']]
    bn = [k for k in bufs[0] if k.endswith('running_mean')]
    assert bn and any(not torch.equal(bufs[0][k], bufs[1][k]) for k in bn)


def test_interrupt_and_resume_is_bit_identical(dist_assets, stochastic_config, stochastic_run):
    """Kill both ranks right after the iteration-2 checkpoint, ``--resume``: the final
    weights, buffers and optimizer state equal the uninterrupted run's bit for bit."""
    root = dist_assets['root']
    cfg = write_config(
        root / 'sto_interrupt.py',
        dist_assets['clip'],
        dist_assets['data'],
        kind='stochastic',
        batch_size=2,
        extra_hooks=["dict(type='InterruptHook', at_iter=2)"])
    work_dir = root / 'wd_sto_resumed'
    killed = dist_train(cfg, WORLD, work_dir, check=False)
    assert killed.returncode != 0, 'the interrupted run should have died'
    assert (work_dir / 'iter_2.pth').exists() and not (work_dir / 'iter_4.pth').exists()
    assert not list(work_dir.glob('final_state_rank*.pth'))

    resumed = dist_train(stochastic_config, WORLD, work_dir, '--resume')
    assert 'Advance dataloader 2 steps' in resumed.stdout
    states = load_states(work_dir, WORLD)
    # Rank 0 (what checkpoints hold): parameters and buffers bit-identical.
    assert_states_equal(states[0], stochastic_run['states'][0])
    # Other ranks: parameters bit-identical. On CPU, BN running statistics are per rank
    # and not checkpointed (DDP broadcast_buffers=False, as mmseg); a resumed rank > 0
    # restarts them from rank 0's. They never enter training (BN normalises with batch
    # statistics there). With SyncBN on GPUs they are the same on every rank.
    per_rank_stats = ('running_mean', 'running_var')
    for rank in range(1, WORLD):
        assert_states_equal(
            states[rank], stochastic_run['states'][rank], skip_buffers=per_rank_stats)
    full = torch.load(
        stochastic_run['work_dir'] / 'iter_4.pth', map_location='cpu', weights_only=False)
    again = torch.load(work_dir / 'iter_4.pth', map_location='cpu', weights_only=False)
    assert full['state_dict'].keys() == again['state_dict'].keys()
    for k in full['state_dict']:
        assert torch.equal(full['state_dict'][k], again['state_dict'][k]), k
    for pid, st in full['optimizer']['state'].items():
        for name, value in st.items():
            assert torch.equal(value, again['optimizer']['state'][pid][name]), (pid, name)


# ----------------------------------------------------------------------------- testing
def _miou(log: str) -> str:
    found = re.findall(r'mIoU: (\d+\.\d+)', log)
    assert found, log[-3000:]
    return found[-1]


def test_dist_test_matches_single_process(dist_assets, stochastic_config, stochastic_run, tmp_path):
    """dist_test.sh with 2 processes: same mIoU and same predictions as 1 process."""
    ckpt = str(stochastic_run['work_dir'] / 'iter_4.pth')
    one = run_tool([
        'tools/test.py', stochastic_config, ckpt, '--work-dir',
        str(tmp_path / 'wd1'), '--out',
        str(tmp_path / 'pred1')
    ])
    two = run_script([
        'tools/dist_test.sh', stochastic_config, ckpt,
        str(WORLD), '--work-dir',
        str(tmp_path / 'wd2'), '--out',
        str(tmp_path / 'pred2')
    ],
                     env=dict(PORT=str(free_port())))
    assert 'Distributed launcher: pytorch' in two.stdout
    assert _miou(one.stdout + one.stderr) == _miou(two.stdout)
    preds1 = sorted(p.name for p in (tmp_path / 'pred1').glob('*.png'))
    preds2 = sorted(p.name for p in (tmp_path / 'pred2').glob('*.png'))
    assert len(preds1) == 4 and preds1 == preds2
    for name in preds1:
        assert (tmp_path / 'pred1' / name).read_bytes() == (tmp_path / 'pred2' /
                                                            name).read_bytes(), name


def test_dist_test_training_free_model(dist_assets, tmp_path):
    """A model without trainable parameters (MaskCLIP), which DDP refuses, tests with
    dist_test.sh too: same mIoU and predictions as 1 process."""
    clip, data = dist_assets['clip'], dist_assets['data']
    cfg = tmp_path / 'maskclip.py'
    base = str(
        Path(__file__).resolve().parents[2] / 'configs' / 'maskclip' / 'maskclip_vit-b16_voc.py')
    cfg.write_text(f"""_base_ = [{base!r}]
model = dict(backbone=dict(model_name='ViT-Tiny-16-test', pretrained={clip!r}),
             decode_head=dict(in_channels=64, templates='single',
                              text_encoder=dict(model_name='ViT-Tiny-16-test',
                                                pretrained={clip!r})))
test_dataloader = dict(num_workers=0, persistent_workers=False,
                       dataset=dict(data_root={data!r}))
""")
    one = run_tool([
        'tools/test.py',
        str(cfg), '--work-dir',
        str(tmp_path / 'wd1'), '--out',
        str(tmp_path / 'pred1')
    ])
    two = run_script([
        'tools/dist_test.sh',
        str(cfg), 'none',
        str(WORLD), '--work-dir',
        str(tmp_path / 'wd2'), '--out',
        str(tmp_path / 'pred2')
    ],
                     env=dict(PORT=str(free_port())))
    assert _miou(one.stdout + one.stderr) == _miou(two.stdout)
    names = sorted(p.name for p in (tmp_path / 'pred1').glob('*.png'))
    assert len(names) == 4
    assert all((tmp_path / 'pred1' / n).read_bytes() == (tmp_path / 'pred2' / n).read_bytes()
               for n in names)
