"""ReCLIP++ stage 2: distil the frozen rectified CLIP (teacher) into any mmseg student."""
import os.path as osp
import pickle
from typing import List, Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.logging import print_log
from mmengine.model.utils import revert_sync_batchnorm
from mmengine.registry import DefaultScope
from mmengine.runner.checkpoint import _load_checkpoint, load_state_dict
from mmseg.models.segmentors import EncoderDecoder
from mmseg.registry import MODELS
from mmseg.utils import SampleList, add_prefix

from ...compat import UnsafeCheckpointError
from ..decode_heads.reclip_head import upgrade_legacy_state_dict
from ..utils import freeze
from ..utils.class_set import ClassSetMismatchError, check_class_set, decode_class_set
from ..utils.model_meta import set_model_meta
from .maskclip import logits_to_input_size
from .prompt_denoise import PromptDenoiseMixin


def valid_region(data_samples: SampleList, size: Sequence[int],
                 device: torch.device) -> torch.Tensor:
    """``[B, H, W]`` bool: True on each sample's image, False on batch padding.

    The data preprocessor pads bottom/right; each sample's ``img_shape`` is its
    unpadded size.
    """
    mask = torch.zeros((len(data_samples), ) + tuple(size), dtype=torch.bool, device=device)
    for i, sample in enumerate(data_samples):
        h, w = sample.metainfo.get('img_shape', size)[:2]
        mask[i, :h, :w] = True
    return mask


def pseudo_label_batch(data_samples: SampleList, size: Sequence[int],
                       ignore_index: int) -> torch.Tensor:
    """The pseudo labels packed by :class:`PackPseudoLabelInputs`, padded to ``size``.

    Reads each sample's ``pseudo_sem_seg`` (never ``gt_sem_seg``), padded on the
    bottom/right with ``ignore_index`` as the data preprocessor pads the images.

    Args:
        data_samples (list[SegDataSample]): samples with ``pseudo_sem_seg`` ``[1, h, w]``
            and the ``pseudo_label_path`` meta key.
        size (Sequence[int]): batch input size ``(H, W)``.
        ignore_index (int): fill value of the padding.

    Returns:
        Tensor: ``[B, H, W]`` long.
    """
    targets = []
    for sample in data_samples:
        if 'pseudo_label_path' not in sample.metainfo or 'pseudo_sem_seg' not in sample:
            raise KeyError(
                "model.target='pseudo_label' needs LoadPseudoLabel and PackPseudoLabelInputs "
                'in the train pipeline (see '
                'configs/reclip/reclip-distill_deeplabv2-r101_voc_offline.py).')
        label = sample.pseudo_sem_seg.data[0].long()
        pad_h, pad_w = size[0] - label.shape[0], size[1] - label.shape[1]
        targets.append(F.pad(label, (0, pad_w, 0, pad_h), value=ignore_index))
    return torch.stack(targets)


