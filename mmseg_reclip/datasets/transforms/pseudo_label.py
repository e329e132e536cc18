"""Offline distillation targets: the teacher's argmax masks, written once to PNG files.

A pseudo label is the frozen stage-1 teacher's prediction, not ground truth. It is
written by ``tools/generate_pseudo_labels.py`` into its own folder and read by
:class:`LoadPseudoLabel`, which never opens the dataset's annotation files, refuses to
run after ``LoadAnnotations`` and drops the sample's ``seg_map_path``, so no transform
after it can load the ground truth either. Inside the pipeline it sits under
``gt_seg_map`` only so that mmseg/mmcv's geometric transforms (resize, crop, flip) move
it with the image; :class:`PackPseudoLabelInputs` then packs it as the data sample's
``pseudo_sem_seg`` (never ``gt_sem_seg``), which is all :class:`ReCLIPDistiller`
(``target='pseudo_label'``) reads.
"""
import json
import os.path as osp
from typing import Optional

import mmcv
import numpy as np
from mmcv.transforms import BaseTransform
from mmengine import fileio
from mmseg.datasets.transforms import PackSegInputs
from mmseg.registry import TRANSFORMS

PSEUDO_META_KEYS = ('img_path', 'ori_shape', 'img_shape', 'pad_shape', 'scale_factor', 'flip',
                    'flip_direction', 'pseudo_label_path')

#: File in a pseudo-label folder describing it; ``complete: true`` once every label of
#: the training set is written and up to date.
PSEUDO_LABEL_META = 'meta.json'


def pseudo_label_name(img_path: str, suffix: str = '.png') -> str:
    """File name of an image's pseudo label: its basename with ``suffix``."""
    return osp.splitext(osp.basename(img_path))[0] + suffix


@TRANSFORMS.register_module()
class LoadPseudoLabel(BaseTransform):
    """Load the teacher's pseudo label of ``results['img_path']``.

    The folder's ``meta.json`` must say ``complete: true`` (generation finished): a set
    left incomplete by an interrupted or failed run is refused.

    Required keys: ``img_path``. Added keys: ``gt_seg_map`` (uint8 ``[H, W]``, class
    indices, 255 = ignore), ``seg_fields``, ``pseudo_label_path``. Removed key:
    ``seg_map_path`` (the ground truth's path: nothing after this transform can load it).
    Pack with :class:`PackPseudoLabelInputs`.

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
        self._complete = False

    def check_complete(self) -> None:
        """Raise unless ``meta.json`` of the folder says ``complete: true``."""
        if self._complete:
            return
        meta_path = osp.join(self.pseudo_label_dir, PSEUDO_LABEL_META)
        hint = ('Write the teacher\'s pseudo labels (again): python '
                'tools/generate_pseudo_labels.py <this distillation config>.')
        if not fileio.exists(meta_path, backend_args=self.backend_args):
            raise FileNotFoundError(f'{meta_path} not found: {self.pseudo_label_dir} is '
                                    f'not a finished pseudo-label set. {hint}')
        try:
            meta = json.loads(fileio.get(meta_path, backend_args=self.backend_args))
        except ValueError as err:
            raise ValueError(f'{meta_path} is not valid JSON ({err}). {hint}') from None
        if not isinstance(meta, dict) or meta.get('complete') is not True:
            raise RuntimeError(f'{meta_path}: the pseudo-label set is incomplete (generation '
                               f'interrupted or images changed since). {hint}')
        self._complete = True

    def transform(self, results: dict) -> dict:
        if results.get('gt_seg_map') is not None:
            raise RuntimeError(
                'LoadPseudoLabel found a gt_seg_map already loaded (LoadAnnotations in the '
                'train pipeline?). Distillation is unsupervised: remove LoadAnnotations.')
        path = osp.join(self.pseudo_label_dir, pseudo_label_name(results['img_path'], self.suffix))
        gt_path = results.get('seg_map_path')
        if gt_path and osp.abspath(path) == osp.abspath(gt_path):
            raise ValueError(f'pseudo_label_dir points at the ground truth ({gt_path}).')
        self.check_complete()
        if not fileio.exists(path, backend_args=self.backend_args):
            raise FileNotFoundError(
                f'Pseudo label not found: {path}. Write the teacher\'s pseudo labels first: '
                'python tools/generate_pseudo_labels.py <this distillation config>.')
        label = mmcv.imfrombytes(
            fileio.get(path, backend_args=self.backend_args), flag='unchanged', backend='pillow')
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
        results.pop('seg_map_path', None)
        return results

    def __repr__(self) -> str:
        return f'{type(self).__name__}(pseudo_label_dir={self.pseudo_label_dir!r})'


@TRANSFORMS.register_module()
class PackPseudoLabelInputs(PackSegInputs):
    """:class:`mmseg.datasets.transforms.PackSegInputs` for pseudo-labelled samples.

    The label loaded by :class:`LoadPseudoLabel` is packed as ``pseudo_sem_seg``
    (``PixelData``, ``[1, H, W]`` int64) instead of ``gt_sem_seg``; a sample that did not
    go through :class:`LoadPseudoLabel` is refused.

    Args:
        meta_keys (tuple): as in ``PackSegInputs``; default :data:`PSEUDO_META_KEYS`.
    """

    def __init__(self, meta_keys: tuple = PSEUDO_META_KEYS):
        super().__init__(meta_keys=meta_keys)

    def transform(self, results: dict) -> dict:
        if 'pseudo_label_path' not in results:
            raise KeyError('PackPseudoLabelInputs packs pseudo labels only: put '
                           'LoadPseudoLabel in the pipeline before it.')
        packed = super().transform(results)
        sample = packed['data_samples']
        label = sample.gt_sem_seg
        del sample.gt_sem_seg
        sample.set_data(dict(pseudo_sem_seg=label))
        return packed
