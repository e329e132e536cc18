"""Tests of :mod:`mmseg_reclip.compat`: the ``mmcv.ops`` shim for mmcv-lite and the
checkpoint loading fix (torch >= 2.6 ``weights_only``), end to end with the real
``tools/train.py`` (train, ``--resume``, ``load_from``) and ``init_model`` on the toy
segmentor of :mod:`tests.toy_utils`.
"""
import os
import pickle
import re
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import mmseg_reclip  # noqa: F401  (applies the compat glue in this process too)
from mmseg_reclip import compat
from tests.tool_utils import run_tool
from tests.toy_utils import MAX_ITERS, output_of


def _compiled_mmcv_ops() -> bool:
    return compat._compiled_mmcv_ops_available()


needs_mmcv_lite = pytest.mark.skipif(
    _compiled_mmcv_ops(), reason='full mmcv installed: the real mmcv.ops is used')


# ---------------------------------------------------------------------------
# (a) mmcv.ops shim
# ---------------------------------------------------------------------------
def _bilinear_reference(feat: np.ndarray, xy: np.ndarray) -> np.ndarray:
    """Bilinear sampling written out by hand (align_corners=False, zero padding).

    feat: [C, H, W]; xy: [P, 2] normalised [0, 1] (x, y). Returns [C, P].
    """
    C, H, W = feat.shape
    out = np.zeros((C, xy.shape[0]), dtype=np.float64)
    for p, (nx, ny) in enumerate(xy):
        # pixel centres sit at (i + 0.5) / size in normalised coordinates
        x = nx * W - 0.5
        y = ny * H - 0.5
        x0, y0 = int(np.floor(x)), int(np.floor(y))
        for yy in (y0, y0 + 1):
            for xx in (x0, x0 + 1):
                if 0 <= yy < H and 0 <= xx < W:
                    w = (1 - abs(x - xx)) * (1 - abs(y - yy))
                    out[:, p] += w * feat[:, yy, xx]
    return out


@needs_mmcv_lite
def test_mmcv_ops_is_the_shim():
    import mmcv
    import mmcv.ops
    assert getattr(mmcv.ops, '__reclip_shim__', False)
    assert sys.modules['mmcv.ops'] is mmcv.ops
    # installing again is a no-op that keeps the shim
    assert compat.install_mmcv_ops_shim() is True
    assert getattr(sys.modules['mmcv.ops'], '__reclip_shim__', False)


def test_point_sample_matches_independent_bilinear():
    from mmcv.ops import point_sample
    if not _compiled_mmcv_ops():
        assert point_sample is compat.point_sample

    g = torch.Generator().manual_seed(0)
    feat = torch.randn(2, 3, 5, 7, generator=g, dtype=torch.float64)
    # include points near / on the border, where zero padding matters
    pts = torch.rand(2, 11, 2, generator=g, dtype=torch.float64) * 1.1 - 0.05
    out = point_sample(feat, pts)
    assert out.shape == (2, 3, 11)
    for n in range(2):
        ref = _bilinear_reference(feat[n].numpy(), pts[n].numpy())
        np.testing.assert_allclose(out[n].numpy(), ref, rtol=1e-10, atol=1e-12)

    # same thing through F.grid_sample, and the [N, Hp, Wp, 2] form
    grid = (2 * pts - 1).unsqueeze(2)  # [N, P, 1, 2]
    ref = F.grid_sample(feat, grid, align_corners=False).squeeze(3)
    torch.testing.assert_close(out, ref)
    pts4 = torch.rand(2, 4, 6, 2, generator=g, dtype=torch.float64)
    out4 = point_sample(feat, pts4)
    assert out4.shape == (2, 3, 4, 6)
    torch.testing.assert_close(out4, F.grid_sample(feat, 2 * pts4 - 1, align_corners=False))
    # align_corners is forwarded
    torch.testing.assert_close(
        point_sample(feat, pts, align_corners=True),
        F.grid_sample(feat, grid, align_corners=True).squeeze(3))


@needs_mmcv_lite
@pytest.mark.parametrize('name', ['sigmoid_focal_loss', 'nms', 'SomeFutureOp'])
def test_other_mmcv_ops_import_but_raise_when_used(name):
    import mmcv.ops
    ns = {}
    exec(f'from mmcv.ops import {name} as op', ns)  # the import itself works
    with pytest.raises(ModuleNotFoundError, match='mmcv'):
        ns['op'](torch.zeros(1))
    with pytest.raises(AttributeError):
        mmcv.ops.__no_such_dunder__


def test_mmseg_models_import():
    import mmseg.models  # noqa: F401
    from mmseg.models.decode_heads import PointHead  # noqa: F401  (uses point_sample)
    from mmseg.registry import MODELS
    assert MODELS.get('EncoderDecoder') is not None


