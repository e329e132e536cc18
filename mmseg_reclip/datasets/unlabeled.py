"""A folder of images without any annotation: the training set of "your own images"."""
import os
import os.path as osp
from typing import List, Optional, Sequence

from mmseg.datasets import BaseSegDataset
from mmseg.registry import DATASETS

#: Extensions listed by default (compared case-insensitively): what mmcv/OpenCV read.
IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.tif', '.tiff', '.webp', '.ppm', '.pgm',
                    '.pbm', '.jp2')


def list_images(folder: str, extensions: Sequence[str] = IMAGE_EXTENSIONS) -> List[str]:
    """Every image file under ``folder`` (recursive), sorted by path.

    Hidden files and folders (names starting with ``.``, e.g. the ``.tmp_`` files of
    interrupted atomic writes) are skipped; symlinks to files are followed.

    Args:
        folder (str): the folder to walk.
        extensions (Sequence[str]): file-name endings to keep, case-insensitive.

    Returns:
        List[str]: absolute-or-as-given paths (``osp.join(folder, ...)``), sorted.
    """
    exts = tuple(e.lower() if e.startswith('.') else '.' + e.lower() for e in extensions)
    found = []
    for root, dirs, files in os.walk(folder, followlinks=True):
        dirs[:] = sorted(d for d in dirs if not d.startswith('.'))
        for name in files:
            if not name.startswith('.') and name.lower().endswith(exts):
                found.append(osp.join(root, name))
    return sorted(found)


@DATASETS.register_module()
class UnlabeledImageDataset(BaseSegDataset):
    """Every image under a folder, with no annotation: for unsupervised training.

    The data list holds ``img_path`` only. There is no ``seg_map_path``, so no pipeline
    can open a label file through this dataset (``LoadAnnotations`` fails on it rather
    than read something). Validation with labels uses a separate labelled dataset
    (``configs/_base_/datasets/custom.py``).

    Args:
        data_root (str): the image folder (or the root ``data_prefix['img_path']`` is
            relative to).
        data_prefix (dict): ``img_path``: sub-folder of ``data_root`` holding the images
            (default ``''``: ``data_root`` itself).
        extensions (Sequence[str]): image file endings listed, case-insensitive.
            Default: :data:`IMAGE_EXTENSIONS`.
        class_names (str | list, optional): the model's class names (a key, a
            class-name file or a list, as ``class_names`` of the heads); sets
            ``metainfo['classes']`` so that tools showing the dataset name its classes.
            The images are listed the same either way.
        **kwargs: the other arguments of :class:`mmseg.datasets.BaseSegDataset`
            (``pipeline``, ``indices``, ``serialize_data``...). ``ann_file`` and a
            ``seg_map_path`` prefix are refused: this dataset reads images only.

    Raises:
        FileNotFoundError: the image folder does not exist.
        ValueError: the folder holds no image with one of ``extensions``; or an
            ``ann_file`` / ``seg_map_path`` was given.
    """

    def __init__(self,
                 data_root: Optional[str] = None,
                 data_prefix: dict = dict(img_path=''),
                 extensions: Sequence[str] = IMAGE_EXTENSIONS,
                 class_names=None,
                 metainfo: Optional[dict] = None,
                 **kwargs) -> None:
        if kwargs.get('ann_file'):
            raise ValueError('UnlabeledImageDataset lists every image under its folder and '
                             f'takes no ann_file (got {kwargs["ann_file"]!r}); remove it.')
        data_prefix = dict(data_prefix or {})
        if data_prefix.get('seg_map_path'):
            raise ValueError('UnlabeledImageDataset reads no labels: remove '
                             f"data_prefix.seg_map_path={data_prefix['seg_map_path']!r} "
                             '(validation with labels uses a separate labelled dataset).')
        data_prefix.setdefault('img_path', '')
        data_prefix.pop('seg_map_path', None)
        self.extensions = tuple(extensions)
        if class_names is not None:
            from mmseg_reclip.models.utils.model_meta import meta_from_class_names
            from .class_names import get_class_names
            key = class_names if isinstance(class_names, str) else None
            metainfo = dict(
                meta_from_class_names(get_class_names(class_names), key), **(metainfo or {}))
        super().__init__(data_root=data_root, data_prefix=data_prefix, metainfo=metainfo, **kwargs)

    def load_data_list(self) -> List[dict]:
        """One ``dict(img_path=...)`` per image under the folder, sorted by path."""
        folder = self.data_prefix.get('img_path') or self.data_root or '.'
        if not osp.isdir(folder):
            raise FileNotFoundError(
                f'UnlabeledImageDataset: image folder not found: {osp.abspath(folder)!r}; '
                'set data_root to the folder that holds your images.')
        paths = list_images(folder, self.extensions)
        if not paths:
            raise ValueError(
                f'UnlabeledImageDataset: no image under {osp.abspath(folder)!r} (looked '
                f'recursively for {", ".join(self.extensions)}); put images there or set '
                '`extensions`.')
        return [
            dict(img_path=p, label_map=None, reduce_zero_label=False, seg_fields=[]) for p in paths
        ]
