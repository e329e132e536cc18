"""Atomic file writes: a crash mid-write never leaves a truncated cache or checkpoint.

Every file the project writes for later reuse (checkpoints, caches, converted
checkpoints, pseudo labels, their metadata) goes through :func:`atomic_write`.
"""
import os
import os.path as osp
import re
import tempfile
from typing import Any, BinaryIO, Callable

import torch

__all__ = ['TMP_PREFIX', 'atomic_write', 'atomic_torch_save', 'load_error_reason']

#: Prefix of the temporary files of atomic writes. A process killed mid-write leaves
#: one behind; :func:`mmseg_reclip.engine.runner.work_dir.remove_stale_tmp_files`
#: deletes them when a training run starts.
TMP_PREFIX = '.tmp_'


def atomic_write(path: str, writer: Callable[[BinaryIO], Any]) -> None:
    """Write ``path`` atomically: ``writer(f)`` fills a temporary file in the same
    folder (binary mode), which is flushed, synced and moved over ``path`` with
    ``os.replace``. On any error the temporary file is removed and ``path`` is left as
    it was.

    The temporary file keeps ``path``'s extension (e.g. PIL infers nothing from it, but
    humans listing a folder mid-write do) and is made world-readable (``0o644``), like
    a file created by ``open``.

    Args:
        path (str): destination; its folder is created if needed.
        writer (callable): ``writer(f)`` with ``f`` an open binary file.
    """
    folder = osp.dirname(osp.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX, suffix=osp.splitext(path)[1], dir=folder)
    try:
        with os.fdopen(fd, 'wb') as f:
            writer(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp creates 0o600
        os.replace(tmp, path)
    except BaseException:
        if osp.exists(tmp):
            os.remove(tmp)
        raise


def atomic_torch_save(obj: Any, path: str) -> None:
    """``torch.save(obj)`` to ``path`` through :func:`atomic_write`."""
    atomic_write(path, lambda f: torch.save(obj, f))


_ANSI = re.compile(r'\x1b\[[0-9;]*m')
# torch's advice on a refused file (reload with full unpickling, allow-list globals):
# never ours to give, the files are untrusted
_ADVICE = ('weights_only', 'can still be loaded', 'trust the source', 'add_safe_globals',
           'safe_globals', 'documentation', 'Please use', 'Check the')


def load_error_reason(err: BaseException) -> str:
    """What went wrong in a ``torch.load(weights_only=True)`` error, in one line, without
    torch's advice to turn the safe loading off (our messages give their own fix).

    Args:
        err (BaseException): the exception ``torch.load`` raised.

    Returns:
        str: e.g. ``'Unsupported global: GLOBAL io.open was not an allowed global by
        default'``, or the exception's type name.
    """
    lines = [_ANSI.sub('', ln).strip() for ln in str(err).splitlines()]
    lines = [ln for ln in lines if ln]
    for ln in lines:  # the refused global, when there is one
        if 'GLOBAL' in ln or 'not allowed' in ln or 'Unsupported' in ln:
            return re.split(r'\. (?:Please use|Check the)', ln)[0]
    for ln in lines:
        if not any(a.lower() in ln.lower() for a in _ADVICE):
            return re.split(r'\. ', ln)[0]
    return type(err).__name__
