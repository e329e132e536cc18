"""Offline distillation targets: LoadPseudoLabel is separate from ground truth and
only reads a finished set."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from mmcv.transforms import Compose
from mmengine.registry import init_default_scope
from PIL import Image

import mmseg_reclip  # noqa: F401
from mmseg_reclip.datasets.transforms.pseudo_label import LoadPseudoLabel, pseudo_label_name


@pytest.fixture
def files(tmp_path):
    rng = np.random.default_rng(0)
    img = rng.integers(0, 255, (20, 30, 3), dtype=np.uint8)
    img_path = tmp_path / 'images' / 'a_1.jpg'
    img_path.parent.mkdir()
    Image.fromarray(img).save(img_path, quality=100)
    label = np.tile(np.arange(30, dtype=np.uint8) % 20, (20, 1))  # column index
    pl_dir = tmp_path / 'pl'
    pl_dir.mkdir()
    Image.fromarray(label, mode='L').save(pl_dir / 'a_1.png')
    (pl_dir / 'meta.json').write_text(json.dumps(dict(key={}, complete=True)))
    return str(img_path), str(pl_dir), label


def test_pseudo_label_moves_with_the_image_and_is_marked(files):
    img_path, pl_dir, label = files
    init_default_scope('mmseg')
    pipeline = Compose([
        dict(type='LoadImageFromFile'),
        dict(type='LoadPseudoLabel', pseudo_label_dir=pl_dir),
        dict(type='RandomFlip', prob=1.0, direction='horizontal'),
        dict(type='RandomCrop', crop_size=(10, 12), cat_max_ratio=1.0),
        dict(type='PackPseudoLabelInputs'),
    ])
    out = pipeline(
        dict(img_path=img_path, seg_map_path='/gt/a_1.png', seg_fields=[], reduce_zero_label=False))
    sample = out['data_samples']
    assert sample.metainfo['pseudo_label_path'].endswith('a_1.png')
    # packed as a pseudo label, never as ground truth; the GT path is gone
    assert 'gt_sem_seg' not in sample and 'seg_map_path' not in sample.metainfo
    seg = sample.pseudo_sem_seg.data[0].numpy()
    assert seg.shape == (10, 12)
    # After a horizontal flip the column index decreases by one per column.
    assert (np.diff(seg.astype(int), axis=1) % 20 == 19).all()


def test_refuses_ground_truth_and_explains_missing_files(files, tmp_path):
    img_path, pl_dir, _ = files
    t = LoadPseudoLabel(pseudo_label_dir=pl_dir)
    img = np.zeros((20, 30, 3), np.uint8)
    with pytest.raises(RuntimeError, match='LoadAnnotations'):
        t(dict(img_path=img_path, img=img, gt_seg_map=np.zeros((20, 30), np.uint8)))
    with pytest.raises(ValueError, match='ground truth'):
        t(dict(img_path=img_path, img=img, seg_map_path=str(tmp_path / 'pl' / 'a_1.png')))
    with pytest.raises(FileNotFoundError, match='generate_pseudo_labels'):
        t(dict(img_path=str(tmp_path / 'b.jpg'), img=img))
    with pytest.raises(ValueError, match='regenerate'):
        t(dict(img_path=img_path, img=np.zeros((21, 30, 3), np.uint8)))
    assert pseudo_label_name('/x/y/z.jpg') == 'z.png'


def test_no_ground_truth_can_be_loaded_after_it(files):
    """LoadAnnotations after LoadPseudoLabel finds no GT path to read, and packing a
    sample without a pseudo label is refused."""
    img_path, pl_dir, _ = files
    init_default_scope('mmseg')
    after = Compose([
        dict(type='LoadImageFromFile'),
        dict(type='LoadPseudoLabel', pseudo_label_dir=pl_dir),
        dict(type='LoadAnnotations'),
    ])
    with pytest.raises(KeyError, match='seg_map_path'):
        after(
            dict(
                img_path=img_path,
                seg_map_path='/gt/a_1.png',
                seg_fields=[],
                reduce_zero_label=False))
    pack = Compose([dict(type='LoadImageFromFile'), dict(type='PackPseudoLabelInputs')])
    with pytest.raises(KeyError, match='LoadPseudoLabel'):
        pack(dict(img_path=img_path))


def test_distiller_accepts_only_marked_pseudo_labels():
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample

    from mmseg_reclip.models.segmentors.distiller import pseudo_label_batch
    s = SegDataSample()
    s.gt_sem_seg = PixelData(data=torch.zeros(1, 4, 4, dtype=torch.uint8))
    s.set_metainfo(dict(pseudo_label_path='/pl/a.png'))
    with pytest.raises(KeyError, match='LoadPseudoLabel'):
        pseudo_label_batch([s], (4, 4), 255)  # ground truth is never taken for it
    s = SegDataSample()
    s.pseudo_sem_seg = PixelData(data=torch.ones(1, 4, 3, dtype=torch.uint8))
    with pytest.raises(KeyError, match='LoadPseudoLabel'):
        pseudo_label_batch([s], (4, 4), 255)
    s.set_metainfo(dict(pseudo_label_path='/pl/a.png'))
    target = pseudo_label_batch([s], (4, 5), 255)
    assert target.shape == (1, 4, 5) and target.dtype == torch.long
    assert (target[0, :, :3] == 1).all() and (target[0, :, 3:] == 255).all()  # padded


@pytest.mark.parametrize('meta', [None, '{"complete": false}', '{"complete": "yes"}', '{x'])
def test_refuses_an_unfinished_set(files, meta):
    """A set whose meta.json is missing, garbled or not ``complete: true`` (generation
    interrupted) is refused with the command that fixes it."""
    img_path, pl_dir, _ = files
    meta_path = Path(pl_dir) / 'meta.json'
    meta_path.unlink()
    if meta is not None:
        meta_path.write_text(meta)
    t = LoadPseudoLabel(pseudo_label_dir=pl_dir)
    with pytest.raises((RuntimeError, ValueError, FileNotFoundError),
                       match='meta.json.*generate_pseudo_labels'):
        t(dict(img_path=img_path, img=np.zeros((20, 30, 3), np.uint8)))
    meta_path.write_text('{"complete": true}')
    assert t(dict(img_path=img_path, img=np.zeros((20, 30, 3), np.uint8)))['gt_seg_map'].shape \
        == (20, 30)