@needs_mmcv_lite
def test_mmseg_models_needs_the_shim():
    """Proof the shim is needed: without it mmcv-lite cannot import mmseg.models.

    The installed start-up hook (``mmseg_reclip_hook.pth``) puts the same stand-in on
    ``sys.meta_path``; the child process takes it off first."""
    code = ('import sys\n'
            "sys.meta_path[:] = [f for f in sys.meta_path if type(f).__name__ != 'MMCVOpsFinder']\n"
            'import mmseg.models\n')
    proc = subprocess.run([sys.executable, '-c', code],
                          capture_output=True,
                          text=True,
                          timeout=300,
                          env=dict(os.environ, OMP_NUM_THREADS='1'))
    assert proc.returncode != 0
    assert 'mmcv' in proc.stderr


def _logged_lr(log: str, prefix: str) -> float:
    line = next(ln for ln in log.splitlines() if prefix in ln)
    return float(re.search(r'\blr: ([0-9.e+-]+)', line).group(1))


def _params(state_dict: dict) -> dict:
    """Learnable tensors only (BN running statistics move even with lr=0)."""
    return {
        k: v
        for k, v in state_dict.items() if 'running_' not in k and 'num_batches_tracked' not in k
    }


# ---------------------------------------------------------------------------
# (b) checkpoint fix, end to end
# ---------------------------------------------------------------------------
def test_checkpoints_need_the_fix(toy):
    """Proof the fix is needed: torch's default (weights_only) load refuses them."""
    ckpt = toy['work_dir'] / 'iter_2.pth'
    if 'weights_only' not in torch.load.__code__.co_varnames:  # pragma: no cover
        pytest.skip('torch without weights_only')
    with pytest.raises(pickle.UnpicklingError):
        torch.load(ckpt, map_location='cpu')
    # mmengine's own local loader uses that default too
    from mmengine.runner.checkpoint import CheckpointLoader, load_from_local
    with pytest.raises(pickle.UnpicklingError):
        load_from_local(str(ckpt), map_location='cpu')
    # ... and with the fix registered, mmengine's loader reads it
    loaded = CheckpointLoader.load_checkpoint(str(ckpt), map_location='cpu')
    assert loaded['meta']['iter'] == 2


def test_train_resume(toy):
    wd = toy['work_dir']
    out = output_of(toy['resumed'])
    assert 'resumed epoch: 0, iter: 2' in out, out[-3000:]
    assert 'Iter(train) [4/4]' in out
    assert 'Iter(train) [1/4]' not in out  # iterations 1-2 were not redone
    # the LR schedule went on where it stopped (a restarted PolyLR would be back at 0.01)
    lr_2 = _logged_lr(output_of(toy['first']), 'Iter(train) [2/2]')
    lr_3 = _logged_lr(out, 'Iter(train) [3/4]')
    assert lr_3 < lr_2 < 0.01
    assert (wd / 'iter_4.pth').is_file()
    assert (wd / 'last_checkpoint').read_text().strip().endswith('iter_4.pth')

    ckpt = torch.load(wd / 'iter_4.pth', map_location='cpu', weights_only=False)
    assert ckpt['meta']['iter'] == MAX_ITERS
    assert ckpt['message_hub']['runtime_info']['iter'] == MAX_ITERS - 1  # 0-based
    # the optimizer state came along (momentum buffers exist)
    assert ckpt['optimizer']['state']
    # the weights moved between iteration 2 and 4
    ckpt2 = torch.load(wd / 'iter_2.pth', map_location='cpu', weights_only=False)
    w2, w4 = _params(ckpt2['state_dict']), _params(ckpt['state_dict'])
    assert w2.keys() == w4.keys()
    assert any(not torch.equal(w2[k], w4[k]) for k in w2)


def test_train_load_from_fresh_work_dir(toy):
    src = toy['work_dir'] / 'iter_4.pth'
    wd = toy['base'] / 'work_dir_load_from'
    proc = run_tool([
        'tools/train.py', toy['cfg'], '--work-dir', wd, '--cfg-options', f'load_from={src}',
        'train_cfg.max_iters=1', 'optim_wrapper.optimizer.lr=0.0'
    ],
                    cwd=toy['base'])
    out = output_of(proc)
    assert f'Load checkpoint from {src}' in out, out[-3000:]
    assert 'resumed epoch' not in out
    ckpt = torch.load(wd / 'iter_1.pth', map_location='cpu', weights_only=False)
    assert ckpt['meta']['iter'] == 1  # load_from starts a new schedule
    src_sd = torch.load(src, map_location='cpu', weights_only=False)['state_dict']
    new, old = _params(ckpt['state_dict']), _params(src_sd)
    assert new.keys() == old.keys()
    for k in old:  # lr=0: the weights are exactly the loaded ones
        torch.testing.assert_close(new[k], old[k], rtol=0, atol=0, msg=k)


def test_init_model_loads_checkpoint(toy):
    from mmseg.apis import init_model
    ckpt_path = toy['work_dir'] / 'iter_4.pth'
    model = init_model(str(toy['cfg']), str(ckpt_path), device='cpu')
    ckpt = torch.load(ckpt_path, map_location='cpu', weights_only=False)
    sd = model.state_dict()
    assert sd.keys() == ckpt['state_dict'].keys()
    for k, v in ckpt['state_dict'].items():
        torch.testing.assert_close(sd[k], v, rtol=0, atol=0, msg=k)
    assert model.dataset_meta['classes'] == ('background', 'square', 'stripe')
