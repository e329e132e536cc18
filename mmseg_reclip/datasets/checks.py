"""Dataset checks whose errors name the file and say what to do.

Without them an empty split file fails inside mmengine with "need at least one array to
concatenate", and a 1x1 image dies inside mmcv/mmseg's loading transforms with an
unrelated ``TypeError``.
"""
import os.path as osp
from typing import List, Optional, Tuple

from PIL import Image

#: Smallest image side the pipelines and label loading handle (mmseg squeezes a label
#: map with a side of 1 into fewer dimensions).
MIN_SIDE = 2


def image_size(path: str) -> Optional[Tuple[int, int]]:
    """``(h, w)`` from the image header (no decoding); ``None`` when unreadable."""
    try:
        with Image.open(path) as img:
            w, h = img.size
        return h, w
    except Exception:  # the caller reports the original error
        return None


class CheckedDatasetMixin:
    """For :class:`mmseg.datasets.BaseSegDataset` subclasses (put it first).

    - An empty data list (empty split file, or no image under ``img_path``) is a
      ``ValueError`` naming the split file / folder.
    - A sample whose loading fails is re-raised naming its image (and label) file; an
      image smaller than ``MIN_SIDE`` pixels on a side says so. The check runs only when
      loading already failed: training never reads a label for it.
    """

    def load_data_list(self) -> List[dict]:
        data_list = super().load_data_list()
        if not data_list:
            name = type(self).__name__
            if self.ann_file:
                raise ValueError(
                    f'{name}: the split file {osp.abspath(self.ann_file)!r} lists no '
                    'images. Write one image basename (without suffix) per line, or point '
                    'ann_file at a non-empty split.')
            img_dir = self.data_prefix.get('img_path', '')
            raise ValueError(
                f'{name}: no image with suffix {self.img_suffix!r} under '
                f'{osp.abspath(img_dir)!r}. Check data_root / data_prefix (and prepare '
                'the dataset as described in docs/errors.md).')
        return data_list

    def prepare_data(self, idx: int):
        try:
            return super().prepare_data(idx)
        except Exception as err:
            info = self.get_data_info(idx)
            img_path = info.get('img_path')
            size = image_size(img_path) if img_path else None
            if size is not None and min(size) < MIN_SIDE:
                raise ValueError(
                    f'Image {img_path!r} is {size[0]}x{size[1]} pixels: too small to segment '
                    f'(each side must be >= {MIN_SIDE}). Remove it from the split file '
                    f'{self.ann_file or "(folder scan)"!r} or replace it.') from err
            files = ', '.join(f'{key} {info[key]!r}' for key in ('img_path', 'seg_map_path')
                              if info.get(key))
            if not _reraisable(err):
                raise
            # The same exception type keeps upstream `except OSError` etc. working.
            raise type(err)(f'{type(self).__name__}: loading sample {idx} ({files}) failed: '
                            f'{err}') from err


def _reraisable(err: Exception) -> bool:
    try:
        type(err)('probe')
        return True
    except Exception:
        return False
