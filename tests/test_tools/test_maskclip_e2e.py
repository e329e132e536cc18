"""MaskCLIP through the real tools/test.py, on a small VOC-layout dataset."""
import re

import pytest
import torch
from mmengine.config import Config, ConfigDict

from tests.clip_utils import save_random_clip, small_data_options, tiny_clip_options
from tests.data_utils import make_voc_layout
from tests.tool_utils import run_tool


@pytest.fixture(scope='module')
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp('maskclip')
    clip = save_random_clip(str(root / 'tiny_clip.pt'))
    data = make_voc_layout(str(root / 'voc'), n_generated=2)
    return root, clip, data


def test_tools_test_without_checkpoint_prints_miou(setup, tmp_path):
    root, clip, data = setup
    out = tmp_path / 'preds'
    proc = run_tool([
        'tools/test.py', 'configs/maskclip/maskclip_vit-b16_voc.py', '--work-dir',
        str(tmp_path / 'wd'), '--out',
        str(out), '--cfg-options'
    ] + tiny_clip_options(clip) + small_data_options(data, ('test', )))
    log = proc.stdout + proc.stderr
    assert 'mIoU' in log
    assert re.search(r'mIoU: \d+\.\d+', log), log[-2000:]
    # One prediction per test image, at the original image size, with VOC20 class ids.
    preds = sorted(out.glob('*.png'))
    names = open(f'{data}/ImageSets/Segmentation/val.txt').read().split()
    assert len(preds) == len(names)


def test_maskclip_prediction_is_argmax_of_query_logits(setup):
    """Whole-image inference equals argmax of F·Qᵀ upsampled to the image."""
    from mmseg.registry import MODELS

    import mmseg_reclip  # noqa: F401
    _, clip, _ = setup
    cfg = Config.fromfile('configs/maskclip/maskclip_vit-b16_voc.py')
    cfg.model.backbone.update(model_name='ViT-Tiny-16-test', pretrained=clip)
    cfg.model.decode_head.update(in_channels=64, templates='single')
    cfg.model.decode_head.text_encoder.update(model_name='ViT-Tiny-16-test', pretrained=clip)
    model = MODELS.build(cfg.model).eval()
    img = torch.randn(1, 3, 64, 80)
    with torch.no_grad():
        logits = model.encode_decode(img, [dict(img_shape=(64, 80))])
        (feats, ) = model.backbone(img)
        q = model.decode_head.queries()
        ref = torch.einsum('bdhw,nd->bnhw', feats, q)
        ref = torch.nn.functional.interpolate(ref, size=(64, 80), mode='bilinear')
    assert logits.shape == (1, 20, 64, 80)
    torch.testing.assert_close(logits, ref, atol=1e-5, rtol=1e-5)


def test_every_config_builds(setup):
    """Every config under configs/ builds its model with the tiny CLIP substituted."""
    import glob

    from mmseg.registry import MODELS

    import mmseg_reclip  # noqa: F401
    _, clip, _ = setup
    configs = sorted(glob.glob('configs/maskclip/*.py') + glob.glob('configs/reclip/reclip_*.py'))
    assert len(configs) >= 10
    for path in configs:
        cfg = Config.fromfile(path)
        if cfg.model.type not in ('MaskCLIP', 'ReCLIP'):
            continue
        cfg.model.backbone.update(model_name='ViT-Tiny-16-test', pretrained=clip)
        head = cfg.model.decode_head
        head.update(in_channels=64, templates='single')
        head.text_encoder.update(model_name='ViT-Tiny-16-test', pretrained=clip)
        if 'norm_cfg' in head:
            head.norm_cfg = dict(type='BN')
        num_classes = cfg.num_classes
        if path.endswith('_custom.py'):  # classes from CLASS_NAMES (test_custom_e2e.py)
            assert num_classes is None and head.num_classes is None
            head.class_names, num_classes = ['cat', ['person', 'people'], 'sky'], 3
        model = MODELS.build(cfg.model)
        assert model.decode_head.num_classes == num_classes, path
        assert len(model.decode_head.class_names) == num_classes, path


def test_class_list_of_another_dataset_is_refused(setup, tmp_path):
    """Context-59 class names on a VOC-20 dataset: refused before any prediction."""
    _, clip, data = setup
    proc = run_tool(
        [
            'tools/test.py', 'configs/maskclip/maskclip_vit-b16_voc.py', '--work-dir',
            str(tmp_path / 'wd'), '--cfg-options'
        ] + tiny_clip_options(clip) + small_data_options(data, ('test', )) +
        ['model.decode_head.num_classes=59', 'model.decode_head.class_names=context59'],
        check=False)
    assert proc.returncode != 0
    assert 'The test dataset (PascalVOC20Dataset) has other classes than the model (20 classes ' \
        'vs 59)' in proc.stderr


def test_class_list_length_refused_at_build(setup):
    import pytest as _pytest
    from mmseg.registry import MODELS
    _, clip, _ = setup
    head = dict(
        type='MaskCLIPHead',
        in_channels=64,
        num_classes=21,
        class_names='voc20',
        templates='single',
        text_encoder=dict(
            type='OpenCLIPTextEncoder', model_name='ViT-Tiny-16-test', pretrained=clip))
    with _pytest.raises(ValueError, match='20 class names given for num_classes=21'):
        MODELS.build(head)


def test_slide_mode_matches_whole_on_one_window(setup):
    """`slide` with a window covering the image equals `whole`; smaller windows run."""
    from mmseg.registry import MODELS
    _, clip, _ = setup
    cfg = Config.fromfile('configs/maskclip/maskclip_vit-b16_voc.py')
    cfg.model.backbone.update(model_name='ViT-Tiny-16-test', pretrained=clip)
    cfg.model.decode_head.update(in_channels=64, templates='single')
    cfg.model.decode_head.text_encoder.update(model_name='ViT-Tiny-16-test', pretrained=clip)
    model = MODELS.build(cfg.model).eval()
    img = torch.randn(1, 3, 64, 80)
    metas = [dict(img_shape=(64, 80), ori_shape=(64, 80), pad_shape=(64, 80))]
    with torch.no_grad():
        whole = model.inference(img, metas)
        model.test_cfg = ConfigDict(mode='slide', crop_size=(64, 80), stride=(32, 32))
        one_window = model.inference(img, metas)
        model.test_cfg = ConfigDict(mode='slide', crop_size=(32, 32), stride=(16, 16))
        windows = model.inference(img, metas)
    torch.testing.assert_close(one_window, whole)
    assert windows.shape == whole.shape and torch.isfinite(windows).all()
