"""Start-up hook of mmseg-reclip: a stand-in ``mmcv.ops`` when mmcv's compiled ops are missing.

Installed with the package as ``mmseg_reclip_hook.pth`` (one line, run by ``site`` at
interpreter start-up), so that mmseg's own entry points (``from mmseg.apis import
init_model`` as a script's first line, ``demo/image_demo.py``, ``tools/*.py``) import
with mmcv-lite whatever the import order. At start-up it only puts a finder on
``sys.meta_path`` (no import of torch or mmcv). The finder acts once, when ``mmcv.ops``
is first imported, and only if ``mmcv._ext`` (the compiled ops) cannot be found: then
``mmcv.ops`` is a module holding a pure-PyTorch ``point_sample``, any other name being a
function that raises ``ModuleNotFoundError`` with install instructions (the same stand-in
as :func:`mmseg_reclip.compat.install_mmcv_ops_shim`). With the full mmcv it does nothing.
"""
import importlib.abc
import importlib.machinery
import importlib.util
import sys

_HINT = ('this operator needs the compiled mmcv ops, which mmcv-lite does not ship. '
         'Install the full package instead: `pip uninstall mmcv-lite && pip install '
         '"mmcv==2.1.0"` (built against your torch/CUDA).')


def point_sample(input, points, align_corners=False, **kwargs):
    """Pure-PyTorch ``mmcv.ops.point_sample`` (``[N, C, H, W]``, ``[N, P, 2]`` in [0, 1])."""
    import torch.nn.functional as F
    add_dim = points.dim() == 3
    if add_dim:
        points = points.unsqueeze(2)
    out = F.grid_sample(input, 2.0 * points - 1.0, align_corners=align_corners, **kwargs)
    return out.squeeze(3) if add_dim else out


def _missing(name):

    def _raise(*args, **kwargs):
        raise ModuleNotFoundError(f'mmcv.ops.{name}: {_HINT}')

    _raise.__name__ = name
    return _raise


def fill_shim(module) -> None:
    """Make ``module`` the stand-in ``mmcv.ops``: ``point_sample``, and any other name a
    function that raises ``ModuleNotFoundError`` with install instructions.

    Shared by the start-up finder below and :func:`mmseg_reclip.compat.install_mmcv_ops_shim`.
    """
    module.__reclip_shim__ = True
    module.__doc__ = 'mmseg-reclip stand-in for mmcv.ops (mmcv-lite has no compiled ops).'
    module.point_sample = point_sample

    def __getattr__(name):
        if name.startswith('__'):
            raise AttributeError(name)
        return _missing(name)

    module.__getattr__ = __getattr__


class _ShimLoader(importlib.abc.Loader):

    def create_module(self, spec):
        return None  # default module creation

    def exec_module(self, module):
        fill_shim(module)


class MMCVOpsFinder(importlib.abc.MetaPathFinder):
    """Resolve ``mmcv.ops`` to the stand-in when ``mmcv._ext`` is missing."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname != 'mmcv.ops':
            return None
        try:
            compiled = importlib.util.find_spec('mmcv._ext') is not None
        except (ImportError, ValueError):
            compiled = False
        if compiled:
            return None
        return importlib.machinery.ModuleSpec('mmcv.ops', _ShimLoader())


def install() -> None:
    """Put :class:`MMCVOpsFinder` first on ``sys.meta_path`` (once)."""
    if not any(isinstance(f, MMCVOpsFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, MMCVOpsFinder())
