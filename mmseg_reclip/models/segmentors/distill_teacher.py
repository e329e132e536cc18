"""The frozen stage-1 teacher of a distillation run: build, load, validate, outputs."""
import os.path as osp
import pickle
from typing import Optional, Sequence, Tuple

import torch
import torch.nn as nn
from mmengine.logging import print_log
from mmengine.model.utils import revert_sync_batchnorm
from mmengine.registry import DefaultScope
from mmengine.runner.checkpoint import _load_checkpoint, load_state_dict
from mmseg.registry import MODELS

from ...compat import UnsafeCheckpointError
from ..losses.distill_losses import DistillTargets
from ..utils import freeze
from ..utils.class_set import ClassSetMismatchError, check_same_classes, decode_class_set
from .maskclip import logits_to_input_size

__all__ = ['DistillTeacher']

_STAGE1 = ('python tools/train.py configs/reclip/reclip_vit-b16_<dataset>.py '
           '(it writes work_dirs/reclip_vit-b16_<dataset>/iter_20000.pth)')


class DistillTeacher:
    """The frozen stage-1 model a distillation student learns from (docs/method.md §7).

    A plain object, not an ``nn.Module``: the :class:`ReCLIPDistiller` holding it does
    not register it, so the teacher is not in the student's ``state_dict``, not in the
    optimizer and not wrapped (or synchronised) by DDP, without any ``__dict__`` trick.
    The teacher model is built and loaded on first use (:meth:`build`), frozen (no
    gradient, eval mode) and follows the student's device (:meth:`module`).

    Args:
        cfg (dict): the stage-1 model config (``type='ReCLIP'``).
        checkpoint (str, optional): the stage-1 checkpoint (required to build).
    """

    def __init__(self, cfg: dict, checkpoint: Optional[str]):
        self.cfg = cfg
        self.checkpoint = checkpoint
        self._model: Optional[nn.Module] = None

    @property
    def built(self) -> bool:
        return self._model is not None

    def module(self, device: torch.device) -> nn.Module:
        """The built teacher model on ``device`` (see :meth:`build`)."""
        if self._model is None:
            raise RuntimeError('The distillation teacher is not built yet (DistillTeacher.build).')
        if next(iter(self._model.buffers())).device != device:
            self._model.to(device)
        return self._model

    def build(self,
              class_names: Sequence[Sequence[str]],
              dataset_classes: Optional[Sequence[str]] = None) -> nn.Module:
        """Build the stage-1 model, load the checkpoint (``weights_only``, the project's
        loader), check that it was trained for ``class_names`` (the student's; and for
        ``dataset_classes``, the display names of the student's dataset), freeze it."""
        state, meta = self._read_checkpoint()
        self._check_classes(state, meta, class_names, dataset_classes)
        print_log(f'Building the distillation teacher from {self.checkpoint}', logger='current')
        with DefaultScope.overwrite_default_scope('mmseg'):
            teacher = MODELS.build(self.cfg)
        teacher = revert_sync_batchnorm(teacher)  # frozen: BN only uses running stats
        # Frozen CLIP is not saved (freeze(save_weights=False)): everything else must be.
        missing = sorted(
            k for k in set(teacher.state_dict()) - set(state) if not k.endswith('_extra_state'))
        if missing:
            raise ValueError(f'Teacher checkpoint {self.checkpoint!r} lacks {missing[:6]} (of '
                             f'{len(missing)}): it does not fit model.teacher (a stage-1 ReCLIP '
                             'config with the same settings is needed).')
        try:
            load_state_dict(teacher, state, strict=False, logger='current')
        except ClassSetMismatchError as err:
            raise ClassSetMismatchError(f'Teacher checkpoint {self.checkpoint!r} does not fit '
                                        f'model.teacher: {err}') from None
        self._model = freeze(teacher)
        return self._model

    def _read_checkpoint(self) -> Tuple[dict, dict]:
        """``(state_dict, meta)`` of the checkpoint, with clear errors for a missing,
        truncated or unsafe file."""
        path = self.checkpoint
        if not path:
            raise ValueError('ReCLIPDistiller needs model.teacher_checkpoint: the stage-1 '
                             f'checkpoint. Produce it with `{_STAGE1}` and pass '
                             '--cfg-options model.teacher_checkpoint=PATH.')
        if '://' not in path and not osp.isfile(path):
            raise FileNotFoundError(
                f'Teacher checkpoint not found: {osp.abspath(path)!r} '
                f'(model.teacher_checkpoint={path!r}). Train the stage-1 ReCLIP model first '
                f'with `{_STAGE1}`, or point model.teacher_checkpoint at it '
                '(--cfg-options model.teacher_checkpoint=PATH).')
        try:
            checkpoint = _load_checkpoint(path, map_location='cpu')
        except UnsafeCheckpointError:
            raise  # already one line naming the file and the refused global
        except (RuntimeError, EOFError, OSError, pickle.UnpicklingError) as err:
            reason = (str(err).strip().splitlines() or [''])[0][:200]
            raise ValueError(f'Cannot read the teacher checkpoint {osp.abspath(path)!r} '
                             f'({type(err).__name__}: {reason}). It is truncated or not a PyTorch '
                             'checkpoint: copy it again, or re-run stage 1 to write it.') from err
        state = checkpoint.get('state_dict', checkpoint)
        state = {k[len('module.'):] if k.startswith('module.') else k: v for k, v in state.items()}
        return state, checkpoint.get('meta') or {}

    def _check_classes(self, state: dict, meta: dict, class_names: Sequence[Sequence[str]],
                       dataset_classes: Optional[Sequence[str]]) -> None:
        """The checkpoint's stored class set and the classes of the dataset it was trained
        on (``meta.dataset_meta``) against the student's."""
        fix = 'Use the stage-1 checkpoint of the same dataset and class names.'
        subject = f'Teacher checkpoint {self.checkpoint!r} does not match the student config: it'
        stored = state.get('decode_head._extra_state')
        if stored is not None:
            check_same_classes(
                decode_class_set(stored)['class_names'],
                class_names,
                subject=subject + ' was trained for',
                fix=fix)
        trained_on = (meta.get('dataset_meta') or {}).get('classes')
        if trained_on is not None:
            check_same_classes(
                trained_on, class_names, subject=subject + "'s dataset has", fix=fix, names=False)
            # display names: the student's first names, or its dataset's own
            if (dataset_classes is not None
                    and tuple(trained_on) != tuple(names[0] for names in class_names)):
                check_same_classes(
                    trained_on,
                    dataset_classes,
                    expected_label='dataset',
                    subject=subject + "'s dataset has",
                    fix=fix)

    # -- outputs --------------------------------------------------------------------------
    @torch.no_grad()
    def outputs(self, inputs: torch.Tensor, valid: torch.Tensor, need_target: bool,
                need_feats: bool, ignore_index: int) -> DistillTargets:
        """The teacher on the (CLIP-normalised) batch ``[B, 3, H, W]``, at input size.

        Returns:
            DistillTargets: ``target`` ``[B, H, W]`` long (argmax of the teacher's logits
            upsampled bilinearly; ``ignore_index`` where ``valid`` is False) when
            ``need_target``; ``feats`` ``[B, D, H, W]`` (the teacher's ``F`` upsampled
            bilinearly) when ``need_feats``; ``valid`` as given.
        """
        targets = DistillTargets(valid=valid)
        if not (need_feats or need_target):
            return targets
        teacher = self.module(inputs.device)
        x = teacher.extract_feat(inputs)
        size = inputs.shape[-2:]
        patch = getattr(teacher.backbone, 'patch_size', None)
        if need_target:
            logits = teacher.decode_head.forward(x)
            target = logits_to_input_size(logits, size, patch, teacher.align_corners).argmax(dim=1)
            targets.target = target.masked_fill(~valid, ignore_index)
        if need_feats:
            targets.feats = logits_to_input_size(x[0], size, patch, teacher.align_corners)
        return targets
