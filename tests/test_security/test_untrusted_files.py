"""Loading a file never executes code.

A pickle payload that creates a marker file when unpickled is fed to every load path
this plugin owns or patches; the marker must never appear, and no switch (environment
variable or flag) turns full unpickling on. A positive control proves the payload really
runs under full unpickling.
"""
import logging
import os
import pickle

import numpy as np
import pytest
import torch
from mmengine.runner.checkpoint import CheckpointLoader

from mmseg_reclip import compat
from tests.clip_utils import TINY, save_random_clip
from tests.security_utils import Payload, write_payload
from tests.tool_utils import run_tool
from tests.toy_utils import _TOY_CONFIG, IMG_SIZE, NUM_CLASSES, _make_toy_dataset

CONVERTER = 'tools/model_converters/reclip_released_to_mmseg.py'


@pytest.fixture
def evil(tmp_path):
    marker = tmp_path / 'MARKER'
    path = write_payload(tmp_path / 'evil.pth', marker, state_dict={}, meta={})
    return path, marker


@pytest.fixture(scope='module')
def toy(tmp_path_factory):
    base = tmp_path_factory.mktemp('untrusted_toy')
    _make_toy_dataset(base / 'data')
    cfg = base / 'toy_fcn.py'
    cfg.write_text(
        _TOY_CONFIG.format(
            size=IMG_SIZE, num_classes=NUM_CLASSES, data_root=str(base / 'data'), max_iters=1) +
        "runner_type = 'ReCLIPRunner'\n")
    return base, cfg


def test_payload_runs_under_full_unpickling(evil, monkeypatch):
    """Positive control: the payload is real. The former opt-in variable no longer
    turns full unpickling on."""
    path, marker = evil
    torch.load(path, weights_only=False)
    assert marker.exists()
    marker.unlink()
    monkeypatch.setenv('MMSEG_RECLIP_TRUST_PICKLE', '1')
    with pytest.raises(compat.UnsafeCheckpointError):
        CheckpointLoader.load_checkpoint(path, map_location='cpu')
    assert not marker.exists()


def test_mmengine_loader_refuses_and_allow_list_is_scoped(evil):
    """The loader every mmengine load goes through (load_from, --resume, test.py,
    init_model, teacher_checkpoint) refuses, naming the file; the allow-list exists only
    during a load."""
    path, marker = evil
    before = set(map(repr, torch.serialization.get_safe_globals()))
    with pytest.raises(compat.UnsafeCheckpointError, match=f'{path}: refused.*plain tensors'):
        CheckpointLoader.load_checkpoint(path, map_location='cpu')
    assert not marker.exists()
    assert set(map(repr, torch.serialization.get_safe_globals())) == before
    # getattr is replaced by a stand-in that yields only HistoryBuffer's statistics
    from collections import OrderedDict

    from mmengine.logging import HistoryBuffer

    class _GetAttr:

        def __init__(self, obj, name):
            self.args = (obj, name)

        def __reduce__(self):
            return (getattr, self.args)

    ok, bad = os.path.dirname(path) + '/ok.pth', os.path.dirname(path) + '/bad.pth'
    torch.save({'m': _GetAttr(HistoryBuffer, 'mean')}, ok)
    torch.save({'m': _GetAttr(OrderedDict, 'fromkeys')}, bad)
    with torch.serialization.safe_globals(compat.checkpoint_safe_globals()):
        assert torch.load(ok, weights_only=True)['m'] is HistoryBuffer.mean
        with pytest.raises(pickle.UnpicklingError, match='fromkeys'):
            torch.load(bad, weights_only=True)


def test_init_model_and_teacher_checkpoint_refuse(evil, toy, tmp_path):
    from mmseg.apis import init_model

    from tests.distill_utils import build, student_cfg
    path, marker = evil
    with pytest.raises(compat.UnsafeCheckpointError, match='refused'):
        init_model(str(toy[1]), path, device='cpu')
    clip = save_random_clip(str(tmp_path / 'clip.pt'))
    distiller = build(student_cfg(clip, path))
    with pytest.raises(compat.UnsafeCheckpointError, match='refused'):
        distiller.teacher
    assert not marker.exists()


def test_tools_refuse(evil, toy):
    """tools/test.py CKPT, load_from and --resume, through the real tools."""
    path, marker = evil
    base, cfg = toy
    runs = [
        ['tools/test.py', cfg, path, '--work-dir', base / 'wd_test'],
        [
            'tools/train.py', cfg, '--work-dir', base / 'wd_load', '--cfg-options',
            f'load_from={path}'
        ],
    ]
    resume_dir = base / 'wd_resume'
    resume_dir.mkdir()
    (resume_dir / 'last_checkpoint').write_text(path)
    runs.append(['tools/train.py', cfg, '--work-dir', resume_dir, '--resume'])
    for args in runs:
        proc = run_tool(args, cwd=base, check=False)
        out = proc.stdout + proc.stderr
        assert proc.returncode != 0, out[-2000:]
        assert f'{path}: refused to unpickle' in out, out[-2000:]
        assert not marker.exists(), args
    assert not (base / 'wd_load' / 'iter_1.pth').exists()


