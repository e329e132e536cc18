"""Refuse to run when the model's classes and the dataset's classes disagree."""
from typing import Optional

from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmseg.registry import HOOKS


def check_num_classes(model, dataset, stage: str) -> None:
    """Raise ValueError if ``dataset``'s class count differs from the model head's."""
    classes = (getattr(dataset, 'metainfo', None) or {}).get('classes')
    head = getattr(model, 'decode_head', None)
    num_classes = getattr(head, 'num_classes', None)
    if classes is None or num_classes is None:
        return
    if len(classes) != num_classes:
        names = getattr(head, 'class_names', None)
        raise ValueError(
            f'The {stage} dataset ({type(dataset).__name__}) has {len(classes)} classes but '
            f'the model predicts {num_classes}'
            f'{f" (class names {[n[0] for n in names][:5]}...)" if names else ""}. '
            'Use the class-name list of this dataset (e.g. `class_names=\'voc20\'`, '
            "`num_classes=20`) — the configs take both from the dataset base config.")


@HOOKS.register_module()
class DatasetClassCheckHook(Hook):
    """Check, before training/validation/testing, that the dataset's class count matches
    ``model.decode_head.num_classes`` (and so the class-name list, checked at build)."""

    priority = 'VERY_HIGH'

    def _check(self, runner, loop: Optional[object], stage: str) -> None:
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        dataloader = getattr(loop, 'dataloader', None)
        if dataloader is not None:
            check_num_classes(model, dataloader.dataset, stage)

    def before_train(self, runner) -> None:
        self._check(runner, runner.train_loop, 'train')

    def before_val(self, runner) -> None:
        self._check(runner, runner.val_loop, 'val')

    def before_test(self, runner) -> None:
        self._check(runner, runner.test_loop, 'test')
