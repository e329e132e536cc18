"""What mmseg's APIs read from a segmentor: ``dataset_meta``, and the 'none' checkpoint.

mmseg's ``init_model`` / ``MMSegInferencer`` / ``show_result_pyplot`` take a model's
classes and palette from its checkpoint's meta and otherwise fall back to Cityscapes.
Our segmentors know their class names from the config, so they set ``dataset_meta``
when they are built, and a ``'none'`` checkpoint (:mod:`mmseg_reclip.compat`) hands
that meta back to mmseg.
"""
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch.nn as nn

# State-dict key of the 'none' checkpoint (see mmseg_reclip.compat.load_no_checkpoint).
NO_CHECKPOINT_KEY = '__mmseg_reclip_no_checkpoint__'


class TrainedModelWithoutCheckpointError(ValueError):
    """The checkpoint ``'none'`` given to a model that must be trained (its decoder or
    student would run with their initial weights)."""


class NoCheckpoint:
    """Marker value of the 'none' checkpoint; carries the checkpoint's ``meta`` dict so
    that the model can fill in its ``dataset_meta`` while it is "loaded"."""

    def __init__(self, meta: dict):
        self.meta = meta


def class_palette(num_classes: int) -> List[List[int]]:
    """A fixed palette of ``num_classes`` RGB colours (the same for every run)."""
    rng = np.random.RandomState(2024)
    return rng.randint(0, 256, size=(num_classes, 3)).tolist()


# Built-in class-name keys and the dataset whose names and palette the model shows.
KEY_TO_DATASET = {
    'voc20': 'PascalVOC20Dataset',
    'context59': 'PascalContextDataset59',
    'ade150': 'ADE20KDataset',
    'cityscapes19': 'CityscapesDataset',
    'cocostuff27': 'COCOStuff27Dataset',
}


def meta_from_class_names(class_names: Sequence[Sequence[str]],
                          key: Optional[str] = None) -> Dict[str, tuple]:
    """``dataset_meta`` (``classes``, ``palette``) of a model predicting ``class_names``.

    With a built-in key (``'voc20'``...) these are the dataset's own names and palette
    (what the runner saves in checkpoints); otherwise the first name of each class and a
    fixed palette.
    """
    if isinstance(key, str) and key in KEY_TO_DATASET:
        from mmseg.registry import DATASETS
        dataset = DATASETS.get(KEY_TO_DATASET[key])
        info = getattr(dataset, 'METAINFO', None) or {}
        if len(info.get('classes', ())) == len(class_names):
            palette = info.get('palette') or class_palette(len(class_names))
            return dict(classes=tuple(info['classes']), palette=[list(c) for c in palette])
    classes = tuple(names[0] for names in class_names)
    return dict(classes=classes, palette=class_palette(len(classes)))


def _fill_from_self_when_no_checkpoint(module: nn.Module, state_dict: dict, prefix: str,
                                       *args) -> None:
    """Load pre-hook: a 'none' checkpoint loads the model's own state (no missing-key
    warning) and reports its ``dataset_meta`` to the caller."""
    marker = state_dict.pop(prefix + NO_CHECKPOINT_KEY, None)
    if not isinstance(marker, NoCheckpoint):
        return
    # Every entry point loading 'none' (mmseg's tools/test.py, init_model,
    # MMSegInferencer, ours) passes here: refuse before anything is evaluated.
    refuse_untrained(module, default=False)
    for key, value in module.state_dict(prefix=prefix).items():
        state_dict.setdefault(key, value)
    meta = getattr(module, 'dataset_meta', None)
    if meta:
        marker.meta['dataset_meta'] = dict(meta)


def refuse_untrained(model: nn.Module, default: Optional[bool] = None) -> None:
    """Raise :class:`TrainedModelWithoutCheckpointError` if ``model`` (or the module a
    DDP wrapper holds) must be trained but runs without a checkpoint.

    Args:
        model (nn.Module): the segmentor.
        default (bool, optional): what a model without a ``training_free`` attribute
            is (``None``: not ours, let it run).
    """
    model = getattr(model, 'module', model)
    if getattr(model, 'training_free', default) is False:
        raise TrainedModelWithoutCheckpointError(
            f"Checkpoint 'none': the config's model is a trained model "
            f'({type(model).__name__}); without its checkpoint it would predict with '
            'untrained weights: give its checkpoint (e.g. work_dirs/<config>/iter_N.pth); '
            "only training-free configs (MaskCLIP) run with 'none'.")


def set_model_meta(model: nn.Module,
                   class_names: Sequence[Sequence[str]],
                   key: Optional[str] = None) -> None:
    """Set ``model.dataset_meta`` from its class names (``key``: the ``class_names``
    config value) and handle 'none' checkpoints: accepted when the model's class
    attribute ``training_free`` is true, refused with
    :class:`TrainedModelWithoutCheckpointError` otherwise."""
    model.dataset_meta = meta_from_class_names(class_names, key)
    model._register_load_state_dict_pre_hook(_fill_from_self_when_no_checkpoint, with_module=True)
