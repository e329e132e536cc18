"""KeyedCache: key digest, atomic save, weights_only load, reject-and-recompute."""
import hashlib
import logging
import os

import pytest
import torch
from mmengine.logging import MMLogger

from mmseg_reclip.utils.cache import KeyedCache, content_digest, digest
from tests.security_utils import write_payload


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
    stored = torch.load(cache.path, weights_only=True)
    assert stored['content_sha256'] == content_digest(dict(value=[1, 2], key='ab' * 32))

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
    torch.save(dict(key=key, value=1), cache.path)  # the right key, no content digest
    assert cache.load() is None
    cache.save(dict(value=torch.arange(4.)))
    data = torch.load(cache.path, weights_only=True)
    data['value'] = data['value'][[0, 2, 1, 3]]  # edited without rewriting the digest
    torch.save(data, cache.path)
    assert cache.load() is None
    cache.save(dict(value=-1))
    assert cache.load(lambda d: 'negative' if d['value'] < 0 else None) is None
    assert cache.load(lambda d: None)['value'] == -1
    marker = tmp_path / 'MARKER'
    write_payload(cache.path, marker, key=key, value=1)
    assert cache.load() is None and not marker.exists()  # weights_only: never ran
    out = '\n'.join(handler.messages)
    for why in ('is unreadable', 'key mismatch', 'invalid content (negative)',
                'has no content digest', 'does not match its content digest'):
        assert f'Test cache {cache.path}' in out and why in out, why


def test_content_digest_sees_every_value_and_its_order():
    """Equal content, equal digest; any change of a value, of the order of a list or
    a tensor's rows, of a dtype or of a key changes it."""
    base = dict(key='k', names=['a', 'b'], q=torch.arange(6.).view(3, 2), n=3)
    same = dict(n=3, q=torch.arange(6.).view(3, 2), names=['a', 'b'], key='k')
    assert content_digest(base) == content_digest(same)  # dict order is not content
    variants = [
        dict(base, names=['b', 'a']),
        dict(base, q=base['q'][[1, 0, 2]]),
        dict(base, q=base['q'].double()),
        dict(base, q=base['q'].view(2, 3)),
        dict(base, n='3'),
        dict(base, key='other'),
        dict(base, extra=None),
    ]
    digests = {content_digest(v) for v in variants}
    assert len(digests) == len(variants) and content_digest(base) not in digests
    assert content_digest(dict(base, content_sha256='x')) == content_digest(base)
