"""mmseg's own tools and Python APIs on this plugin's configs (issue: drop-in use).

mmseg's ``tools/train.py`` / ``tools/test.py`` (shipped in the installed package under
``mmseg/.mim/tools``) must give bit-identical weights and predictions to ours, with the
CLIP switched by the one key ``model.clip`` only; ``init_model`` / ``inference_model`` /
``show_result_pyplot`` / ``MMSegInferencer`` must work for MaskCLIP (no checkpoint:
``'none'``), stage 1 and the distilled student, with the model's own classes.
"""
import os
import os.path as osp
import warnings

import mmseg
import numpy as np
import pytest
import torch
from PIL import Image

from tests.clip_utils import TINY, save_random_clip
from tests.data_utils import make_voc_layout
from tests.e2e_utils import STAGE1, STAGE2, data_options, student_options
from tests.tool_utils import run_tool

MASKCLIP = 'configs/maskclip/maskclip_vit-b16_voc.py'
STOCK_TOOLS = osp.join(osp.dirname(mmseg.__file__), '.mim', 'tools')


def clip_switch(clip, head='model.decode_head'):
    """Tiny CLIP through the one switch (``model.clip``), plus the tiny head sizes."""
    return [
        f'model.clip.model_name={TINY}', f'model.clip.pretrained={clip}', f'{head}.in_channels=64',
        f'{head}.templates=single', f'{head}.norm_cfg.type=BN', f'{head}.query_cache_dir=None'
    ]


def eval_data_options(data):
    return [o for o in data_options(data) if o.startswith(('val_', 'test_'))]


def tools(stock):
    folder = STOCK_TOOLS if stock else 'tools'
    return osp.join(folder, 'train.py'), osp.join(folder, 'test.py')


def state(path):
    return torch.load(path, map_location='cpu', weights_only=False)['state_dict']


def assert_same_state(a, b):
    sa, sb = state(a), state(b)
    assert sorted(sa) == sorted(sb)
    for key in sa:
        assert torch.equal(sa[key], sb[key]), key


def read_preds(folder):
    names = sorted(os.listdir(folder))
    assert names
    return {n: np.array(Image.open(osp.join(folder, n))) for n in names}


@pytest.fixture(scope='module')
def runs(tmp_path_factory):
    """Stage 1 and stage 2 trained (2 iterations each) by our tools and by mmseg's."""
    root = tmp_path_factory.mktemp('stock_tools')
    clip = save_random_clip(str(root / 'tiny_clip.pt'))
    data = make_voc_layout(str(root / 'voc'), n_generated=2)
    out = dict(root=root, clip=clip, data=data)
    for stock in (False, True):
        train, _ = tools(stock)
        tag = 'stock' if stock else 'ours'
        s1 = root / f's1_{tag}'
        run_tool(
            [train, STAGE1, '--work-dir', str(s1), '--cfg-options'] + clip_switch(clip) +
            data_options(data))
        s2 = root / f's2_{tag}'
        run_tool(
            [train, STAGE2, '--work-dir', str(s2), '--cfg-options'] +
            clip_switch(clip, 'model.teacher.decode_head') +
            student_options(str(s1 / 'iter_2.pth')) + data_options(data))
        out[tag] = dict(s1=s1 / 'iter_2.pth', s2=s2 / 'iter_2.pth')
    return out


def test_stock_train_matches_ours(runs):
    assert osp.isfile(osp.join(STOCK_TOOLS, 'train.py'))
    assert_same_state(runs['ours']['s1'], runs['stock']['s1'])
    assert_same_state(runs['ours']['s2'], runs['stock']['s2'])
    # the runs did train: stage-1 context vectors moved away from the token-0 init
    assert state(runs['ours']['s1'])['decode_head.classifier.bias_extractor.context'].std() > 0


@pytest.mark.parametrize('which', ['maskclip', 's1', 's2'])
def test_stock_test_matches_ours(runs, which, tmp_path):
    cfg, ckpt, opts = {
        'maskclip': (MASKCLIP, 'none', clip_switch(runs['clip'])),
        's1': (STAGE1, str(runs['ours']['s1']), clip_switch(runs['clip'])),
        's2': (STAGE2, str(runs['ours']['s2']),
               clip_switch(runs['clip'], 'model.teacher.decode_head') + student_options('unused')),
    }[which]
    preds = {}
    for stock in (False, True):
        _, test = tools(stock)
        out = tmp_path / ('stock' if stock else 'ours')
        proc = run_tool([
            test, cfg, ckpt, '--work-dir',
            str(tmp_path / 'wd'), '--out',
            str(out), '--cfg-options'
        ] + opts + eval_data_options(runs['data']))
        assert 'mIoU' in proc.stdout + proc.stderr
        preds[stock] = read_preds(out)
    assert preds[False].keys() == preds[True].keys()
    for name in preds[False]:
        np.testing.assert_array_equal(preds[False][name], preds[True][name], err_msg=name)


def _api_cfg(path, opts):
    from mmengine.config import Config, DictAction
    cfg = Config.fromfile(path)
    parsed = {}
    for opt in opts:
        key, value = opt.split('=', 1)
        parsed[key] = DictAction._parse_iterable(value)
    cfg.merge_from_dict(parsed)
    return cfg


@pytest.mark.parametrize('which', ['maskclip', 's1', 's2'])
def test_mmseg_apis(runs, which, tmp_path):
    from mmseg.apis import MMSegInferencer, inference_model, init_model, show_result_pyplot

    from mmseg_reclip.datasets import PascalVOC20Dataset
    cfg_path, ckpt, opts = {
        'maskclip': (MASKCLIP, 'none', clip_switch(runs['clip'])),
        's1': (STAGE1, str(runs['ours']['s1']), clip_switch(runs['clip'])),
        's2': (STAGE2, str(runs['ours']['s2']),
               clip_switch(runs['clip'], 'model.teacher.decode_head') + student_options('unused')),
    }[which]
    img = np.array(
        Image.open(
            osp.join(runs['data'], 'JPEGImages',
                     sorted(os.listdir(osp.join(runs['data'],
                                                'JPEGImages')))[0])))[..., ::-1].copy()  # BGR
    voc = tuple(PascalVOC20Dataset.METAINFO['classes'])  # the dataset's names, not Cityscapes'
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        model = init_model(_api_cfg(cfg_path, opts), ckpt, device='cpu')
        assert tuple(model.dataset_meta['classes']) == voc
        result = inference_model(model, img)
        pred = result.pred_sem_seg.data
        assert pred.shape[-2:] == img.shape[:2] and int(pred.max()) < len(voc)
        drawn = show_result_pyplot(
            model, img, result, show=False, out_file=str(tmp_path / 'vis.png'), opacity=0.5)
        assert drawn.shape == img.shape and osp.isfile(tmp_path / 'vis.png')
        # the training-free model needs no checkpoint at all
        if which == 'maskclip':
            bare = init_model(_api_cfg(cfg_path, opts), None, device='cpu')
            assert tuple(bare.dataset_meta['classes']) == voc
        inferencer = MMSegInferencer(model=_api_cfg(cfg_path, opts), weights=ckpt, device='cpu')
        assert tuple(inferencer.model.dataset_meta['classes']) == voc
        out = inferencer(img, return_datasamples=True)
        np.testing.assert_array_equal(out.pred_sem_seg.data.numpy(), pred.numpy())
    messages = [str(w.message) for w in caught]
    assert not [m for m in messages if 'ityscapes' in m or 'randomly initialized' in m]
