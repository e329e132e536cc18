"""Listing the training images through dataset wrappers (no annotation is read)."""
import glob
import os.path as osp

import pytest
import torch
from mmengine.dataset import ConcatDataset, RepeatDataset
from mmengine.registry import init_default_scope
from mmseg.registry import DATASETS

import mmseg_reclip  # noqa: F401  (registrations)
from mmseg_reclip.datasets.image_listing import collect_img_paths, file_signature, read_image
from tests.crop_vote_utils import dataset_cfg
from tests.data_utils import make_voc_layout


def test_collect_img_paths_wrappers(tmp_path):
    init_default_scope('mmseg')
    root = make_voc_layout(str(tmp_path / 'voc'), n_generated=2)
    ds = DATASETS.build(dataset_cfg(root))
    paths = collect_img_paths(ds)
    assert paths == sorted(glob.glob(osp.join(root, 'JPEGImages', '*.jpg')))
    assert collect_img_paths(RepeatDataset(ds, times=3)) == paths
    split = osp.join(root, 'ImageSets', 'Segmentation', 'one.txt')
    with open(split, 'w') as f:
        f.write('gen_000001\n')
    one = DATASETS.build(dataset_cfg(root, 'ImageSets/Segmentation/one.txt'))
    assert collect_img_paths(one) == [paths[1]]
    assert collect_img_paths(ConcatDataset([one, ds])) == paths
    nested = DATASETS.build(
        dict(
            type='RepeatDataset',
            times=2,
            dataset=dict(
                type='ConcatDataset',
                datasets=[dataset_cfg(root, 'ImageSets/Segmentation/one.txt'),
                          dataset_cfg(root)])))
    assert collect_img_paths(nested) == paths
    assert collect_img_paths(torch.utils.data.Subset(ds, [0, 2])) == [paths[0], paths[2]]
    with pytest.raises(TypeError, match='cannot list the images'):
        collect_img_paths([1, 2, 3])


def test_read_image_and_signature_errors_name_the_file(tmp_path):
    bad = tmp_path / 'bad.jpg'
    bad.write_bytes(b'this is no jpeg')
    assert file_signature(str(bad)) == (15, bad.stat().st_mtime_ns)
    with pytest.raises(OSError, match='bad.jpg.*corrupt or not an image.*replace it .*delete it'):
        read_image(str(bad))
    with pytest.raises(OSError, match='missing.jpg'):
        file_signature(str(tmp_path / 'missing.jpg'))
    with pytest.raises(OSError, match='missing.jpg.*replace it .*delete it'):
        read_image(str(tmp_path / 'missing.jpg'))
