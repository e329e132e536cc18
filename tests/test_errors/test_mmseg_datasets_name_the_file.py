"""mmseg's own datasets, as our dataset bases build them (Context59, ADE20K, Cityscapes):
an empty split file or image folder, and a 1x1 image, give one line naming the file."""
import glob
import os
import os.path as osp

import numpy as np
import pytest
from mmengine.config import Config
from mmseg.registry import DATASETS
from PIL import Image

from tests.data_utils import make_ade_layout, make_cityscapes_layout, make_context_layout
from tests.tool_utils import REPO_ROOT

LAYOUTS = {
    'context59': (make_context_layout, 'JPEGImages/c_0.jpg'),
    'ade20k': (make_ade_layout, 'images/validation/a_0.jpg'),
    'cityscapes': (make_cityscapes_layout, 'leftImg8bit/val/city/city_0_0_leftImg8bit.png'),
}


def test_dataset(base: str, root: str):
    cfg = Config.fromfile(str(REPO_ROOT / f'configs/_base_/datasets/{base}.py'))
    ds_cfg = cfg.test_dataloader.dataset
    ds_cfg.data_root = root
    return DATASETS.build(ds_cfg)


test_dataset.__test__ = False  # a helper, not a test


@pytest.mark.parametrize('base', sorted(LAYOUTS))
def test_empty_split_or_folder_names_it(base, tmp_path):
    make, image = LAYOUTS[base]
    root = str(tmp_path / base)
    make(root)
    assert len(test_dataset(base, root)) == 1
    if base == 'context59':
        split = osp.join(root, 'ImageSets/SegmentationContext/val.txt')
        open(split, 'w').close()
        expected = osp.abspath(split)
    else:
        for path in glob.glob(osp.join(root, osp.dirname(image), '*')):
            os.remove(path)
        expected = osp.abspath(osp.join(root, osp.dirname(image).split('/city')[0]))
    with pytest.raises(ValueError) as err:
        test_dataset(base, root)
    msg = str(err.value)
    assert '\n' not in msg and expected in msg, msg


@pytest.mark.parametrize('base', sorted(LAYOUTS))
def test_one_pixel_image_names_the_file(base, tmp_path):
    make, image = LAYOUTS[base]
    root = str(tmp_path / base)
    make(root)
    dataset = test_dataset(base, root)
    path = dataset.get_data_info(0)['img_path']
    Image.fromarray(np.full((1, 1, 3), 90, np.uint8)).save(path)
    Image.fromarray(np.full((1, 1), 3, np.uint8)).save(dataset.get_data_info(0)['seg_map_path'])
    with pytest.raises(ValueError) as err:
        dataset[0]
    msg = str(err.value)
    assert '\n' not in msg and repr(path) in msg and 'is 1x1 pixels' in msg, msg
