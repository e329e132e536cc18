"""Compatibility glue between the pinned OpenMMLab stack and current PyTorch.

Imported first by :mod:`mmseg_reclip`, so every entry point (our tools, mmseg's own
``tools/train.py`` through ``custom_imports``, ``mmseg.apis.init_model``) gets it.

Three fixes, each a no-op where it is not needed:

1. ``mmcv.ops`` for mmcv-lite. mmseg 1.2.2 imports ``mmcv.ops`` unconditionally in a few
   modules (``point_sample``, ``sigmoid_focal_loss``). mmcv-lite ships the Python files
   but not the compiled ``mmcv._ext``, so ``import mmseg.models`` fails. When (and only
   when) the compiled ops are missing we install a minimal ``mmcv.ops`` module holding the
   pure-PyTorch ``point_sample``; every other name resolves to a placeholder that raises
   :class:`ModuleNotFoundError` with install instructions when it is used. With the full
   mmcv (GPU clusters) the real module imports and nothing is touched.

2. Checkpoints load without executing code. Since torch 2.6 ``torch.load`` defaults to
   ``weights_only=True``, which refuses mmengine 0.10.7 checkpoints: their message hub
   holds ``HistoryBuffer`` objects (whose pickle calls ``getattr``) and numpy scalars.
   We re-register mmengine's loader for local paths (the ``''`` scheme) with
   :func:`safe_torch_load`: ``weights_only=True`` plus, only for the duration of that
   one load, an explicit allow-list (:func:`checkpoint_safe_globals`) of the few data
   classes those checkpoints need, with ``getattr`` replaced by a stand-in that only
   returns ``HistoryBuffer``'s own statistics methods. Anything else (a crafted pickle
   that would run code) is refused with an error naming the file. There is no switch
   to full unpickling: a file with other objects must be re-saved as plain tensors by
   whoever trusts it. See docs/trust.md.

3. The checkpoint ``'none'`` (:func:`load_no_checkpoint`): mmseg's own ``tools/test.py``
   needs a checkpoint argument; ``none`` tests a training-free model as it is built.
"""
import importlib
import os.path as osp
import pickle
import sys
import types
import zipfile
from typing import Any, List, Optional

import torch

# The same stand-in as the start-up hook installed with the package (one definition).
from _mmseg_reclip_hook import fill_shim, point_sample  # noqa: F401  (re-exported)


def _compiled_mmcv_ops_available() -> bool:
    try:
        importlib.import_module('mmcv._ext')
        return True
    except ImportError:
        return False


def install_mmcv_ops_shim() -> bool:
    """Provide a minimal ``mmcv.ops`` when the compiled ops are missing.

    Returns:
        bool: True if the shim was installed, False if the real ops are used.
    """
    if 'mmcv.ops' in sys.modules and not getattr(sys.modules['mmcv.ops'], '__reclip_shim__', False):
        return False
    if _compiled_mmcv_ops_available():
        return False
    import mmcv
    shim = types.ModuleType('mmcv.ops')
    fill_shim(shim)
    sys.modules['mmcv.ops'] = shim
    mmcv.ops = shim
    return True


#: ``HistoryBuffer`` statistics that mmengine pickles as ``getattr(HistoryBuffer, name)``.
_HISTORY_BUFFER_STATS = ('min', 'max', 'current', 'mean')


class UnsafeCheckpointError(pickle.UnpicklingError):
    """A checkpoint holds objects outside the allow-list (it could run code)."""


class CorruptCheckpointError(RuntimeError):
    """A checkpoint file is truncated or not a torch file."""


def _history_buffer_getattr(obj: Any, name: str) -> Any:
    """Stand-in for ``builtins.getattr`` while unpickling: only ``HistoryBuffer``'s own
    statistics methods, which mmengine's ``HistoryBuffer.__getstate__`` pickles."""
    from mmengine.logging import HistoryBuffer
    if obj is HistoryBuffer and name in _HISTORY_BUFFER_STATS:
        return getattr(HistoryBuffer, name)
    raise pickle.UnpicklingError(f'getattr({obj!r}, {name!r}) is not allowed')


