"""Fixtures shared by the distributed tests (the launch scripts, torchrun and Slurm)."""
from pathlib import Path

import pytest

from tests.clip_utils import save_random_clip
from tests.data_utils import make_voc_layout
from tests.test_dist.dist_utils import dist_train, load_states, write_config
from tests.tool_utils import run_tool


@pytest.fixture(scope='session')
def dist_assets(tmp_path_factory):
    """Tiny random CLIP and a 4-image VOC layout (2 images per rank with 2 ranks)."""
    root = tmp_path_factory.mktemp('dist_assets')
    clip = save_random_clip(str(root / 'tiny_clip.pt'))
    data = make_voc_layout(str(root / 'voc'), n_generated=3)
    return dict(root=root, clip=clip, data=data)


@pytest.fixture(scope='session')
def deterministic_config(dist_assets):
    """Config without per-rank randomness or batch statistics, 2 images per rank."""
    root = dist_assets['root']
    return write_config(
        root / 'det_2x2.py',
        dist_assets['clip'],
        dist_assets['data'],
        kind='deterministic',
        batch_size=2)


@pytest.fixture(scope='session')
def single_process_run(dist_assets):
    """The deterministic config trained by one plain process (``tools/train.py``, no
    launcher) with the global batch of the 2-rank runs (4)."""
    root = dist_assets['root']
    cfg = write_config(
        root / 'det_1x4.py',
        dist_assets['clip'],
        dist_assets['data'],
        kind='deterministic',
        batch_size=4)
    work_dir = root / 'wd_det_1proc'
    proc = run_tool(['tools/train.py', cfg, '--work-dir', str(work_dir)])
    return dict(
        work_dir=Path(work_dir), log=proc.stdout + proc.stderr, state=load_states(work_dir, 1)[0])


@pytest.fixture(scope='session')
def deterministic_run(dist_assets, deterministic_config):
    """The single-node 2-process reference run: ``dist_train.sh`` with 2 ranks x batch
    2 of the deterministic config."""
    work_dir = dist_assets['root'] / 'wd_det_2proc'
    proc = dist_train(deterministic_config, 2, work_dir)
    return dict(
        work_dir=work_dir,
        log=proc.stdout,
        states=load_states(work_dir, 2),
        initial=load_states(work_dir, 2, 'initial'))
