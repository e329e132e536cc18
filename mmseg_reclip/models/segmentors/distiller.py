"""ReCLIP++ stage 2: distil the frozen rectified CLIP (teacher) into any mmseg student."""
from typing import List, Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmseg.models.segmentors import EncoderDecoder
from mmseg.models.utils import resize
from mmseg.registry import MODELS
from mmseg.utils import SampleList, add_prefix

from ...crop_vote.hypothesis import hypothesis_multi_hot
from ..losses.distill_losses import DistillTargets
from ..utils import merge_clip_cfg
from ..utils.clip_dims import fill_student_dims
from ..utils.model_meta import set_model_meta
from .distill_teacher import DistillTeacher
from .maskclip import NO_PADDING
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

    The teacher (:class:`DistillTeacher`, ``distill_teacher``) is built from ``teacher``
    (the stage-1 model config) and loaded from ``teacher_checkpoint`` only when training
    needs it: in :meth:`init_weights` (which mmengine's Runner calls only when
    training), or at first use (:meth:`loss`, :meth:`global_class_scores`). It is
    frozen, is not a submodule (not in ``state_dict``, not in the optimizer, not wrapped
    by DDP) and follows the student's device. Building it also copies its inherited
    parts into the student head. A training step::

        distill_targets(): DistillTeacher.outputs (target, feats) | pseudo labels,
                           hypotheses -> DistillTargets
        decode_head.distill_loss(extract_feat(x), targets) -> losses

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
    training_free = False  # the student is trained: 'none' is refused

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
        # The config's one CLIP switch reaches the teacher (its own keys are overridden).
        if clip:
            teacher = teacher.copy()
            teacher['clip'] = {**(teacher.get('clip') or {}), **clip}
        # The student's inherited parts take their sizes from the teacher's CLIP.
        decode_head = fill_student_dims(
            decode_head, merge_clip_cfg(teacher.get('backbone'), teacher.get('clip')))
        super().__init__(
            backbone=backbone,
            decode_head=decode_head,
            neck=neck,
            train_cfg=train_cfg,
            test_cfg=test_cfg,
            data_preprocessor=data_preprocessor,
            pretrained=pretrained,
            init_cfg=init_cfg)
        self.clip_cfg = dict(clip) if clip else None
        # A plain object, so not a submodule: see DistillTeacher.
        self.distill_teacher = DistillTeacher(teacher, teacher_checkpoint)
        set_model_meta(self, self.decode_head.class_names, decode_head.get('class_names'))
        self.target = target
        self.init_prompt_denoise(pd_threshold, pd_temperature, pd_mode, pd_fallback)
        if student_input_norm is not None:
            mean = torch.tensor(student_input_norm['mean'], dtype=torch.float32)
            std = torch.tensor(student_input_norm['std'], dtype=torch.float32)
            self.register_buffer('student_mean', mean.view(-1, 1, 1), persistent=False)
            self.register_buffer('student_std', std.view(-1, 1, 1), persistent=False)
        self.student_input_norm = student_input_norm

    # -- teacher --------------------------------------------------------------------------
    @property
    def teacher_built(self) -> bool:
        return self.distill_teacher.built

    @property
    def teacher(self) -> nn.Module:
        """The frozen stage-1 model on the student's device; built, loaded and checked on
        first access, which also copies its inherited parts into the student head."""
        device = self.decode_head.query_embeds.device
        if not self.distill_teacher.built:
            classes = (getattr(self, 'dataset_meta', None) or {}).get('classes')
            teacher = self.distill_teacher.build(self.decode_head.class_names, classes)
            self.decode_head.load_from_teacher(teacher.to(device).decode_head)
        return self.distill_teacher.module(device)

    def init_weights(self) -> None:
        """Student init (e.g. ImageNet-pretrained backbone), then build the teacher.

        mmengine's Runner calls this only when training, so testing never needs CLIP.
        """
        super().init_weights()
        self.teacher  # noqa: B018  (build + load + inherit)

    @torch.no_grad()
    def global_class_scores(self, crops: torch.Tensor) -> torch.Tensor:
        """Crop-vote scores from the teacher (see :meth:`ReCLIP.global_class_scores`)."""
        return self.teacher.global_class_scores(crops)

    def distill_targets(self, inputs: torch.Tensor, data_samples: SampleList) -> DistillTargets:
        """What the student head's losses read (:attr:`ReCLIPStudentHead.target_fields`):
        the teacher's outputs on the batch, or the pseudo labels, and the hypotheses."""
        head = self.decode_head
        fields = head.target_fields
        self.teacher  # noqa: B018  (built and inherited before the student runs)
        valid = valid_region(data_samples, inputs.shape[-2:], inputs.device)
        online = self.target == 'online' and 'target' in fields
        targets = self.distill_teacher.outputs(inputs, valid, online, 'feats' in fields,
                                               head.ignore_index)
        if self.target == 'pseudo_label' and 'target' in fields:
            target = pseudo_label_batch(data_samples, inputs.shape[-2:], head.ignore_index)
            targets.target = target.to(inputs.device).masked_fill(~valid, head.ignore_index)
        if 'hypothesis' in fields:
            targets.hypothesis = hypothesis_multi_hot(data_samples, head.num_classes, inputs.device)
        return targets

    # -- student --------------------------------------------------------------------------
    def student_inputs(self, inputs: torch.Tensor) -> torch.Tensor:
        if self.student_input_norm is None:
            return inputs
        dp = self.data_preprocessor
        raw = inputs * dp.std.to(inputs) + dp.mean.to(inputs)
        return (raw - self.student_mean.to(inputs)) / self.student_std.to(inputs)

    def extract_feat(self, inputs: torch.Tensor) -> List[torch.Tensor]:
        return super().extract_feat(self.student_inputs(inputs))

    def seg_logits_from_grid(self,
                             logits: torch.Tensor,
                             size: Sequence[int],
                             padding: Sequence[int] = NO_PADDING) -> torch.Tensor:
        """Head logits ``[B, C, h, w]`` -> ``[B, C, *size]`` (bilinear, as mmseg's
        ``BaseDecodeHead.predict``; ``padding`` is unused: the student upsamples to the
        padded size, which ``postprocess_result`` crops). Shared with the bias report."""
        return resize(logits, size=tuple(size), mode='bilinear', align_corners=self.align_corners)

    def encode_decode(self, inputs: torch.Tensor, batch_img_metas: List[dict]) -> torch.Tensor:
        return self.seg_logits_from_grid(
            self.decode_head.forward(self.extract_feat(inputs)), inputs.shape[-2:])

    def loss(self, inputs: torch.Tensor, data_samples: SampleList) -> dict:
        """Distillation losses: the teacher online (no grad) on the same batch, then the
        student head's losses. No ground truth is read."""
        targets = self.distill_targets(inputs, data_samples)
        losses = self.decode_head.distill_loss(self.extract_feat(inputs), targets)
        return add_prefix(losses, 'decode')
