"""The one atomic-write helper: complete files or none, never a truncated one."""
import json
import os
import stat

import pytest
import torch

from mmseg_reclip.utils.io import TMP_PREFIX, atomic_torch_save, atomic_write


def test_atomic_write_replaces_the_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / 'sub' / 'meta.json'  # the folder is created
    atomic_write(str(path), lambda f: f.write(json.dumps({'a': 1}).encode()))
    assert json.loads(path.read_text()) == {'a': 1}
    atomic_write(str(path), lambda f: f.write(b'{"a": 2}'))
    assert json.loads(path.read_text()) == {'a': 2}
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o644  # not mkstemp's 0o600
    assert os.listdir(path.parent) == ['meta.json']


def test_a_failing_writer_keeps_the_old_file(tmp_path):
    path = tmp_path / 'labels.png'
    path.write_bytes(b'old')

    def half_then_fail(f):
        f.write(b'new but trunc')
        raise RuntimeError('killed mid-write')

    with pytest.raises(RuntimeError, match='killed mid-write'):
        atomic_write(str(path), half_then_fail)
    assert path.read_bytes() == b'old'
    assert not [n for n in os.listdir(tmp_path) if n.startswith(TMP_PREFIX)]


def test_atomic_torch_save_round_trip(tmp_path):
    path = str(tmp_path / 'ckpt.pth')
    atomic_torch_save(dict(w=torch.arange(3.0)), path)
    assert torch.equal(torch.load(path, weights_only=True)['w'], torch.arange(3.0))
