"""A file cache keyed by a SHA-256 digest of everything that produced its content.

Caches of frozen-CLIP results (the crop-vote hypotheses, the text queries) live next to
the run and are reused when the key matches. A cache is untrusted input: it is loaded
with ``weights_only=True``, its content must match the SHA-256 stored with it
(:func:`content_digest` of the key and every stored value: a flipped bit, a truncated
tensor, two swapped rows edited in place all fail), then the owner's validation callback
checks what it means; anything wrong (unreadable, other key, other digest, invalid
content) means "recompute and replace", never a crash and never silently wrong data.
Writes are atomic.

The digest detects corruption and edits made without rewriting it; it is not a
signature: whoever can write the cache folder can write a consistent file (see
``docs/trust.md``).
"""
import hashlib
import logging
import os.path as osp
from typing import Callable, Iterable, Mapping, Optional, Tuple

import torch
from mmengine.logging import print_log

from .io import atomic_torch_save, load_error_reason

__all__ = ['KeyedCache', 'digest', 'content_digest']

#: the stored :func:`content_digest` of a cache file
DIGEST_FIELD = 'content_sha256'


def digest(
    settings: Mapping,
    files: Iterable[Tuple[str, int, int]] = (),
    tensors: Iterable[Tuple[str, torch.Tensor]] = ()
) -> str:
    """SHA-256 hex digest of settings, file signatures and tensors.

    Args:
        settings (Mapping): plain values (hashed as ``repr`` of the sorted items).
        files (Iterable[tuple]): ``(path, size, mtime_ns)`` per file, in a fixed order.
        tensors (Iterable[tuple]): ``(name, tensor)``; dtype, shape and bytes are hashed.

    Returns:
        str: 64 hex digits.
    """
    h = hashlib.sha256()
    h.update(repr(sorted(settings.items())).encode())
    for path, size, mtime in files:
        h.update(f'{path}\0{size}\0{mtime}\n'.encode())
    for name, tensor in tensors:
        t = tensor.detach().cpu().contiguous()
        h.update(f'{name}:{t.dtype}:{tuple(t.shape)}'.encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()


def _hash_value(h, value) -> None:
    """Feed ``value`` to ``h`` in a canonical form: type tags, dict items sorted by key,
    tensors by dtype, shape and bytes (so equal content gives equal digests)."""
    if torch.is_tensor(value):
        t = value.detach().cpu().contiguous()
        h.update(f'T{t.dtype}{tuple(t.shape)}:'.encode())
        h.update(t.numpy().tobytes() if t.dtype !=
                 torch.bfloat16 else t.view(torch.int16).numpy().tobytes())
    elif isinstance(value, dict):
        items = sorted(value.items(), key=lambda kv: repr(kv[0]))
        h.update(f'D{len(items)}:'.encode())
        for k, v in items:
            _hash_value(h, k)
            _hash_value(h, v)
    elif isinstance(value, (list, tuple)):
        h.update(f'{type(value).__name__[0]}{len(value)}:'.encode())
        for v in value:
            _hash_value(h, v)
    else:  # str, int, float, bool, None
        text = repr(value)
        h.update(f'S{type(value).__name__}{len(text)}:{text}'.encode())


def content_digest(data: Mapping) -> str:
    """SHA-256 hex digest of a cache dict's content (every item but the digest itself).

    Args:
        data (Mapping): the dict as saved (with its ``'key'``).

    Returns:
        str: 64 hex digits.
    """
    h = hashlib.sha256()
    _hash_value(h, {k: v for k, v in data.items() if k != DIGEST_FIELD})
    return h.hexdigest()


class KeyedCache:
    """``<folder>/<prefix><key[:digits]>.pth`` holding a dict, reused when valid.

    Args:
        folder (str): where the file lives (created on save).
        prefix (str): file name prefix (what the cache holds).
        key (str): the full key (e.g. :func:`digest`); its first ``digits`` characters
            name the file, the whole key is stored in it and compared on load.
        digits (int): key characters in the file name. Default 16.
        what (str): name in log messages. Default ``'Cache'``.
    """

    def __init__(self,
                 folder: str,
                 prefix: str,
                 key: str,
                 digits: int = 16,
                 what: str = 'Cache') -> None:
        self.key = key
        self.path = osp.join(osp.expanduser(folder), f'{prefix}{key[:digits]}.pth')
        self.what = what

    def load(self, validate: Optional[Callable[[dict], Optional[str]]] = None) -> Optional[dict]:
        """The stored dict, or ``None`` (recompute) when missing or unusable.

        Args:
            validate (callable, optional): ``validate(data) -> None | str``: why the
                content cannot be used (``None``: usable).

        Returns:
            dict | None: the stored dict (with its ``'key'``) or ``None``.
        """
        if not osp.isfile(self.path):
            return None
        try:
            # plain containers and tensors only: a crafted file cannot run code
            data = torch.load(self.path, map_location='cpu', weights_only=True)
            if not isinstance(data, dict):
                raise ValueError('not a dict')
        except Exception as e:  # corrupt / truncated / foreign / unsafe file
            return self._reject(f'is unreadable ({type(e).__name__}: {load_error_reason(e)})')
        if data.get('key') != self.key:
            return self._reject('was written with other settings or data (key mismatch)')
        stored = data.pop(DIGEST_FIELD, None)
        if stored is None:
            return self._reject('has no content digest (written by an older version)')
        if stored != content_digest(data):
            return self._reject('does not match its content digest (corrupted or edited)')
        problem = validate(data) if validate is not None else None
        if problem is not None:
            return self._reject(f'has the right key but invalid content ({problem})')
        return data

    def save(self, payload: dict) -> None:
        """Write ``payload`` plus ``'key'`` and the :func:`content_digest` atomically
        (temp file + ``os.replace``)."""
        data = dict(payload, key=self.key)
        data[DIGEST_FIELD] = content_digest(data)
        atomic_torch_save(data, self.path)

    def _reject(self, why: str) -> None:
        print_log(
            f'{self.what} {self.path} {why}; recomputing and replacing it.',
            logger='current',
            level=logging.WARNING)
        return None
