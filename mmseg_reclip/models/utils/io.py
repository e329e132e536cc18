"""Atomic file writes: a crash mid-write never leaves a truncated cache or checkpoint."""
import os
import os.path as osp
import tempfile
from typing import Any

import torch

#: Prefix of the temporary files of atomic writes. A process killed mid-write leaves
#: one behind; :func:`mmseg_reclip.engine.runner.work_dir.remove_stale_tmp_files`
#: deletes them when a training run starts.
TMP_PREFIX = '.tmp_'


def atomic_torch_save(obj: Any, path: str) -> None:
    """``torch.save`` to a temporary file in the same folder, then ``os.replace``."""
    folder = osp.dirname(osp.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX, suffix='.pth', dir=folder)
    try:
        with os.fdopen(fd, 'wb') as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if osp.exists(tmp):
            os.remove(tmp)
        raise
