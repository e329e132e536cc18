"""The planted-bias world's Table III rows and distillation config, built (no training,
no world needed): consecutive rows differ in exactly one model/hook key, as the VOC rows
(tests/test_configs/test_ablation_configs.py); the last row is planted stage 1; the
distillation's teacher is the planted stage-1 model and training reads no label."""
import os.path as osp

from mmengine.config import Config

from tests.config_diff_utils import built_config, changed_keys

CONFIGS = osp.join(
    osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))), 'benchmarks', 'planted_bias',
    'configs')
TABLE3 = [
    'planted_table3-1_reclip-conf.py', 'planted_table3-2_conf-decoder.py',
    'planted_table3-3_conf-decoder-cropvote.py', 'planted_reclip.py'
]


def built(name):
    return built_config(osp.join(CONFIGS, name))


def test_planted_table3_rows_differ_by_exactly_one_key():
    rows = [built(n) for n in TABLE3]
    assert changed_keys(rows[0], rows[1]) == {'model.decode_head.mask_decoder'}
    assert changed_keys(rows[1], rows[2]) == {'custom_hooks'}
    assert changed_keys(rows[2], rows[3]) == {'model.decode_head.bias_extractor'}


def test_planted_table3_first_row_is_conference_reclip():
    head = built(TABLE3[0])['model']['decode_head']
    assert head['bias_extractor']['type'] == 'CoupledBiasExtractor'
    assert head['mask_decoder'] == dict(type='NoMaskDecoder', gumbel_scale=1000.0, gumbel_tau=1.0)
    hook = built(TABLE3[0])['custom_hooks'][0]
    assert hook['mode'] == 'global' and hook['top_k'] == 2
    # the world's label-free threshold, not VOC's (tuned for real CLIP)
    assert hook['score_threshold'] != 23.0


def test_planted_distill_has_the_planted_teacher():
    cfg = Config.fromfile(osp.join(CONFIGS, 'planted_distill.py'))
    stage1 = Config.fromfile(osp.join(CONFIGS, 'planted_reclip.py'))
    assert cfg.model.type == 'ReCLIPDistiller'
    assert cfg.model.teacher.to_dict() == stage1.model.to_dict()
    assert cfg.model.teacher.backbone.type == 'PlantedBiasCLIP'
    assert cfg.model.teacher_checkpoint == 'work_dirs/planted_reclip/iter_1000.pth'
    cfg.merge_from_dict({'model.teacher_checkpoint': 'elsewhere.pth'})
    assert cfg.model.teacher_checkpoint == 'elsewhere.pth'
    # the student: CPU-sized, no pretrained weights, plain BN; its head reads its last stage
    backbone, head = cfg.model.backbone, cfg.model.decode_head
    assert backbone.depth == 18 and backbone.init_cfg is None
    assert backbone.norm_cfg.type == 'BN'
    assert head.in_channels == 8 * backbone.base_channels  # BasicBlock: expansion 1
    assert head.class_names == stage1.model.decode_head.class_names
    # training reads the training images only
    dataset = cfg.train_dataloader.dataset.dataset
    assert dataset.data_prefix == dict(img_path='img_dir/train')
    assert not any(t['type'] == 'LoadAnnotations' for t in dataset.pipeline)
