"""Bad files give one line naming the file and saying what to do (not a raw torch / numpy /
mmcv error): CLIP weights, the teacher checkpoint, split files, tiny images."""
import copy
import os.path as osp

import numpy as np
import pytest
import torch
from mmengine.config import ConfigDict
from mmengine.registry import init_default_scope
from mmseg.registry import DATASETS
from PIL import Image

import mmseg_reclip  # noqa: F401
from mmseg_reclip.models.utils import create_clip
from tests.clip_utils import TINY
from tests.data_utils import make_voc_layout


def one_line(err) -> str:
    msg = str(err.value)
    assert '\n' not in msg, msg
    return msg


# -- CLIP weights ---------------------------------------------------------------------------
@pytest.mark.parametrize('keep', [0.5, 0.0], ids=['truncated', 'empty'])
def test_truncated_clip_weights_name_the_file(clip_file, tmp_path, keep):
    data = open(clip_file, 'rb').read()
    bad = str(tmp_path / 'ViT-B-16.pt')
    with open(bad, 'wb') as f:
        f.write(data[:int(len(data) * keep)])
    with pytest.raises(ValueError) as err:
        create_clip(TINY, bad)
    msg = one_line(err)
    assert osp.abspath(bad) in msg and 'truncated' in msg and 'copy it again' in msg


def test_wrong_architecture_clip_weights_name_the_file(clip_file):
    with pytest.raises(ValueError) as err:
        create_clip('ViT-B-16', clip_file)  # a ViT-Tiny file for a ViT-B-16 model
    msg = one_line(err)
    assert osp.abspath(clip_file) in msg and "'ViT-B-16'" in msg
    assert 'another architecture' in msg and 'model_name' in msg


def test_good_clip_weights_still_load(clip_file):
    model = create_clip(TINY, clip_file)
    ref = torch.load(clip_file, weights_only=True)
    assert torch.equal(model.positional_embedding, ref['positional_embedding'])


# -- teacher checkpoint ---------------------------------------------------------------------
def test_truncated_teacher_checkpoint_names_the_file(clip_file, tmp_path):
    from tests.distill_utils import build, student_cfg, teacher_cfg
    teacher = build(teacher_cfg(clip_file))
    good = str(tmp_path / 'iter_20000.pth')
    torch.save(dict(state_dict=teacher.state_dict()), good)
    data = open(good, 'rb').read()
    bad = str(tmp_path / 'iter_20000_cut.pth')
    with open(bad, 'wb') as f:
        f.write(data[:len(data) // 3])
    model = build(student_cfg(clip_file, bad))
    with pytest.raises(ValueError) as err:
        model.init_weights()
    msg = one_line(err)
    assert osp.abspath(bad) in msg and 'truncated' in msg and 're-run stage 1' in msg
    build(student_cfg(clip_file, good)).init_weights()  # the intact file loads


# -- datasets -------------------------------------------------------------------------------
TEST_PIPELINE = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(2048, 64), keep_ratio=True),
    dict(type='LoadAnnotations'),
    dict(type='PackSegInputs')
]
TRAIN_PIPELINE = [
    dict(type='LoadImageFromFile'),
    dict(type='RandomResize', scale=(256, 64), ratio_range=(0.5, 2.0), keep_ratio=True),
    dict(type='RandomCrop', crop_size=(32, 32), cat_max_ratio=1.0),
    dict(type='PackSegInputs')
]


def voc(root, ann_file='ImageSets/Segmentation/val.txt', pipeline=TEST_PIPELINE):
    init_default_scope('mmseg')
    return DATASETS.build(
        ConfigDict(
            type='PascalVOC20Dataset',
            data_root=root,
            ann_file=ann_file,
            data_prefix=dict(img_path='JPEGImages', seg_map_path='SegmentationClass'),
            pipeline=copy.deepcopy(pipeline)))


def test_empty_split_file_names_the_file(tmp_path):
    root = make_voc_layout(str(tmp_path / 'voc'), n_generated=1)
    split = osp.join(root, 'ImageSets/Segmentation/empty.txt')
    open(split, 'w').close()
    with pytest.raises(ValueError) as err:
        voc(root, 'ImageSets/Segmentation/empty.txt')
    msg = one_line(err)
    assert osp.abspath(split) in msg and 'lists no images' in msg
    assert len(voc(root)) == 2


def test_one_pixel_image_names_the_file(tmp_path):
    root = make_voc_layout(str(tmp_path / 'voc'), n_generated=1)
    img = osp.join(root, 'JPEGImages', 'gen_000000.jpg')
    Image.fromarray(np.full((1, 1, 3), 90, np.uint8)).save(img)
    Image.fromarray(np.full((1, 1), 3,
                            np.uint8)).save(osp.join(root, 'SegmentationClass', 'gen_000000.png'))
    dataset = voc(root)
    idx = [
        i for i in range(len(dataset))
        if dataset.get_data_info(i)['img_path'].endswith('gen_000000.jpg')
    ][0]
    with pytest.raises(ValueError) as err:
        dataset[idx]
    msg = one_line(err)
    assert repr(img) in msg and 'is 1x1 pixels' in msg and 'val.txt' in msg
    assert dataset[1 - idx]['inputs'].shape[1] == 64  # the normal image is untouched
    # training reads no label and handles the tiny image (it is resized up)
    train = voc(root, 'ImageSets/Segmentation/train.txt', TRAIN_PIPELINE)
    assert train[idx]['inputs'].shape == (3, 32, 32)


def test_other_load_failures_name_the_sample_file(tmp_path):
    root = make_voc_layout(str(tmp_path / 'voc'), n_generated=1)
    label = osp.join(root, 'SegmentationClass', 'gen_000000.png')
    with open(label, 'wb') as f:
        f.write(b'not a png')
    dataset = voc(root)
    idx = [i for i in range(len(dataset)) if dataset.get_data_info(i)['seg_map_path'] == label][0]
    with pytest.raises(Exception) as err:
        dataset[idx]
    assert repr(label) in str(err.value) and 'loading sample' in str(err.value)
