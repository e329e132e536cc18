"""Fixtures shared by the crop-vote tests."""
import pytest

from tests.crop_vote_utils import build_runner
from tests.data_utils import make_voc_layout


@pytest.fixture
def trained(tmp_path, clip_file):
    """A real Runner after 2 iterations (its dataloader and model stay usable)."""
    data_root = make_voc_layout(str(tmp_path / 'voc'), n_generated=2)
    runner = build_runner(
        tmp_path / 'work', data_root, clip_file, hook=dict(window=0.5, batch_size=256))
    runner.train()
    return runner, data_root
