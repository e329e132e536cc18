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

2. Checkpoints under ``torch.load(weights_only=True)``. Since torch 2.6 ``torch.load``
   defaults to ``weights_only=True``; mmengine 0.10.7 checkpoints hold message-hub
   history objects and numpy scalars, so ``--resume``, ``load_from`` and
   ``mmseg.apis.init_model`` fail. We re-register mmengine's loader for local paths
   (the ``''`` scheme) with ``weights_only=False``. Only load checkpoints you trust,
   exactly as before torch 2.6.

3. The checkpoint ``'none'`` (:func:`load_no_checkpoint`): mmseg's own ``tools/test.py``
   needs a checkpoint argument; ``none`` tests a training-free model as it is built.
"""
import importlib
import os.path as osp
import sys
import types
from typing import Any, Callable, Optional

import torch
import torch.nn.functional as F

_MMCV_FULL_HINT = ('this operator needs the compiled mmcv ops, which mmcv-lite does not '
                   'ship. Install the full package instead: '
                   '`pip uninstall mmcv-lite && pip install "mmcv==2.1.0"` '
                   '(built against your torch/CUDA).')


def point_sample(input: torch.Tensor,
                 points: torch.Tensor,
                 align_corners: bool = False,
                 **kwargs) -> torch.Tensor:
    """Pure-PyTorch ``mmcv.ops.point_sample``.

    Args:
        input (Tensor): ``[N, C, H, W]`` feature map.
        points (Tensor): ``[N, P, 2]`` or ``[N, Hp, Wp, 2]`` normalised ``[0, 1]`` xy.

    Returns:
        Tensor: ``[N, C, P]`` or ``[N, C, Hp, Wp]`` sampled features.
    """
    add_dim = points.dim() == 3
    if add_dim:
        points = points.unsqueeze(2)
    out = F.grid_sample(input, 2.0 * points - 1.0, align_corners=align_corners, **kwargs)
    return out.squeeze(3) if add_dim else out


def _missing_op(name: str) -> Callable:

    def _raise(*args: Any, **kwargs: Any) -> None:
        raise ModuleNotFoundError(f'mmcv.ops.{name}: {_MMCV_FULL_HINT}')

    _raise.__name__ = name
    return _raise


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
    if 'mmcv.ops' in sys.modules and not getattr(sys.modules['mmcv.ops'],
                                                 '__reclip_shim__', False):
        return False
    if _compiled_mmcv_ops_available():
        return False
    import mmcv
    shim = types.ModuleType('mmcv.ops')
    shim.__reclip_shim__ = True
    shim.__doc__ = 'mmseg-reclip stand-in for mmcv.ops (mmcv-lite has no compiled ops).'
    shim.point_sample = point_sample

    def __getattr__(name: str) -> Any:
        if name.startswith('__'):
            raise AttributeError(name)
        return _missing_op(name)

    shim.__getattr__ = __getattr__
    sys.modules['mmcv.ops'] = shim
    mmcv.ops = shim
    return True


def _load_local_checkpoint(filename: str, map_location: Optional[Any] = None) -> Any:
    """mmengine's local loader, with ``weights_only=False`` (torch >= 2.6)."""
    filename = osp.expanduser(filename)
    if not osp.isfile(filename):
        raise FileNotFoundError(f'{filename} can not be found.')
    return torch.load(filename, map_location=map_location, weights_only=False)


def install_checkpoint_loader() -> None:
    """Re-register mmengine's local checkpoint scheme so trusted checkpoints load."""
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
    print_log(f'Checkpoint {filename!r}: no weights are loaded, the model is used as the '
              'config builds it (training-free models).', logger='current')
    meta: dict = {}
    return {'state_dict': {NO_CHECKPOINT_KEY: NoCheckpoint(meta)}, 'meta': meta}


def install_no_checkpoint_scheme() -> None:
    """Register ``'none'`` / ``'None'`` (exactly) as a checkpoint 'path' (mmseg's
    ``tools/test.py`` requires a checkpoint argument)."""
    from mmengine.runner.checkpoint import CheckpointLoader
    CheckpointLoader.register_scheme(prefixes=['none$', 'None$'], loader=load_no_checkpoint,
                                     force=True)


def apply() -> None:
    install_mmcv_ops_shim()
    install_checkpoint_loader()
    install_no_checkpoint_scheme()
