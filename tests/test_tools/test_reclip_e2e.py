"""ReCLIP++ stage 1 through the real tools: train, test, hypothesis cache, resume, and
ground-truth invariance (labels replaced by random ones → bit-identical weights)."""
import glob
import os.path as osp
import re
import shutil

import pytest
import torch

from tests.clip_utils import save_random_clip
from tests.data_utils import make_voc_layout
from tests.e2e_utils import STAGE1, clip_options, data_options, randomise_labels
from tests.tool_utils import run_tool

TRAINABLE = ('decode_head.classifier.bias_extractor.context',
             'decode_head.classifier.bias_extractor.pe_proj.',
             'decode_head.classifier.mask_decoder.')


def train(data, clip, work_dir, extra=(), resume=False):
    args = ['tools/train.py', STAGE1, '--work-dir', str(work_dir)]
    if resume:
        args.append('--resume')
    return run_tool(args + ['--cfg-options'] + clip_options(clip) + data_options(data) +
                    list(extra))


def state(path):
    return torch.load(path, map_location='cpu', weights_only=False)['state_dict']


@pytest.fixture(scope='module')
def stage1(tmp_path_factory):
    root = tmp_path_factory.mktemp('reclip_e2e')
    clip = save_random_clip(str(root / 'tiny_clip.pt'))
    data = make_voc_layout(str(root / 'voc'), n_generated=2)
    proc = train(data, clip, root / 's1')
    return dict(root=root, clip=clip, data=data, log=proc.stdout + proc.stderr)


def test_train_then_test(stage1, tmp_path):
    log = stage1['log']
    assert re.search(r'decode\.loss_contrast: \d+\.\d+', log)
    caches = glob.glob(str(stage1['root'] / 's1' / 'reclip_hypotheses_*.pth'))
    assert len(caches) == 1
    ckpt = stage1['root'] / 's1' / 'iter_2.pth'
    sd = state(ckpt)
    # Only the trainable parts and the frozen query buffers are saved: no CLIP weights.
    assert not [k for k in sd if 'visual' in k or 'text_encoder' in k]
    assert any(k.startswith('decode_head.classifier.bias_extractor.context') for k in sd)
    proc = run_tool(
        ['tools/test.py', STAGE1,
         str(ckpt), '--work-dir',
         str(tmp_path), '--cfg-options'] + clip_options(stage1['clip']) +
        data_options(stage1['data']))
    assert re.search(r'mIoU: \d+\.\d+', proc.stdout + proc.stderr)


def test_ground_truth_is_never_read(stage1, tmp_path):
    shuffled = str(tmp_path / 'voc_random')
    shutil.copytree(stage1['data'], shuffled)
    randomise_labels(shuffled)
    train(shuffled, stage1['clip'], tmp_path / 'run')
    a, b = state(stage1['root'] / 's1' / 'iter_2.pth'), state(tmp_path / 'run' / 'iter_2.pth')
    assert a.keys() == b.keys()
    assert not [k for k in a if not torch.equal(a[k], b[k])]
    # ... and training did move the weights (not a vacuous equality).
    init = train(shuffled, stage1['clip'], tmp_path / 'zero', ['optim_wrapper.optimizer.lr=0.0'])
    c = state(tmp_path / 'zero' / 'iter_2.pth')
    assert any(not torch.equal(a[k], c[k]) for k in a if k.startswith(TRAINABLE))
    assert init.returncode == 0


def test_resume_reuses_cache_and_continues_exactly(stage1, tmp_path):
    four = ['train_cfg.max_iters=4']  # same LR schedule (end=20000) as the 2-iter run
    straight = tmp_path / 'straight'
    train(stage1['data'], stage1['clip'], straight, four)
    resumed = tmp_path / 'resumed'
    shutil.copytree(stage1['root'] / 's1', resumed)
    cache = glob.glob(str(resumed / 'reclip_hypotheses_*.pth'))[0]
    mtime = osp.getmtime(cache)
    proc = train(stage1['data'], stage1['clip'], resumed, four, resume=True)
    log = proc.stdout + proc.stderr
    assert 'resumed' in log.lower()
    assert osp.getmtime(cache) == mtime, 'the hypothesis cache was rewritten'
    a, b = state(straight / 'iter_4.pth'), state(resumed / 'iter_4.pth')
    assert not [k for k in a if not torch.equal(a[k], b[k])]
