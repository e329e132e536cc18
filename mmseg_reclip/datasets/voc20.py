"""PASCAL VOC 2012 with 20 object classes (background ignored)."""
from mmseg.datasets import PascalVOCDataset
from mmseg.registry import DATASETS

from .checks import CheckedDatasetMixin

__all__ = ['PascalVOC20Dataset']


@DATASETS.register_module()
class PascalVOC20Dataset(CheckedDatasetMixin, PascalVOCDataset):
    """PASCAL VOC 2012 without the background class (docs/method.md §9).

    Same folder layout as mmseg's :class:`PascalVOCDataset`
    (``JPEGImages/*.jpg``, ``SegmentationClass/*.png`` and a split file such
    as ``ImageSets/Segmentation/train.txt``). With ``reduce_zero_label=True``
    the background label 0 becomes 255 (ignored), labels 1..20 become 0..19
    and 255 (object boundaries) stays ignored.

    Args:
        ann_file (str): split file listing image basenames (one per line).
        img_suffix (str): image suffix. Default: ``'.jpg'``.
        seg_map_suffix (str): label-map suffix. Default: ``'.png'``.
        reduce_zero_label (bool): map background 0 to ignore. Default: True.
        **kwargs: passed to :class:`mmseg.datasets.BaseSegDataset`.
    """
    METAINFO = dict(
        classes=PascalVOCDataset.METAINFO['classes'][1:],
        palette=PascalVOCDataset.METAINFO['palette'][1:])

    def __init__(self,
                 ann_file: str,
                 img_suffix: str = '.jpg',
                 seg_map_suffix: str = '.png',
                 reduce_zero_label: bool = True,
                 **kwargs) -> None:
        super().__init__(
            ann_file=ann_file,
            img_suffix=img_suffix,
            seg_map_suffix=seg_map_suffix,
            reduce_zero_label=reduce_zero_label,
            **kwargs)
