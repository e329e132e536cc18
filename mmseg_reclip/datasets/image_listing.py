"""The image files of a training dataset: listing, identity and reading.

The crop-vote pre-pass and the pseudo-label tool work on every training image, whatever
wrappers the dataset sits in; they read the image files only, never an annotation.
"""
import os
from typing import List, Optional, Tuple

import mmcv
import numpy as np
from mmengine import fileio

__all__ = [
    'collect_img_paths', 'img_path_of', 'read_image', 'file_signature', 'UNREADABLE_IMAGE_FIX'
]

#: What to do about a training image that cannot be read (ends every such error).
UNREADABLE_IMAGE_FIX = ('replace it with an intact copy, or delete it (or move it out of '
                        'the image folder): every image listed is read')


def collect_img_paths(dataset) -> List[str]:
    """Sorted unique ``img_path`` of every item of a (possibly wrapped) dataset.

    Handles mmengine's ``ConcatDataset`` / ``RepeatDataset`` / ``ClassBalancedDataset``,
    torch's ``ConcatDataset`` / ``Subset`` and mmseg's ``MultiImageMixDataset``; any
    other dataset must provide ``get_data_info(i)`` with an ``'img_path'`` key.

    Args:
        dataset: the dataset, possibly wrapped.

    Returns:
        List[str]: the image paths, sorted, without duplicates.
    """
    from mmengine.dataset import ClassBalancedDataset, ConcatDataset, RepeatDataset
    from torch.utils.data import ConcatDataset as TorchConcat
    from torch.utils.data import Subset
    paths = set()

    def visit(ds):
        if isinstance(ds, (ConcatDataset, TorchConcat)):
            for sub in ds.datasets:
                visit(sub)
            return
        if isinstance(ds, (RepeatDataset, ClassBalancedDataset)):
            visit(ds.dataset)
            return
        if type(ds).__name__ == 'MultiImageMixDataset' and hasattr(ds, 'dataset'):
            visit(ds.dataset)
            return
        if isinstance(ds, Subset):
            base = ds.dataset
            if not hasattr(base, 'get_data_info'):
                raise TypeError(f'Subset of {type(base).__name__} has no get_data_info')
            if hasattr(base, 'full_init'):
                base.full_init()
            for i in ds.indices:
                paths.add(img_path_of(base, int(i)))
            return
        if not hasattr(ds, 'get_data_info'):
            raise TypeError(
                f'mmseg_reclip cannot list the images of a {type(ds).__name__}: '
                'it supports mmseg/mmengine BaseDataset (get_data_info(i)["img_path"]) and '
                'the ConcatDataset / RepeatDataset / ClassBalancedDataset / '
                'MultiImageMixDataset / Subset wrappers.')
        if hasattr(ds, 'full_init'):
            ds.full_init()
        for i in range(len(ds)):
            paths.add(img_path_of(ds, i))

    visit(dataset)
    return sorted(paths)


def img_path_of(dataset, idx: int) -> str:
    """``dataset.get_data_info(idx)['img_path']`` with a clear error when missing."""
    info = dataset.get_data_info(idx)
    if 'img_path' not in info:
        raise KeyError(f'{type(dataset).__name__}.get_data_info({idx}) has no "img_path" '
                       f'(keys: {sorted(info)}); the crop-vote pre-pass and the pseudo-'
                       'label tool need image paths.')
    return info['img_path']


def read_image(path: str, backend_args: Optional[dict] = None) -> np.ndarray:
    """Read an image as ``LoadImageFromFile`` does (cv2, colour, BGR ``uint8 [H, W, 3]``)."""
    fix = UNREADABLE_IMAGE_FIX
    try:
        img_bytes = fileio.get(path, backend_args=backend_args)
        img = mmcv.imfrombytes(img_bytes, flag='color', backend='cv2')
    except Exception as e:
        raise OSError(f'Could not read the image {path!r} ({e}); {fix}') from e
    if img is None:
        raise OSError(f'Could not decode the image {path!r} (corrupt or not an image); {fix}')
    return img


def file_signature(path: str) -> Tuple[int, int]:
    """``(size, mtime_ns)`` of a local file (clear error when it is missing)."""
    try:
        st = os.stat(path)
    except OSError as e:
        raise OSError(f'Could not read the image {path!r}: {e}') from e
    return st.st_size, st.st_mtime_ns
