"""Mixed precision through the real tools on CPU: ``tools/train.py --amp`` (bf16 autocast
via ``DeviceAmpOptimWrapper``, crop votes in bf16 too) and ``tools/test.py`` with the test
loop's ``fp16=True`` (autocast: bf16 on CPU, fp16 on GPUs)."""
import glob
import re

import torch

from tests.clip_utils import save_random_clip
from tests.data_utils import make_voc_layout
from tests.e2e_utils import STAGE1, clip_options, data_options
from tests.tool_utils import run_tool


def test_train_amp_then_test_fp16(tmp_path):
    clip = save_random_clip(str(tmp_path / 'tiny_clip.pt'))
    data = make_voc_layout(str(tmp_path / 'voc'), n_generated=1)
    work = tmp_path / 'amp'
    proc = run_tool(['tools/train.py', STAGE1, '--work-dir',
                     str(work), '--amp', '--cfg-options'] + clip_options(clip) + data_options(data))
    log = proc.stdout + proc.stderr
    losses = [float(v) for v in re.findall(r'decode\.loss_contrast: (\d+\.\d+)', log)]
    assert len(losses) == 2 and all(0 < v < 100 for v in losses)  # finite, not NaN
    # --amp: fp16 AmpOptimWrapper on GPUs (as mmseg), bf16 DeviceAmpOptimWrapper on CPU
    gpu = torch.cuda.is_available()
    dtype = 'float16' if gpu else 'bfloat16'
    assert f'CLIP in {dtype}' in log  # the crop-vote pre-pass followed the AMP setting
    expect = 'AmpOptimWrapper' if gpu else 'DeviceAmpOptimWrapper'
    ckpt = torch.load(str(work / 'iter_2.pth'), map_location='cpu', weights_only=False)
    assert 'loss_scaler' in ckpt['optimizer']
    assert expect in open(glob.glob(str(work / '*' / 'vis_data' / 'config.py'))[0]).read()
    for name, value in ckpt['state_dict'].items():
        if value.is_floating_point():
            assert value.dtype == torch.float32 and torch.isfinite(value).all(), name
    cache = glob.glob(str(work / 'reclip_hypotheses_*.pth'))
    assert len(cache) == 1
    settings = torch.load(cache[0], weights_only=True)['settings']
    assert settings['precision'] == f'torch.{dtype}'

    test = run_tool([
        'tools/test.py', STAGE1,
        str(work / 'iter_2.pth'), '--work-dir',
        str(tmp_path / 'test'), '--cfg-options'
    ] + clip_options(clip) + data_options(data) + ['test_cfg.fp16=True'])
    assert re.search(r'mIoU: \d+\.\d+', test.stdout + test.stderr)
