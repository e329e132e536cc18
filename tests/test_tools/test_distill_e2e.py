"""Both ReCLIP++ stages through the real tools/train.py and tools/test.py on CPU.

Stage 1 trains the tiny-CLIP teacher for 2 iterations; stage 2 distils it into a small
ResNet-18 DeepLab V2 student for 2 iterations; tools/test.py then evaluates the
distilled checkpoint after the CLIP weights file has been deleted. A second stage-2 run
on a copy of the dataset whose label PNGs are random gives bit-identical student weights
(training never reads ground truth).
"""
import os
import os.path as osp
import re
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from tests.clip_utils import save_random_clip
from tests.data_utils import make_voc_layout
from tests.e2e_utils import (STAGE1, STAGE2, clip_options, data_options, randomise_labels,
                             student_options)
from tests.tool_utils import run_tool


def train_stage2(data, clip, teacher_ckpt, work_dir, check=True):
    return run_tool(
        ['tools/train.py', STAGE2, '--work-dir',
         str(work_dir), '--cfg-options'] + clip_options(clip, 'model.teacher.') +
        student_options(teacher_ckpt) + data_options(data),
        check=check)


@pytest.fixture(scope='module')
def stages(tmp_path_factory):
    root = tmp_path_factory.mktemp('distill_e2e')
    clip = save_random_clip(str(root / 'tiny_clip.pt'))
    data = make_voc_layout(str(root / 'voc'), n_generated=2)
    s1 = root / 's1'
    run_tool(['tools/train.py', STAGE1, '--work-dir',
              str(s1), '--cfg-options'] + clip_options(clip) + data_options(data))
    teacher_ckpt = str(s1 / 'iter_2.pth')
    assert osp.isfile(teacher_ckpt)
    s2 = root / 's2'
    proc = train_stage2(data, clip, teacher_ckpt, s2)
    return dict(
        root=root, clip=clip, data=data, teacher=teacher_ckpt, s2=s2, log=proc.stdout + proc.stderr)


def test_stage2_trains_all_three_losses(stages):
    log = stages['log']
    for key in ('decode.loss_mask_ce', 'decode.loss_feat_l1', 'decode.loss_text'):
        values = re.findall(re.escape(key) + r': (\d+\.\d+)', log)
        assert values, key
        # every logged iteration: a term dropped (weight or value 0) would log 0.0000
        assert all(float(v) > 0 for v in values), (key, values)
    assert 'Building the distillation teacher from' in log


def test_distilled_checkpoint_has_no_teacher_and_tests_without_clip(stages, tmp_path):
    ckpt = stages['s2'] / 'iter_2.pth'
    state = torch.load(ckpt, map_location='cpu', weights_only=False)['state_dict']
    forbidden = ('teacher', 'text_encoder', 'visual', 'context', 'decoder_conv', 'decoder_norm')
    assert not [k for k in state if any(f in k for f in forbidden)]
    assert all(k.startswith(('backbone.', 'decode_head.')) for k in state)
    assert bool(state['decode_head.inherited'])
    # The run's own config still names the CLIP file; delete a copy it points at.
    clip_copy = str(tmp_path / 'clip_to_delete.pt')
    shutil.copy(stages['clip'], clip_copy)
    cfg = str(stages['s2'] / osp.basename(STAGE2))
    text = open(cfg).read().replace(stages['clip'], clip_copy)
    cfg_copy = tmp_path / osp.basename(STAGE2)
    cfg_copy.write_text(text)
    os.remove(clip_copy)
    assert clip_copy in text and not osp.exists(clip_copy)
    proc = run_tool(
        ['tools/test.py',
         str(cfg_copy),
         str(ckpt), '--work-dir',
         str(tmp_path / 'test')])
    log = proc.stdout + proc.stderr
    assert re.search(r'mIoU: \d+\.\d+', log), log[-2000:]
    assert 'Building the distillation teacher' not in log


