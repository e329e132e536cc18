"""mmseg's own datasets with errors that name the file (:class:`CheckedDatasetMixin`).

Same classes, folder layouts and metainfo as mmseg's; only an empty split file or image
folder, a too-small image and a failing sample get one line naming the file.
"""
from mmseg.datasets import ADE20KDataset, CityscapesDataset, PascalContextDataset59
from mmseg.registry import DATASETS

from .checks import CheckedDatasetMixin


@DATASETS.register_module()
class CheckedPascalContextDataset59(CheckedDatasetMixin, PascalContextDataset59):
    """:class:`mmseg.datasets.PascalContextDataset59` whose errors name the file."""


@DATASETS.register_module()
class CheckedADE20KDataset(CheckedDatasetMixin, ADE20KDataset):
    """:class:`mmseg.datasets.ADE20KDataset` whose errors name the file."""


@DATASETS.register_module()
class CheckedCityscapesDataset(CheckedDatasetMixin, CityscapesDataset):
    """:class:`mmseg.datasets.CityscapesDataset` whose errors name the file."""