@MODELS.register_module()
class ReCLIPDistiller(PromptDenoiseMixin, EncoderDecoder):
    """ReCLIP++ distillation (docs/method.md §7): an mmseg student learns from the frozen
    stage-1 ReCLIP model.

    The student is an ordinary encoder-decoder: ``backbone`` (+ ``neck``) + a
    :class:`ReCLIPStudentHead`. Its checkpoint holds the student and the frozen parts
    it inherits from the teacher (``Q``, ``R``, PE grid + projection, mask decoder), so
    ``tools/test.py`` runs it with no CLIP weights at all.

    The teacher is built from ``teacher`` (the stage-1 model config) and loaded from
    ``teacher_checkpoint`` only when training needs it: in :meth:`init_weights` (which
    mmengine's Runner calls only when training), or at first use (:meth:`loss`,
    :meth:`global_class_scores`). It is frozen (no gradient, eval mode), is not a
    registered submodule (not in ``state_dict``, not in the optimizer, not wrapped by
    DDP) and follows the student's device. Building it also copies its inherited parts
    into the student head.

    Input normalisation: the data preprocessor normalises with CLIP's mean/std (the
    teacher and the crop-vote hook need CLIP inputs). ``student_input_norm`` (e.g.
    ImageNet's mean/std for an ImageNet-pretrained backbone) re-normalises the same
    batch for the student: ``x_s = (x·std_clip + mean_clip − mean_s) / std_s``; ``None``
    feeds the student the CLIP-normalised batch. Both see the same augmented pixels.

    Args:
        backbone, neck, decode_head, train_cfg, test_cfg, data_preprocessor, init_cfg:
            the student, as in :class:`mmseg.models.EncoderDecoder`.
        teacher (dict): stage-1 model config (``type='ReCLIP'``).
        teacher_checkpoint (str): stage-1 checkpoint (e.g.
            ``work_dirs/reclip_vit-b16_voc/iter_20000.pth``).
        clip (dict, optional): the teacher's CLIP (``model_name``, ``pretrained``, ...),
            merged over ``teacher['clip']``: ``--cfg-options model.clip.pretrained=FILE``
            switches the teacher's (and so the crop-vote hook's) CLIP.
        student_input_norm (dict, optional): ``mean``/``std`` (RGB, 0-255) of the student.
        target (str): ``'online'`` — the CE target is the teacher's argmax on the batch;
            ``'pseudo_label'`` — offline mode: the CE target is the pseudo-label PNG
            loaded by :class:`LoadPseudoLabel` (written once by
            ``tools/generate_pseudo_labels.py``); the teacher still runs when a loss
            needs its features (feature-guided L1).
        pd_threshold (float, optional): test-time prompt denoising (off for
            distillation, docs/method.md §8); with ``pd_temperature`` and ``pd_fallback`` as in
            :class:`MaskCLIP` (``pd_mode='upsampled'`` only: the student has no
            released grid-level variant).
    """

    #: prompt denoising on the upsampled logits only (no released grid-level variant)
    pd_modes = ('upsampled', )

    def __init__(self,
                 backbone: dict,
                 decode_head: dict,
                 teacher: dict,
                 teacher_checkpoint: Optional[str] = None,
                 clip: Optional[dict] = None,
                 neck: Optional[dict] = None,
                 auxiliary_head: Optional[dict] = None,
                 student_input_norm: Optional[dict] = None,
                 target: str = 'online',
                 pd_threshold: Optional[float] = None,
                 pd_temperature: float = 10.0,
                 pd_mode: str = 'upsampled',
                 pd_fallback: bool = True,
                 train_cfg: Optional[dict] = None,
                 test_cfg: Optional[dict] = None,
                 data_preprocessor: Optional[dict] = None,
                 pretrained: Optional[str] = None,
                 init_cfg: Optional[dict] = None):
        if auxiliary_head is not None:
            raise ValueError('ReCLIPDistiller takes no auxiliary_head: auxiliary heads '
                             'train on ground truth, and distillation uses none.')
        if target not in ('online', 'pseudo_label'):
            raise ValueError(f"target must be 'online' or 'pseudo_label', got {target!r}")
        super().__init__(
            backbone=backbone,
            decode_head=decode_head,
            neck=neck,
            train_cfg=train_cfg,
            test_cfg=test_cfg,
            data_preprocessor=data_preprocessor,
            pretrained=pretrained,
            init_cfg=init_cfg)
        # The config's one CLIP switch reaches the teacher (its own keys are overridden).
        if clip:
            teacher = teacher.copy()
            teacher['clip'] = {**(teacher.get('clip') or {}), **clip}
        self.clip_cfg = dict(clip) if clip else None
        self.teacher_cfg = teacher
        set_model_meta(self, self.decode_head.class_names, decode_head.get('class_names'))
        self.teacher_checkpoint = teacher_checkpoint
        self.target = target
        self.init_prompt_denoise(pd_threshold, pd_temperature, pd_mode, pd_fallback)
        if student_input_norm is not None:
            mean = torch.tensor(student_input_norm['mean'], dtype=torch.float32)
            std = torch.tensor(student_input_norm['std'], dtype=torch.float32)
            self.register_buffer('student_mean', mean.view(-1, 1, 1), persistent=False)
            self.register_buffer('student_std', std.view(-1, 1, 1), persistent=False)
        self.student_input_norm = student_input_norm
        # Not a registered submodule (see the class docstring).
        self.__dict__['_teacher'] = None

    # -- teacher --------------------------------------------------------------------------
    @property
    def teacher_built(self) -> bool:
        return self.__dict__['_teacher'] is not None

    @property
    def teacher(self) -> nn.Module:
        """The frozen stage-1 model (built and loaded on first access)."""
        if self.__dict__['_teacher'] is None:
            self.__dict__['_teacher'] = self.build_teacher()
        teacher = self.__dict__['_teacher']
        device = self.decode_head.query_embeds.device
        if next(iter(teacher.buffers())).device != device:
            teacher.to(device)
        return teacher

    def build_teacher(self) -> nn.Module:
        """Build the stage-1 model, load ``teacher_checkpoint``, freeze it and copy its
        inherited parts into the student head."""
        path = self.teacher_checkpoint
        stage1 = ('python tools/train.py configs/reclip/reclip_vit-b16_<dataset>.py '
                  '(it writes work_dirs/reclip_vit-b16_<dataset>/iter_20000.pth)')
        if not path:
            raise ValueError('ReCLIPDistiller needs model.teacher_checkpoint: the stage-1 '
                             f'checkpoint. Produce it with `{stage1}` and pass '
                             '--cfg-options model.teacher_checkpoint=PATH.')
        if '://' not in path and not osp.isfile(path):
            raise FileNotFoundError(
                f'Teacher checkpoint not found: {osp.abspath(path)!r} '
                f'(model.teacher_checkpoint={path!r}). Train the stage-1 ReCLIP model first '
                f'with `{stage1}`, or point model.teacher_checkpoint at it '
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
        upgrade_legacy_state_dict(state)  # stage-1 checkpoints of the old head layout
        self._check_teacher_checkpoint(path, state, checkpoint.get('meta') or {})
        print_log(f'Building the distillation teacher from {path}', logger='current')
        with DefaultScope.overwrite_default_scope('mmseg'):
            teacher = MODELS.build(self.teacher_cfg)
        teacher = revert_sync_batchnorm(teacher)  # frozen: BN only uses running stats
        # Frozen CLIP is not saved; the class-set record is absent from old checkpoints.
        missing = sorted(
            k for k in set(teacher.state_dict()) - set(state) if not k.endswith('_extra_state'))
        if missing:
            raise ValueError(f'Teacher checkpoint {path!r} lacks {missing[:6]} (of '
                             f'{len(missing)}): it does not fit model.teacher (a stage-1 '
                             'ReCLIP config with the same settings is needed).')
        try:
            load_state_dict(teacher, state, strict=False, logger='current')
        except ClassSetMismatchError as err:
            raise ClassSetMismatchError(f'Teacher checkpoint {path!r} does not fit '
                                        f'model.teacher: {err}') from None
        teacher = freeze(teacher)
        teacher.to(self.decode_head.query_embeds.device)
        self.decode_head.load_from_teacher(teacher.decode_head)
        return teacher

    def _check_teacher_checkpoint(self, path: str, state: dict, meta: dict) -> None:
        head = self.decode_head
        stored = state.get('decode_head._extra_state')
        if stored is not None:  # checkpoints store their class names (see class_set.py)
            try:
                check_class_set(
                    decode_class_set(stored),
                    head.class_names,
                    None,
                    'student decode_head',
                    check_templates=False)
            except ClassSetMismatchError as err:
                raise ClassSetMismatchError(
                    f'Teacher checkpoint {path!r} does not match the student: '
                    f'{err}') from None
        errors = []
        conv = state.get('decode_head.mask_decoder.conv.weight')
        # A teacher without a mask decoder (conference ReCLIP, docs/method.md §11.2) has
        # no conv: its learnt Reference context marks a stage-1 checkpoint instead.
        stage1 = conv is not None or 'decode_head.bias_extractor.context' in state
        if not stage1:
            raise ValueError(f'{path!r} is not a stage-1 ReCLIP checkpoint (no '
                             'decode_head.mask_decoder.conv.weight).')
        if conv is not None and conv.shape[0] != head.num_classes:
            errors.append(f'the teacher predicts {conv.shape[0]} classes, the student '
                          f'num_classes={head.num_classes}')
        queries = state.get('decode_head.query_embeds')
        if queries is not None and tuple(queries.shape) != tuple(head.query_embeds.shape):
            errors.append(f'teacher query embeddings {tuple(queries.shape)} vs student '
                          f'{tuple(head.query_embeds.shape)} (class names / synonyms / '
                          'embed_dim differ)')
        name_to_class = state.get('decode_head.name_to_class')
        if (name_to_class is not None and queries is not None and not errors
                and not torch.equal(name_to_class.cpu(), head.name_to_class.cpu())):
            errors.append('the teacher groups its class names differently (synonyms)')
        classes = (meta.get('dataset_meta') or {}).get('classes')
        if classes is not None and len(classes) != head.num_classes:
            errors.append(f'the teacher was trained on a dataset with {len(classes)} classes '
                          f'({list(classes)[:5]}...), the student has {head.num_classes}')
        dataset_meta = getattr(self, 'dataset_meta', None) or {}
        # the dataset's display names (what the runner saves) or the first class names
        known = {tuple(n[0] for n in head.class_names)}
        if dataset_meta.get('classes') is not None:
            known.add(tuple(dataset_meta['classes']))
        if (classes is not None and dataset_meta.get('classes') is not None
                and tuple(classes) not in known):
            errors.append(f'teacher classes {tuple(classes)} differ from the dataset\'s '
                          f'{tuple(dataset_meta["classes"])}')
        teacher_head = self.teacher_cfg.get('decode_head', {})
        # num_classes=None: taken from the class names (checked with them above)
        if teacher_head.get('num_classes') not in (None, head.num_classes):
            errors.append(f'model.teacher.decode_head.num_classes='
                          f'{teacher_head.get("num_classes")} but the student has '
                          f'{head.num_classes}')
        if errors:
            raise ValueError(f'Teacher checkpoint {path!r} does not match this distillation '
                             'config: ' + '; '.join(errors) + '. Use the stage-1 checkpoint '
                             'of the same dataset and class names.')

    def init_weights(self) -> None:
        """Student init (e.g. ImageNet-pretrained backbone), then build the teacher.

        mmengine's Runner calls this only when training, so testing never needs CLIP.
        """
        super().init_weights()
        self.teacher  # noqa: B018  (build + load + inherit)

    # -- teacher outputs ------------------------------------------------------------------
    @torch.no_grad()
    def global_class_scores(self, crops: torch.Tensor) -> torch.Tensor:
        """Crop-vote scores from the teacher (see :meth:`ReCLIP.global_class_scores`)."""
        return self.teacher.global_class_scores(crops)

    @torch.no_grad()
    def teacher_outputs(self,
                        inputs: torch.Tensor,
                        data_samples: SampleList,
                        need_feats: bool = True,
                        need_target: bool = True) -> dict:
        """The frozen teacher on the (CLIP-normalised) batch, at image size.

        Returns:
            dict: ``target`` ``[B, H, W]`` long (argmax of the teacher's logits upsampled
            bilinearly to the input size; ``ignore_index`` on batch padding), ``feats``
            ``[B, D, H, W]`` (teacher ``F`` upsampled bilinearly), ``valid`` ``[B, H, W]``.
        """
        size = inputs.shape[-2:]
        valid = valid_region(data_samples, size, inputs.device)
        out = dict(valid=valid, target=None, feats=None)
        if not (need_feats or need_target):
            return out
        teacher = self.teacher
        x = teacher.extract_feat(inputs)
        patch = getattr(teacher.backbone, 'patch_size', None)
        align = teacher.align_corners
        if need_target:
            logits = teacher.decode_head.forward(x)
            target = logits_to_input_size(logits, size, patch, align).argmax(dim=1)
            out['target'] = target.masked_fill(~valid, self.decode_head.ignore_index)
        if need_feats:
            out['feats'] = logits_to_input_size(x[0], size, patch, align)
        return out

    def pseudo_label_target(self, data_samples: SampleList, size: Sequence[int]) -> torch.Tensor:
        """Offline CE target ``[B, H, W]``: see :func:`pseudo_label_batch`."""
        return pseudo_label_batch(data_samples, size, self.decode_head.ignore_index)

    # -- student --------------------------------------------------------------------------
    def student_inputs(self, inputs: torch.Tensor) -> torch.Tensor:
        if self.student_input_norm is None:
            return inputs
        dp = self.data_preprocessor
        raw = inputs * dp.std.to(inputs) + dp.mean.to(inputs)
        return (raw - self.student_mean.to(inputs)) / self.student_std.to(inputs)

    def extract_feat(self, inputs: torch.Tensor) -> List[torch.Tensor]:
        return super().extract_feat(self.student_inputs(inputs))

    def loss(self, inputs: torch.Tensor, data_samples: SampleList) -> dict:
        """Distillation losses: teacher online (no grad) on the same batch, then the
        student head's losses. No ground truth is read."""
        self.teacher  # noqa: B018  (built and inherited before the student runs)
        need_feats = any(
            getattr(loss, 'needs_teacher_feats', False) for loss in self.decode_head._losses())
        need_target = self.target == 'online'
        teacher_out = self.teacher_outputs(inputs, data_samples, need_feats, need_target)
        if self.target == 'pseudo_label':
            target = self.pseudo_label_target(data_samples, inputs.shape[-2:]).to(inputs.device)
            teacher_out['target'] = target.masked_fill(~teacher_out['valid'],
                                                       self.decode_head.ignore_index)
        x = self.extract_feat(inputs)
        head_losses = self.decode_head.loss(x, data_samples, self.train_cfg, teacher_out)
        return add_prefix(head_losses, 'decode')