def checkpoint_safe_globals() -> List[Any]:
    """The allow-list for ``torch.serialization.safe_globals`` when loading checkpoints.

    Beyond torch's own (tensors, storages, ``OrderedDict``), an mmengine 0.10.7
    checkpoint needs: numpy arrays/scalars of numeric dtypes (message-hub ``eta``,
    history arrays), mmengine's ``HistoryBuffer`` (message-hub scalars; its
    ``__setstate__`` only stores data and the statistics methods), and ``getattr``
    restricted to ``HistoryBuffer``'s statistics methods. Nothing here imports a module,
    calls a system function or builds an arbitrary object.
    """
    import numpy as np
    from mmengine.logging import HistoryBuffer
    reconstruct = np.zeros(1).__reduce__()[0]  # numpy.(_)core.multiarray._reconstruct
    scalar = np.float64(0).__reduce__()[0]  # numpy.(_)core.multiarray.scalar
    numeric = (np.bool_, np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32,
               np.uint64, np.float16, np.float32, np.float64, np.complex64, np.complex128)
    allowed: List[Any] = [np.ndarray, np.dtype, HistoryBuffer]
    allowed += sorted({type(np.dtype(t)) for t in numeric}, key=lambda c: c.__name__)
    # numpy 1 pickles these as numpy.core.multiarray.*, numpy 2 as numpy._core.*
    for module in ('numpy.core.multiarray', 'numpy._core.multiarray'):
        allowed += [(reconstruct, f'{module}._reconstruct'), (scalar, f'{module}.scalar')]
    allowed.append((_history_buffer_getattr, 'builtins.getattr'))
    return allowed


def safe_torch_load(filename: str, map_location: Optional[Any] = None) -> Any:
    """``torch.load`` with ``weights_only=True`` and :func:`checkpoint_safe_globals`,
    scoped to this one call.

    Args:
        filename (str): local file.
        map_location: as in :func:`torch.load`.

    Raises:
        UnsafeCheckpointError: the file needs globals outside the allow-list.
        CorruptCheckpointError: the file is truncated or not a torch file.
    """
    # local import: this module is loaded before the model package
    from mmseg_reclip.utils.io import load_error_reason
    try:
        with torch.serialization.safe_globals(checkpoint_safe_globals()):
            return torch.load(filename, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        raise UnsafeCheckpointError(
            f'{filename}: refused to unpickle ({load_error_reason(err)}): the file holds '
            'objects that could run code when loaded. If you wrote it yourself and trust '
            "it, re-save its weights as plain tensors (torch.save(ckpt['state_dict'], "
            "PATH)) and load that (see docs/trust.md).") from None
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile) as err:
        if isinstance(err, (FileNotFoundError, PermissionError, IsADirectoryError)):
            raise
        msg = str(err).strip()
        if isinstance(err, RuntimeError) and not any(
                s in msg for s in ('zip archive', 'central directory', 'PytorchStreamReader',
                                   'invalid load key', 'EOF')):
            raise
        reason = load_error_reason(err)
        raise CorruptCheckpointError(
            f'{filename} is truncated or not a torch checkpoint ({reason}); delete it and '
            'use an intact copy (or an earlier checkpoint).') from None


def _load_local_checkpoint(filename: str, map_location: Optional[Any] = None) -> Any:
    """mmengine's local loader through :func:`safe_torch_load`."""
    filename = osp.expanduser(filename)
    if not osp.isfile(filename):
        raise FileNotFoundError(f'{filename} can not be found.')
    return safe_torch_load(filename, map_location=map_location)


def install_checkpoint_loader() -> None:
    """Re-register mmengine's local checkpoint scheme with :func:`safe_torch_load`."""
    from mmengine.runner.checkpoint import CheckpointLoader
    CheckpointLoader.register_scheme(prefixes='', loader=_load_local_checkpoint, force=True)


def load_no_checkpoint(filename: str, map_location: Optional[Any] = None) -> dict:
    """The checkpoint ``'none'``: the model as the config builds it (training-free).

    A segmentor of this plugin loads it as its own state (no missing keys) and fills in
    ``meta['dataset_meta']`` with its classes (:mod:`mmseg_reclip.models.utils.model_meta`),
    so mmseg's ``tools/test.py CONFIG none``, ``init_model(CONFIG, 'none')`` and
    ``MMSegInferencer(CONFIG, weights='none')`` work without a checkpoint file.
    """
    from mmengine.logging import print_log

    from mmseg_reclip.models.utils.model_meta import NO_CHECKPOINT_KEY, NoCheckpoint
    print_log(
        f'Checkpoint {filename!r}: no weights are loaded, the model is used as the '
        'config builds it (training-free models).',
        logger='current')
    meta: dict = {}
    return {'state_dict': {NO_CHECKPOINT_KEY: NoCheckpoint(meta)}, 'meta': meta}


def install_no_checkpoint_scheme() -> None:
    """Register ``'none'`` / ``'None'`` (exactly) as a checkpoint 'path' (mmseg's
    ``tools/test.py`` requires a checkpoint argument)."""
    from mmengine.runner.checkpoint import CheckpointLoader
    CheckpointLoader.register_scheme(
        prefixes=['none$', 'None$'], loader=load_no_checkpoint, force=True)


def apply() -> None:
    install_mmcv_ops_shim()
    install_checkpoint_loader()
    install_no_checkpoint_scheme()
