"""Every config of the paper's experiments (issue 19: configs/reclip/ablations,
configs/reclip_conference, configs/linear_probe) through the real tools/train.py (2
iterations, tiny CLIP, 64 px crops) or tools/test.py (training-free / evaluation-only).

All runs share one Python process (``tests/tool_batch.py``: each is the tool's own
``main(argv)``), teachers first; each test then checks its config's run."""
import glob
import json
import os.path as osp
import re

import pytest
import torch

from tests.clip_utils import save_random_clip, small_data_options
from tests.data_utils import make_voc_layout
from tests.experiment_utils import tiny_clip_model_options, tiny_run_options, tiny_student_options
from tests.tool_utils import run_tool

ABL = 'configs/reclip/ablations/'
CONF = 'configs/reclip_conference/'
LP = 'configs/linear_probe/'
# The two teachers: ReCLIP++ (Table III row 4 = configs/reclip/reclip_vit-b16_voc.py) and
# the conference ReCLIP; both are also rows of the tables.
RECLIP = ABL + 'table3-4_conf-decoder-cropvote-independent_vit-b16_voc.py'
CONFERENCE = CONF + 'reclip-conf_vit-b16_voc.py'
STAGE1 = [
    CONFERENCE, ABL + 'table3-2_conf-decoder_vit-b16_voc.py',
    ABL + 'table3-3_conf-decoder-cropvote_vit-b16_voc.py', RECLIP,
    ABL + 'table4_learnable-query_vit-b16_voc.py', ABL + 'table5_bias-add_vit-b16_voc.py',
    ABL + 'table6_finetune-clip_vit-b16_voc.py'
]
QUERY_BIAS = ABL + 'table9-3_distill-query-bias_deeplabv2-r101_voc.py'
STAGE2 = {  # config -> its teacher's config
    CONF + 'reclip-conf-distill_deeplabv2-r101_voc.py': CONFERENCE,
    ABL + 'table8-1_distill-mask_deeplabv2-r101_voc.py': RECLIP,
    ABL + 'table8-2_distill-mask-feat_deeplabv2-r101_voc.py': RECLIP,
    ABL + 'table9-1_distill-ori-head_deeplabv2-r101_voc.py': RECLIP,
    ABL + 'table9-2_distill-query_deeplabv2-r101_voc.py': RECLIP,
    QUERY_BIAS: RECLIP,
}
LINEAR_PROBE = {  # config -> the run whose checkpoint it probes
    LP + 'lp_reclip_vit-b16_voc.py': RECLIP,
    LP + 'lp_reclip-distill_deeplabv2-r101_voc.py': QUERY_BIAS,
}
TEST_ONLY = {  # config -> the run whose checkpoint it tests (None: training-free)
    ABL + 'table7_maskclip_vit-b16_voc_bias-metrics.py': None,
    ABL + 'table7_reclip_vit-b16_voc_bias-metrics.py': RECLIP,
}
TRAINED = STAGE1 + list(STAGE2) + list(LINEAR_PROBE)  # in dependency order


def short(cfg):
    return osp.basename(cfg)[:-3]


def state(path):
    return torch.load(path, map_location='cpu', weights_only=False)['state_dict']


