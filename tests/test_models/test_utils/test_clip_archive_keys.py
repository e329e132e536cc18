"""CLIP weight files as taken from OpenAI's TorchScript archive: fp16 tensors and three
non-weight entries (``input_resolution``, ``context_length``, ``vocab_size``)."""
import pytest
import torch

from mmseg_reclip.models.utils import create_clip
from tests.clip_utils import TINY, save_random_clip

ARCHIVE = {'input_resolution': 224, 'context_length': 77, 'vocab_size': 49408}


@pytest.fixture(scope='module')
def state(tmp_path_factory):
    path = save_random_clip(str(tmp_path_factory.mktemp('clip') / 'tiny.pt'))
    return torch.load(path, weights_only=True)


def test_archive_keys_dropped_and_fp16_loaded(state, tmp_path):
    half = {k: v.half() for k, v in state.items()}
    path = tmp_path / 'archive.pt'
    torch.save({**half, **{k: torch.tensor(v) for k, v in ARCHIVE.items()}}, path)
    model = create_clip(TINY, str(path))
    own = model.state_dict()
    assert not set(ARCHIVE) & set(own)
    for key, value in half.items():
        assert own[key].dtype == torch.float32, key
        assert torch.equal(own[key], value.float()), key
    # the same weights, saved in float32, give the same model
    ref = create_clip(TINY, save_plain(tmp_path / 'fp32.pt', half))
    img = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        assert torch.equal(model.encode_image(img), ref.encode_image(img))


def save_plain(path, tensors):
    torch.save({k: v.float() for k, v in tensors.items()}, path)
    return str(path)


def test_other_unexpected_or_missing_keys_refused(state, tmp_path):
    extra = tmp_path / 'extra.pt'
    torch.save({
        **state, 'input_resolution': torch.tensor(224),
        'my_head.weight': torch.zeros(3)
    }, extra)
    with pytest.raises(RuntimeError, match=r"extra\.pt.*my_head\.weight"):
        create_clip(TINY, str(extra))
    missing = tmp_path / 'missing.pt'
    torch.save({k: v for k, v in state.items() if k != 'ln_final.weight'}, missing)
    with pytest.raises(RuntimeError, match=r"missing\.pt.*ln_final\.weight"):
        create_clip(TINY, str(missing))
