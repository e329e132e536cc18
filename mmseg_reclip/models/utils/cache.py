"""A file cache keyed by a SHA-256 digest of everything that produced its content.

Caches of frozen-CLIP results (the crop-vote hypotheses, the text queries) live next to
the run and are reused when the key matches. A cache is untrusted input: it is loaded
with ``weights_only=True``, checked by the owner's validation callback, and anything
wrong (unreadable, other key, invalid content) means "recompute and replace", never a
crash and never silently wrong data. Writes are atomic.
"""
import hashlib
import logging
import os.path as osp
from typing import Callable, Iterable, Mapping, Optional, Tuple

import torch
from mmengine.logging import print_log

from .io import atomic_torch_save

__all__ = ['KeyedCache', 'digest']


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
            msg = str(e).splitlines()[0] if str(e) else ''
            return self._reject(f'is unreadable ({type(e).__name__}: {msg})')
        if data.get('key') != self.key:
            return self._reject('was written with other settings or data (key mismatch)')
        problem = validate(data) if validate is not None else None
        if problem is not None:
            return self._reject(f'has the right key but invalid content ({problem})')
        return data

    def save(self, payload: dict) -> None:
        """Write ``payload`` plus ``'key'`` atomically (temp file + ``os.replace``)."""
        atomic_torch_save(dict(payload, key=self.key), self.path)

    def _reject(self, why: str) -> None:
        print_log(
            f'{self.what} {self.path} {why}; recomputing and replacing it.',
            logger='current',
            level=logging.WARNING)
        return None