def jobs(root, clip, data):
    """The tool invocations, teachers before their students and probes."""

    def work_dir(cfg):
        return str(root / short(cfg))

    def ckpt(cfg):
        return osp.join(work_dir(cfg), 'iter_2.pth')

    out = []
    for cfg in TRAINED:
        opts = tiny_run_options(data)
        if cfg in STAGE2:
            opts += tiny_clip_model_options(clip, 'model.teacher.')
            opts += tiny_student_options(ckpt(STAGE2[cfg]))
        elif cfg in LINEAR_PROBE:
            probed = LINEAR_PROBE[cfg]
            opts = tiny_run_options(data, pipeline_offset=1)
            if probed in STAGE2:
                opts += tiny_clip_model_options(clip, 'model.teacher.') + tiny_student_options()
            else:
                opts += tiny_clip_model_options(clip)
            opts.append(f'model.checkpoint={ckpt(probed)}')  # probe width: derived
        else:
            opts += tiny_clip_model_options(clip)
        out.append(
            dict(
                key=cfg,
                tool='train',
                argv=[cfg, '--work-dir', work_dir(cfg), '--cfg-options'] + opts,
                ckpt=ckpt(cfg),
                work_dir=work_dir(cfg)))
    for cfg, trained in TEST_ONLY.items():
        argv = [cfg] + ([ckpt(trained)] if trained else [])
        opts = tiny_clip_model_options(clip) + small_data_options(data, splits=('val', 'test'))
        opts.append('test_dataloader.dataset.pipeline.1.scale=(128,64)')
        out.append(
            dict(
                key=cfg,
                tool='test',
                argv=argv + ['--work-dir', work_dir(cfg) + '_test', '--cfg-options'] + opts,
                work_dir=work_dir(cfg) + '_test'))
    return out


@pytest.fixture(scope='module')
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp('experiments')
    clip = save_random_clip(str(root / 'tiny_clip.pt'))
    data = make_voc_layout(str(root / 'voc'), n_generated=1, size=(64, 96))
    todo = jobs(root, clip, data)
    (root / 'jobs.json').write_text(json.dumps(todo))
    run_tool(['tests/tool_batch.py',
              str(root / 'jobs.json'),
              str(root / 'results.json')],
             timeout=1500)
    results = json.loads((root / 'results.json').read_text())
    out = {}
    for job in todo:
        logs = sorted(glob.glob(osp.join(job['work_dir'], '*', '*.log')))
        out[job['key']] = dict(
            job,
            result=results.get(job['key'], 'not run'),
            log=open(logs[-1]).read() if logs else '')
    out['clip'] = clip
    return out


@pytest.mark.parametrize('cfg', TRAINED, ids=short)
def test_trains_two_iterations(runs, cfg):
    run = runs[cfg]
    assert run['result'] == 'ok', run['result']
    losses = re.findall(r'decode\.(loss_\w+): (-?\d+\.\d+)', run['log'])
    assert losses, run['log'][-2000:]
    assert all(torch.isfinite(torch.tensor(float(v))) for _, v in losses)
    # the run's validation at iteration 2 predicted through the same config
    assert re.search(r'Iter\(val\).*mIoU: \d+\.\d+', run['log']), run['log'][-2000:]
    sd = state(run['ckpt'])
    if cfg in LINEAR_PROBE:
        # only the probe is trained and saved; the probed model is rebuilt from its checkpoint
        assert sorted(sd) == ['decode_head.conv_seg.bias', 'decode_head.conv_seg.weight']
        assert 'loss_ce' in dict(losses)
    if cfg.endswith('table6_finetune-clip_vit-b16_voc.py'):
        clip = torch.load(runs['clip'], map_location='cpu', weights_only=True)
        assert not torch.equal(sd['backbone.visual.conv1.weight'], clip['visual.conv1.weight'])
    if cfg.endswith('table4_learnable-query_vit-b16_voc.py'):
        assert 'decode_head.query_context' in sd
    if cfg == CONFERENCE:
        assert not [k for k in sd if 'mask_decoder' in k]
        assert "mode='global'" in run['log']


@pytest.mark.parametrize('cfg', list(TEST_ONLY), ids=short)
def test_evaluates_with_tools_test(runs, cfg):
    run = runs[cfg]
    assert run['result'] == 'ok', run['result']
    assert re.search(r'mIoU: \d+\.\d+', run['log']), run['log'][-2000:]
    for key in ('class_pref', 'space_pref'):  # Table VII's two bias scores
        assert re.search(key + r': -?(\d+\.\d+|nan)', run['log']), (key, run['log'][-2000:])
