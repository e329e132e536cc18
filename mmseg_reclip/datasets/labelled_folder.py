"""An image folder with a label folder beside it: optional validation of custom data."""
from typing import Optional

from mmseg.datasets import BaseSegDataset
from mmseg.registry import DATASETS


@DATASETS.register_module()
class LabelledImageFolderDataset(BaseSegDataset):
    """mmseg's folder dataset (``img_path`` / ``seg_map_path`` prefixes, matched by file
    name) whose classes come from a class-name list, key or file.

    Used only to *evaluate* a model trained on your own images (``IoUMetric``); the
    training set is :class:`UnlabeledImageDataset`, which reads no label. Label maps
    hold class indices in the order of ``class_names`` and 255 for "ignore".

    Args:
        class_names (str | list): as ``class_names`` of the heads (a key, the path of a
            class-name file or a list); sets ``metainfo['classes']`` and a palette.
        metainfo (dict, optional): overrides what ``class_names`` sets.
        **kwargs: :class:`mmseg.datasets.BaseSegDataset` arguments (``data_root``,
            ``data_prefix``, ``img_suffix``, ``seg_map_suffix``, ``pipeline``...).
    """

    def __init__(self, class_names, metainfo: Optional[dict] = None, **kwargs) -> None:
        from mmseg_reclip.models.utils.model_meta import meta_from_class_names
        from .class_names import get_class_names
        key = class_names if isinstance(class_names, str) else None
        metainfo = dict(
            meta_from_class_names(get_class_names(class_names), key), **(metainfo or {}))
        super().__init__(metainfo=metainfo, **kwargs)
