"""The experiment configs (issue 19) as built dicts: each Table III / VIII / IX row differs
from the next in exactly one model or hook key; the last rows are the ReCLIP++ configs;
labels train nothing outside configs/linear_probe; Table VI's optimizer holds the image
encoder and nothing else beyond the usual trainables."""
import glob
import os.path as osp

import pytest
from mmengine.config import Config

from tests.config_diff_utils import built_config, changed_keys

ROOT = osp.join(osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))), 'configs')
ABL = osp.join(ROOT, 'reclip', 'ablations')
TABLE3 = [
    'table3-1_reclip-conf_vit-b16_voc.py', 'table3-2_conf-decoder_vit-b16_voc.py',
    'table3-3_conf-decoder-cropvote_vit-b16_voc.py',
    'table3-4_conf-decoder-cropvote-independent_vit-b16_voc.py'
]
DISTILL = osp.join(ROOT, 'reclip', 'reclip-distill_deeplabv2-r101_voc.py')
TABLE8 = [
    'table8-1_distill-mask_deeplabv2-r101_voc.py',
    'table8-2_distill-mask-feat_deeplabv2-r101_voc.py', DISTILL
]
TABLE9 = [
    'table9-2_distill-query_deeplabv2-r101_voc.py',
    'table9-3_distill-query-bias_deeplabv2-r101_voc.py', DISTILL
]


def built(name):
    """The config as a plain dict, without the conference parts' helper variables."""
    return built_config(osp.join(ABL, name))


def test_table3_rows_differ_by_exactly_one_key():
    rows = [built(n) for n in TABLE3]
    assert changed_keys(rows[0], rows[1]) == {'model.decode_head.mask_decoder'}
    assert changed_keys(rows[1], rows[2]) == {'custom_hooks'}
    assert changed_keys(rows[2], rows[3]) == {'model.decode_head.bias_extractor'}


def test_table3_first_row_is_the_conference_config_and_last_is_reclip_pp():
    conf = Config.fromfile(osp.join(ROOT, 'reclip_conference', 'reclip-conf_vit-b16_voc.py'))
    assert built(TABLE3[0]) == {
        k: v
        for k, v in conf.to_dict().items() if not k.startswith('conference_')
    }
    main = Config.fromfile(osp.join(ROOT, 'reclip', 'reclip_vit-b16_voc.py')).to_dict()
    assert built(TABLE3[3]) == main


@pytest.mark.parametrize('table', [TABLE8, TABLE9], ids=['table8', 'table9'])
def test_distillation_rows_differ_by_exactly_one_key(table):
    rows = [built(n) for n in table]
    for a, b in zip(rows, rows[1:]):
        assert len(changed_keys(a, b)) == 1, changed_keys(a, b)
    assert changed_keys(rows[0],
                        rows[1]) <= {'model.decode_head.loss_decode', 'model.decode_head.inherit'}


def test_single_change_ablations():
    main = Config.fromfile(osp.join(ROOT, 'reclip', 'reclip_vit-b16_voc.py')).to_dict()
    add = built('table5_bias-add_vit-b16_voc.py')
    assert changed_keys(main, add) == {'model.decode_head.bias_mode'}
    tune = built('table6_finetune-clip_vit-b16_voc.py')
    assert changed_keys(main, tune) == {'model.backbone.type'}


def test_labels_train_only_in_the_linear_probe_folder():
    """No train pipeline outside configs/linear_probe loads annotations."""
    for path in sorted(glob.glob(osp.join(ROOT, '**', '*.py'), recursive=True)):
        if '_base_' in path:
            continue
        cfg = Config.fromfile(path)
        loader = cfg.get('train_dataloader')
        if not loader:
            continue
        pipeline = loader['dataset'].get('pipeline') or loader['dataset']['dataset']['pipeline']
        reads = any(t['type'] == 'LoadAnnotations' for t in pipeline)
        assert reads == (osp.sep + 'linear_probe' + osp.sep in path), path
