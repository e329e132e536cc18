"""KeyedCache: key digest, atomic save, weights_only load, reject-and-recompute."""
import hashlib
import logging
import os

import pytest
import torch
from mmengine.logging import MMLogger

from mmseg_reclip.models.utils.cache import KeyedCache, digest
from tests.test_security.test_untrusted_files import write_payload


def test_digest_matches_an_independent_sha256():
    t = torch.arange(6, dtype=torch.int64).reshape(2, 3)
    h = hashlib.sha256()
    h.update(repr([('a', 1), ('b', None)]).encode())
    h.update(b'/x.jpg\x0012\x0034\n')
    h.update(b'q:torch.int64:(2, 3)' + t.numpy().tobytes())
    assert digest(dict(b=None, a=1), [('/x.jpg', 12, 34)], [('q', t)]) == h.hexdigest()
    assert digest(dict(a=1)) != digest(dict(a=2))
    assert digest(dict(a=1), tensors=[('q', t)]) != digest(dict(a=1), tensors=[('q', t + 1)])


def test_save_is_atomic_and_load_round_trips(tmp_path):
    cache = KeyedCache(str(tmp_path / 'sub'), 'p_', 'ab' * 32)
    assert os.path.basename(cache.path) == 'p_' + 'ab' * 8 + '.pth'
    assert cache.load() is None  # missing
    cache.save(dict(value=[1, 2]))
    assert cache.load() == dict(value=[1, 2], key='ab' * 32)

    class Boom:  # torch.save fails on it: no temp file may stay behind

        def __reduce__(self):
            raise RuntimeError('boom')

    with pytest.raises(RuntimeError, match='boom'):
        cache.save(dict(value=Boom()))
    assert os.listdir(tmp_path / 'sub') == [os.path.basename(cache.path)]
    assert cache.load()['value'] == [1, 2]


class _ListHandler(logging.Handler):
    """Collects the messages of mmengine's current logger, whatever stream its own
    handlers hold (they may point at a stdout that an earlier test captured)."""

    def __init__(self):
        super().__init__()
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def test_unusable_files_are_rejected_with_a_reason(tmp_path):
    logger = MMLogger.get_current_instance()
    handler = _ListHandler()
    logger.addHandler(handler)
    try:
        _check_rejections(tmp_path, handler)
    finally:
        logger.removeHandler(handler)


def _check_rejections(tmp_path, handler):
    key = 'cd' * 32
    cache = KeyedCache(str(tmp_path), 'p_', key, what='Test cache')
    with open(cache.path, 'wb') as f:
        f.write(b'truncated garbage')
    assert cache.load() is None
    torch.save(dict(key='other', value=1), cache.path)
    assert cache.load() is None
    torch.save(dict(value=1), cache.path)  # no stored key
    assert cache.load() is None
    cache.save(dict(value=-1))
    assert cache.load(lambda d: 'negative' if d['value'] < 0 else None) is None
    assert cache.load(lambda d: None)['value'] == -1
    marker = tmp_path / 'MARKER'
    write_payload(cache.path, marker, key=key, value=1)
    assert cache.load() is None and not marker.exists()  # weights_only: never ran
    out = '\n'.join(handler.messages)
    for why in ('is unreadable', 'key mismatch', 'invalid content (negative)'):
        assert f'Test cache {cache.path}' in out and why in out, why
