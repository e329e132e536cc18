"""A folder of images without any annotation: the training set of "your own images"."""
import logging
import os
import os.path as osp
from typing import List, Optional, Sequence

from mmseg.datasets import BaseSegDataset
from mmseg.registry import DATASETS

#: Extensions listed by default (compared case-insensitively): what mmcv/OpenCV read.
IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.tif', '.tiff', '.webp', '.ppm', '.pgm',
                    '.pbm', '.jp2')


def list_images(folder: str,
                extensions: Sequence[str] = IMAGE_EXTENSIONS,
                exclude: Sequence[str] = ()) -> List[str]:
    """Every image file under ``folder`` (recursive), sorted by path.

    Hidden files and folders (names starting with ``.``, e.g. the ``.tmp_`` files of
    interrupted atomic writes) are skipped. Symlinks are followed, but never into a
    loop: a linked folder that is already listed (two links to one folder) or that
    holds the folder being walked (a link to ``.`` or to a parent) is skipped, and so
    is a link that leads nowhere (a warning names each of those links).

    Args:
        folder (str): the folder to walk.
        extensions (Sequence[str]): file-name endings to keep, case-insensitive.
        exclude (Sequence[str]): folders not to walk into (e.g. the output folder of a
            tool that writes inside its input folder), by their real path.

    Returns:
        List[str]: absolute-or-as-given paths (``osp.join(folder, ...)``), sorted.
    """
    exts = tuple(e.lower() if e.startswith('.') else '.' + e.lower() for e in extensions)
    excluded = {osp.realpath(p) for p in exclude}
    found, skipped = [], []
    seen = set()  # (st_dev, st_ino) of every folder walked
    stack = [(folder, (osp.realpath(folder), ))]  # folder, real paths of it and its parents
    while stack:
        current, chain = stack.pop()
        try:
            st = os.stat(current)
            entries = sorted(os.scandir(current), key=lambda e: e.name)
        except OSError:
            continue  # unreadable folder: as os.walk, skipped
        if (st.st_dev, st.st_ino) in seen:
            continue
        seen.add((st.st_dev, st.st_ino))
        subfolders = []
        for entry in entries:
            if entry.name.startswith('.'):
                continue
            try:
                is_dir = entry.is_dir()  # follows links
                is_file = not is_dir and entry.is_file()
            except OSError:
                is_dir = is_file = False
            if is_dir:
                real = osp.realpath(entry.path)
                # a link to this folder or to one above it: walking it never ends
                if real in excluded or (entry.is_symlink() and _holds_any(real, chain)):
                    if real not in excluded:
                        skipped.append(entry.path)
                    continue
                subfolders.append((entry.path, chain + (real, )))
            elif is_file:
                if entry.name.lower().endswith(exts):
                    found.append(entry.path)
            elif entry.is_symlink() and entry.name.lower().endswith(exts):
                skipped.append(entry.path)  # dangling, or a link to itself
        stack.extend(reversed(subfolders))  # depth first, in name order
    if skipped:
        from mmengine.logging import print_log
        print_log(
            f'{folder}: skipped {len(skipped)} symlink(s) that loop or lead nowhere: '
            f'{sorted(skipped)}',
            logger='current',
            level=logging.WARNING)
    return sorted(found)


def _holds_any(real: str, chain: Sequence[str]) -> bool:
    """Whether the folder ``real`` is one of ``chain`` or holds one of them."""
    prefix = real.rstrip(os.sep) + os.sep
    return any(c == real or c.startswith(prefix) for c in chain)


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
