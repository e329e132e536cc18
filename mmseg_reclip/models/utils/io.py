"""Atomic file writes: a crash mid-write never leaves a truncated cache or checkpoint.

Every file the project writes for later reuse (checkpoints, caches, converted
checkpoints, pseudo labels, their metadata) goes through :func:`atomic_write`.
"""
import os
import os.path as osp
import tempfile
from typing import Any, BinaryIO, Callable

import torch

__all__ = ['TMP_PREFIX', 'atomic_write', 'atomic_torch_save']

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