def test_ground_truth_is_never_read(stages, tmp_path):
    """Same training with random label PNGs → bit-identical student weights."""
    shuffled = str(tmp_path / 'voc_random_labels')
    shutil.copytree(stages['data'], shuffled)
    randomise_labels(shuffled)
    seg = 'SegmentationClass/real_000000.png'
    assert not np.array_equal(
        np.array(Image.open(osp.join(stages['data'], seg))),
        np.array(Image.open(osp.join(shuffled, seg))))
    train_stage2(shuffled, stages['clip'], stages['teacher'], tmp_path / 's2_random')
    a = torch.load(
        stages['s2'] / 'iter_2.pth', map_location='cpu', weights_only=False)['state_dict']
    b = torch.load(
        tmp_path / 's2_random' / 'iter_2.pth', map_location='cpu', weights_only=False)['state_dict']
    assert a.keys() == b.keys()
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert not different, different
    # ... and the student did train: SGD momentum buffers hold non-zero gradients.
    optim = torch.load(
        stages['s2'] / 'iter_2.pth', map_location='cpu', weights_only=False)['optimizer']['state']
    assert optim and all(s['momentum_buffer'].abs().sum() > 0 for s in optim.values())


def test_missing_teacher_checkpoint_fails_clearly(stages, tmp_path):
    missing = str(tmp_path / 'no_stage1' / 'iter_20000.pth')
    proc = train_stage2(
        stages['data'], stages['clip'], missing, tmp_path / 's2_missing', check=False)
    assert proc.returncode != 0
    err = proc.stdout + proc.stderr
    assert 'Teacher checkpoint not found' in err and missing in err
    assert 'tools/train.py configs/reclip/reclip_vit-b16_' in err


def test_offline_pseudo_labels_then_distillation(stages, tmp_path):
    """tools/generate_pseudo_labels.py writes one teacher argmax PNG per training image;
    the offline config trains from them."""
    offline = 'configs/reclip/reclip-distill_deeplabv2-r101_voc_offline.py'
    pl_dir = str(tmp_path / 'pseudo_labels')
    opts = (
        clip_options(stages['clip'], 'model.teacher.') + student_options(stages['teacher']) +
        data_options(stages['data']))
    # LoadPseudoLabel sits at index 1: RandomResize and RandomCrop move by one.
    opts = [
        o.replace('pipeline.1.scale', 'pipeline.2.scale').replace('pipeline.2.crop_size',
                                                                  'pipeline.3.crop_size')
        for o in opts
    ]
    opts += [
        f'pseudo_label_dir={pl_dir}',
        f'train_dataloader.dataset.dataset.pipeline.1.pseudo_label_dir={pl_dir}'
    ]
    proc = run_tool(['tools/generate_pseudo_labels.py', offline, '--cfg-options'] + opts)
    assert '3 written' in proc.stdout + proc.stderr
    names = open(osp.join(stages['data'], 'ImageSets/Segmentation/train.txt')).read().split()
    for name in names:
        with Image.open(osp.join(pl_dir, name + '.png')) as pl, \
                Image.open(osp.join(stages['data'], 'JPEGImages', name + '.jpg')) as img:
            assert pl.size == img.size and pl.mode == 'L'
            assert np.array(pl).max() < 20
    proc = run_tool(['tools/generate_pseudo_labels.py', offline, '--cfg-options'] + opts)
    assert '0 written, 3 up to date' in proc.stdout + proc.stderr
    # an image replaced by another of the same name and size gets a new label
    jpg = {n: osp.join(stages['data'], 'JPEGImages', n + '.jpg') for n in names}
    by_size = {}
    for n in names:
        with Image.open(jpg[n]) as im:
            by_size.setdefault(im.size, []).append(n)
    src, dst = next(v for v in by_size.values() if len(v) > 1)[:2]
    with open(jpg[src], 'rb') as f_src, open(jpg[dst], 'r+b') as f_dst:
        f_dst.write(f_src.read())  # in place (mtime may not even change on coarse fs)
    with Image.open(osp.join(pl_dir, src + '.png')) as a:
        expected = np.array(a)
    with Image.open(osp.join(pl_dir, dst + '.png')) as b:
        assert (np.array(b) != expected).any()  # the test needs labels that differ
    proc = run_tool(['tools/generate_pseudo_labels.py', offline, '--cfg-options'] + opts)
    assert '1 written, 2 up to date' in proc.stdout + proc.stderr
    with Image.open(osp.join(pl_dir, dst + '.png')) as b:
        np.testing.assert_array_equal(np.array(b), expected)
    proc = run_tool(
        ['tools/train.py', offline, '--work-dir',
         str(tmp_path / 's2_offline'), '--cfg-options'] + opts)
    assert re.search(r'decode.loss_mask_ce: \d+\.\d+', proc.stdout + proc.stderr)
    assert osp.isfile(tmp_path / 's2_offline' / 'iter_2.pth')