def test_converter_refuses_pickles(evil, tmp_path):
    path, marker = evil
    dst = tmp_path / 'out.pth'
    proc = run_tool([CONVERTER, path, dst], check=False)
    assert proc.returncode != 0 and not marker.exists() and not dst.exists()
    assert path in proc.stderr and 'refused' in proc.stderr
    assert 'full unpickling' not in proc.stdout
    # truncated input: one line naming the file and what to do
    good = tmp_path / 'good.pth'
    torch.save({'w': torch.zeros(100, 100)}, good)
    cut = tmp_path / 'cut.pth'
    cut.write_bytes(good.read_bytes()[:20000])
    proc = run_tool([CONVERTER, cut, dst], check=False)
    err = proc.stderr.strip().splitlines()
    assert proc.returncode != 0 and len(err) == 1, proc.stderr
    assert str(cut) in err[0] and 'truncated' in err[0] and 'download it again' in err[0]
    # there is no flag that unpickles it
    proc = run_tool([CONVERTER, path, dst, '--trust-pickle'], check=False)
    assert proc.returncode != 0 and not marker.exists() and not dst.exists()


def test_query_cache_payload_is_ignored(evil, tmp_path):
    from mmengine.config import ConfigDict
    from mmseg.registry import MODELS
    path, marker = evil
    clip = save_random_clip(str(tmp_path / 'clip.pt'))
    cfg = dict(
        type='MaskCLIPHead',
        class_names=['cat', 'dog'],
        num_classes=2,
        in_channels=64,
        templates='single',
        query_cache_dir=str(tmp_path / 'qc'),
        text_encoder=dict(type='OpenCLIPTextEncoder', model_name=TINY, pretrained=clip))
    head = MODELS.build(ConfigDict(cfg))
    cache = head._query_cache().path
    os.makedirs(os.path.dirname(cache))
    os.replace(path, cache)
    q = head.queries()
    assert not marker.exists()
    fresh = head.text_encoder.build_queries(head.flat_names, head.templates)
    torch.testing.assert_close(q, fresh)
    assert torch.load(cache, weights_only=True)['names'] == ['cat', 'dog']


def test_pseudo_label_meta_is_json(tmp_path):
    """meta.json is parsed as JSON (cannot carry code): a pickle there is refused."""
    from mmseg_reclip.datasets.transforms.pseudo_label import LoadPseudoLabel
    marker = tmp_path / 'MARKER'
    (tmp_path / 'meta.json').write_bytes(pickle.dumps(Payload(str(marker))))
    t = LoadPseudoLabel(pseudo_label_dir=str(tmp_path))
    with pytest.raises(ValueError, match='meta.json is not valid JSON'):
        t(dict(img_path='x.jpg', img=np.zeros((2, 2, 3), np.uint8)))
    assert not marker.exists()


class _Messages(logging.Handler):
    """Collects mmengine's current-logger messages (whatever stream it writes to)."""

    def __init__(self):
        super().__init__()
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def _no_unsafe_advice(msg: str) -> None:
    """None of our refusals passes on torch's advice to turn the safe loading off."""
    low = msg.lower()
    assert 'weights_only=false' not in low and 'weights_only` set to `false' not in low, msg
    assert 'can still be loaded' not in low and '\x1b[' not in msg, msg


def test_no_refusal_advises_weights_only_false(evil, tmp_path):
    """Every refusal of ours (checkpoint loader, cache, converter) on a pickle payload
    and on a truncated file names the file's problem, never torch's advice."""
    from mmengine.logging import MMLogger

    from mmseg_reclip.utils.cache import KeyedCache
    path, marker = evil
    good = tmp_path / 'good.pth'
    torch.save({'w': torch.zeros(100, 100)}, good)
    cut = tmp_path / 'cut.pth'
    cut.write_bytes(good.read_bytes()[:20000])
    cases = ((path, compat.UnsafeCheckpointError), (str(cut), compat.CorruptCheckpointError))
    for bad, error in cases:
        with pytest.raises(error) as err:
            compat.safe_torch_load(bad)
        _no_unsafe_advice(str(err.value))
        proc = run_tool([CONVERTER, bad, tmp_path / 'out.pth'], check=False)
        assert proc.returncode != 0 and bad in proc.stderr
        _no_unsafe_advice(proc.stderr)

        logger = MMLogger.get_current_instance()
        handler = _Messages()
        logger.addHandler(handler)
        try:
            cache = KeyedCache(str(tmp_path / 'c'), 'p_', 'ab' * 32)
            os.makedirs(os.path.dirname(cache.path), exist_ok=True)
            with open(cache.path, 'wb') as f:
                f.write(open(bad, 'rb').read())
            assert cache.load() is None
        finally:
            logger.removeHandler(handler)
        (msg, ) = [m for m in handler.messages if cache.path in m]
        assert 'is unreadable' in msg
        _no_unsafe_advice(msg)
    assert 'GLOBAL io.open' in str(
        pytest.raises(compat.UnsafeCheckpointError, compat.safe_torch_load, path).value)
    assert not marker.exists()
