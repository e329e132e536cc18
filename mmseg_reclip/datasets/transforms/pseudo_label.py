"""Offline distillation targets: the teacher's argmax masks, written once to PNG files.

A pseudo label is the frozen stage-1 teacher's prediction, not ground truth. It is
written by ``tools/generate_pseudo_labels.py`` into its own folder and read by
:class:`LoadPseudoLabel`, which never opens the dataset's annotation files and refuses
to run next to ``LoadAnnotations``. It is stored under ``gt_seg_map`` only so that
mmseg/mmcv's geometric transforms (resize, crop, flip) move it with the image; the
sample's ``pseudo_label_path`` meta key marks it as a pseudo label, and
:class:`ReCLIPDistiller` (``target='pseudo_label'``) only accepts samples that carry it.
"""
import os.path as osp
from typing import Optional

import mmcv
import numpy as np
from mmcv.transforms import BaseTransform
from mmengine import fileio
from mmseg.registry import TRANSFORMS

PSEUDO_META_KEYS = ('img_path', 'seg_map_path', 'ori_shape', 'img_shape', 'pad_shape',
                    'scale_factor', 'flip', 'flip_direction', 'reduce_zero_label',
                    'pseudo_label_path')


def pseudo_label_name(img_path: str, suffix: str = '.png') -> str:
    """File name of an image's pseudo label: its basename with ``suffix``."""
    return osp.splitext(osp.basename(img_path))[0] + suffix


@TRANSFORMS.register_module()
class LoadPseudoLabel(BaseTransform):
    """Load the teacher's pseudo label of ``results['img_path']``.

    Required keys: ``img_path``. Added keys: ``gt_seg_map`` (uint8 ``[H, W]``, class
    indices, 255 = ignore), ``seg_fields``, ``pseudo_label_path``. Add
    ``'pseudo_label_path'`` to ``PackSegInputs``' ``meta_keys`` (``PSEUDO_META_KEYS``).

    Args:
        pseudo_label_dir (str): folder written by ``tools/generate_pseudo_labels.py``.
        suffix (str): file suffix (``.png``).
        backend_args (dict, optional): mmengine file backend arguments.
    """

    def __init__(self,
                 pseudo_label_dir: str,
                 suffix: str = '.png',
                 backend_args: Optional[dict] = None):
        super().__init__()
        self.pseudo_label_dir = pseudo_label_dir
        self.suffix = suffix
        self.backend_args = backend_args

    def transform(self, results: dict) -> dict:
        if results.get('gt_seg_map') is not None:
            raise RuntimeError(
                'LoadPseudoLabel found a gt_seg_map already loaded (LoadAnnotations in the '
                'train pipeline?). Distillation is unsupervised: remove LoadAnnotations.')
        path = osp.join(self.pseudo_label_dir,
                        pseudo_label_name(results['img_path'], self.suffix))
        gt_path = results.get('seg_map_path')
        if gt_path and osp.abspath(path) == osp.abspath(gt_path):
            raise ValueError(f'pseudo_label_dir points at the ground truth ({gt_path}).')
        if not fileio.exists(path, backend_args=self.backend_args):
            raise FileNotFoundError(
                f'Pseudo label not found: {path}. Write the teacher\'s pseudo labels first: '
                'python tools/generate_pseudo_labels.py <this distillation config>.')
        label = mmcv.imfrombytes(fileio.get(path, backend_args=self.backend_args),
                                 flag='unchanged', backend='pillow')
        label = np.asarray(label)
        if label.ndim != 2:
            raise ValueError(f'{path}: a pseudo label must be a single-channel PNG')
        if label.shape[:2] != results['img'].shape[:2]:
            raise ValueError(f'{path}: size {label.shape[:2]} differs from the image '
                             f'{results["img"].shape[:2]}; regenerate the pseudo labels.')
        results['gt_seg_map'] = label.astype(np.uint8)
        results.setdefault('seg_fields', [])
        if 'gt_seg_map' not in results['seg_fields']:
            results['seg_fields'].append('gt_seg_map')
        results['pseudo_label_path'] = path
        return results

    def __repr__(self) -> str:
        return f'{type(self).__name__}(pseudo_label_dir={self.pseudo_label_dir!r})'
