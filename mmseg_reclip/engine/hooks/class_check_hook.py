"""Refuse to run when the model's classes and the dataset's classes disagree."""
from typing import Optional

from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmseg.registry import HOOKS

from ...models.utils.class_set import check_same_classes


def check_num_classes(model, dataset, stage: str) -> None:
    """Raise :class:`ClassSetMismatchError` if ``dataset``'s class count differs from the
    model head's (the names may differ: a dataset's display names are not prompts)."""
    classes = (getattr(dataset, 'metainfo', None) or {}).get('classes')
    head = getattr(model, 'decode_head', None)
    names = getattr(head, 'class_names', None)
    if classes is None or names is None:
        return
    check_same_classes(
        classes,
        names,
        f'{stage} dataset ({type(dataset).__name__})',
        'model',
        names=False,
        fix='Use the class-name list of this dataset (e.g. `class_names=\'voc20\'`, '
        '`num_classes=20`): the configs take both from the dataset base config.')


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
