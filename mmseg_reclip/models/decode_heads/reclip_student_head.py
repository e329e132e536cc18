"""Distillation student head: any backbone's features → ``F_s``, then the teacher's
frozen query embeddings, bias extractor and mask decoder (docs/method.md §7)."""
from typing import List, Optional, Sequence, Set, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmseg.models.decode_heads.decode_head import BaseDecodeHead
from mmseg.registry import MODELS

from ..losses.distill_losses import DistillBatch, DistillTargets
from ..utils import dense_class_logits, freeze, name_map
from ..utils.class_set import ClassSetStateMixin, check_same_classes
from .aspp_v2_head import ASPPV2  # noqa: F401  (registers the default feature module)
from .maskclip_head import normalize_class_names
from .rectified_classifier import RectifiedClassifier

#: Frozen tensors of the head itself copied from the teacher (with every tensor of the
#: bias extractor and the mask decoder, see `ReCLIPStudentHead.inherited_keys`).
INHERITED_BUFFERS = ('query_embeds', 'name_to_class')

#: The valid ``inherit`` settings of the student (paper Table IX rows, docs/method.md §11.8)
#: and the classifier output each one uses (``None``: the "Ori. head", no classifier).
INHERIT_OUTPUTS = {
    (): None,
    ('query', ): 'Lq',
    ('query', 'bias'): 'Lr',
    ('query', 'bias', 'decoder'): 'O',
}


def check_inherit(inherit: Sequence[str]) -> Tuple[str, ...]:
    """``inherit`` as a tuple in canonical order; a clear error for another combination."""
    order = ('query', 'bias', 'decoder')
    unknown = [k for k in inherit if k not in order]
    value = tuple(k for k in order if k in inherit)
    if unknown or value not in INHERIT_OUTPUTS:
        raise ValueError(f'inherit={tuple(inherit)!r}: use one of {tuple(INHERIT_OUTPUTS)} (each '
                         'adds one inherited part on top of the previous one, paper Table IX).')
    return value


@MODELS.register_module()
class ReCLIPStudentHead(ClassSetStateMixin, BaseDecodeHead):
    """The distillation student's head (docs/method.md §7).

    Trainable: the feature module (``ASPPV2`` by default) and the 1x1 projection into
    the ``embed_dim``-d CLIP space; ``F_s = normalize(proj(feature_module(x)))``.
    Inherited from the stage-1 teacher and frozen (never in the optimizer, never given
    a gradient, saved in the student's checkpoint):

    - ``Q`` (``query_embeds`` ``[N, D]``, ``name_to_class`` ``[N]``),
    - a frozen copy of the teacher's :class:`RectifiedClassifier` (``classifier``): the
      bias extractor in its inherited mode (:class:`ReferenceBiasExtractor` without a
      text encoder: ``R``, CLIP's image PE grid and the PE projection;
      ``B = proj(resize(PE, grid_s))·Rᵀ`` is computed once per student grid size) and
      the :class:`RectifiedMaskDecoder` (conv + BN; BN always uses its running
      statistics).

    The student therefore needs no CLIP model at all — not for inference, not for its
    checkpoint. Its checkpoint stores the class names (and the teacher's template set);
    loading one of other classes is an error. :meth:`load_from_teacher` copies the
    tensors from a stage-1 :class:`ReCLIPHead` (the :class:`ReCLIPDistiller` does it
    when it loads the teacher)::

        forward(): F_s = forward_features(x) -> classifier(F_s)
        distill_loss(): forward_features() -> classifier() -> classifier.sample_masks()
                        -> DistillBatch -> the distillation losses

    Args:
        in_channels (int | list[int]): channels of the selected backbone / neck output(s).
        channels (int): output channels of the feature module (ASPP-V2: 512).
        num_classes (int): ``C``.
        class_names (str | list): as in :class:`MaskCLIPHead`; must equal the teacher's.
        embed_dim (int): ``D`` of CLIP's joint space (ViT-B/16: 512).
        feature_module (dict, optional): backbone features → ``channels`` (default
            ``ASPPV2``; ``in_channels``/``channels`` are filled in). ``None``: identity
            (the input must already have ``channels`` channels).
        bias_extractor (dict): the teacher's bias extractor type, in its inherited mode:
            ``pe_channels`` (CLIP image width, ViT-B/16: 768) and ``pe_grid`` (CLIP's PE
            grid, ViT-B/16 at 224 px: (14, 14)); ``num_classes``, ``embed_dim`` and
            ``text_encoder=None`` are filled in.
        mask_decoder (dict): the teacher's mask decoder type: ``kernel_size`` (5, must
            match the teacher), ``gumbel_scale``, ``gumbel_tau``, ``noise_seed`` (the
            hard Gumbel masks of the text-guided loss); ``in_channels`` (``embed_dim``),
            ``num_classes`` and ``norm_cfg`` (``BN``) are filled in.
        bias_mode (str): must match the teacher (``'subtract'``).
        inherit (tuple[str]): what the student's classifier uses of the inherited parts
            (paper Table IX, docs/method.md §11.8): ``('query', 'bias', 'decoder')``
            (ReCLIP++, default: ``O``), ``('query', 'bias')`` (the classifier's output
            is ``Lr``), ``('query',)`` (``Lq``) or ``()`` ("Ori. head": a learnt 1x1
            classifier ``conv_seg`` on ``F_s``; nothing inherited is used for the
            logits). Everything is still copied from the teacher (the hard masks of the
            text-guided loss are the mask decoder's ``sample_masks``).
        loss_decode (list[dict]): distillation losses, summed (see
            :mod:`mmseg_reclip.models.losses.distill_losses`).

    Shapes:
        ``forward``: backbone/neck features → decoder logits ``[B, C, h, w]``.
    """

    def __init__(self,
                 in_channels: Union[int, Sequence[int]],
                 channels: int = 512,
                 *,
                 num_classes: Optional[int] = None,
                 class_names: Union[str, Sequence],
                 embed_dim: int = 512,
                 feature_module: Optional[dict] = dict(type='ASPPV2', dilations=(6, 12, 18, 24)),
                 bias_extractor: dict = dict(
                     type='ReferenceBiasExtractor', pe_channels=768, pe_grid=(14, 14)),
                 mask_decoder: dict = dict(type='RectifiedMaskDecoder', kernel_size=5),
                 bias_mode: str = 'subtract',
                 inherit: Sequence[str] = ('query', 'bias', 'decoder'),
                 loss_decode=[
                     dict(type='MaskGuidedCELoss', loss_weight=1.0),
                     dict(type='FeatureGuidedL1Loss', loss_weight=0.5),
                     dict(type='TextGuidedContrastiveLoss', loss_weight=0.5)
                 ],
                 dropout_ratio: float = 0.0,
                 init_cfg: Optional[dict] = None,
                 **kwargs):
        if num_classes is None:  # one class per entry of the list / line of the file
            num_classes = len(normalize_class_names(class_names))
        super().__init__(
            in_channels,
            channels,
            num_classes=num_classes,
            dropout_ratio=dropout_ratio,
            loss_decode=loss_decode,
            init_cfg=init_cfg,
            **kwargs)
        self.inherit = check_inherit(inherit)
        output = INHERIT_OUTPUTS[self.inherit]
        if output is not None:
            del self.conv_seg  # the classifier is the inherited one
        else:  # "Ori. head" (Table IX): a learnt classifier on F_s
            self.conv_seg = nn.Conv2d(embed_dim, num_classes, 1)
        self.class_names = normalize_class_names(class_names)
        if len(self.class_names) != num_classes:
            raise ValueError(f'{len(self.class_names)} class names given for '
                             f'num_classes={num_classes}.')
        # Template set of the inherited Q (the teacher's); the student has none of its own.
        self.templates_id: Optional[str] = None
        self.embed_dim = embed_dim

        if feature_module is None:
            self.feature_module = nn.Identity()
        else:
            self.feature_module = MODELS.build(
                feature_module, default_args=dict(in_channels=self.in_channels, channels=channels))
        self.proj = nn.Conv2d(channels, embed_dim, 1)

        num_names = sum(len(names) for names in self.class_names)
        name_to_class = [c for c, names in enumerate(self.class_names) for _ in names]
        self.register_buffer('query_embeds', torch.zeros(num_names, embed_dim))
        self.register_buffer('name_to_class', torch.tensor(name_to_class, dtype=torch.long))
        self.register_buffer('inherited', torch.tensor(False))
        # A frozen copy of the teacher's classifier (filled by `load_from_teacher`).
        self.classifier = freeze(
            RectifiedClassifier(
                self.query_logits,
                num_classes,
                embed_dim,
                bias_extractor=bias_extractor,
                mask_decoder=mask_decoder,
                bias_mode=bias_mode,
                norm_cfg=dict(type='BN'),
                output=output or 'O'))
        self.classifier.is_init = True  # filled from the teacher: mmengine's init skips it

    @property
    def bias_extractor(self) -> nn.Module:
        return self.classifier.bias_extractor

    @property
    def mask_decoder(self) -> nn.Module:
        return self.classifier.mask_decoder

    @property
    def bias_mode(self) -> str:
        return self.classifier.bias_mode

    @property
    def name_map(self) -> Optional[torch.Tensor]:
        """``name_to_class`` for the synonym maximum, ``None`` with one name per class
        (see :func:`~mmseg_reclip.models.utils.clip_ops.name_map`)."""
        return name_map(self.name_to_class, self.num_classes)

    def inherited_keys(self) -> List[str]:
        """State-dict keys (without prefix) of every tensor inherited from the teacher."""
        return list(INHERITED_BUFFERS) + [
            f'classifier.{k}'
            for k in self.classifier.state_dict() if not k.endswith('num_batches_tracked')
        ]

    # -- inheritance ----------------------------------------------------------------------
    @torch.no_grad()
    def load_from_teacher(self, teacher_head: nn.Module) -> None:
        """Copy ``Q``, the bias extractor (``R``, PE grid, PE projection) and the mask
        decoder from a stage-1 :class:`ReCLIPHead` (a frozen snapshot: later changes to
        the teacher do not reach the student)."""
        name = type(teacher_head).__name__
        check_same_classes(
            teacher_head.class_names,
            self.class_names,
            'teacher',
            'student',
            fix='Give the student head the class_names of the stage-1 config.')
        if teacher_head.bias_mode != self.bias_mode:
            raise ValueError(f'bias_mode: teacher {teacher_head.bias_mode!r}, student '
                             f'{self.bias_mode!r}; they must match.')
        if type(teacher_head.mask_decoder) is not type(self.mask_decoder):
            raise TypeError(f'mask_decoder: teacher {type(teacher_head.mask_decoder).__name__}'
                            f', student {type(self.mask_decoder).__name__}; set the student\'s '
                            'mask_decoder type to the teacher\'s.')
        was_training = teacher_head.training
        teacher_head.eval()
        norm = getattr(teacher_head.mask_decoder, 'norm', None)  # None: no decoder (§11.2)
        if norm is not None and (not isinstance(norm, nn.modules.batchnorm._BatchNorm)
                                 or not norm.track_running_stats):
            raise TypeError(f'{name}.mask_decoder.norm must be a BatchNorm with running stats '
                            f'to be inherited, got {type(norm).__name__}.')
        queries = teacher_head.queries()
        if tuple(queries.shape) != tuple(self.query_embeds.shape):
            raise ValueError(f'Cannot inherit query_embeds: teacher shape '
                             f'{tuple(queries.shape)}, student {tuple(self.query_embeds.shape)}.'
                             " Set the student head's class_names (synonyms) and embed_dim "
                             'to match the teacher.')
        decoder_state = teacher_head.mask_decoder.state_dict()
        own = self.mask_decoder.state_dict()
        bad = [
            f'{k}: teacher {tuple(v.shape)}, student {tuple(own[k].shape)}'
            for k, v in decoder_state.items() if tuple(v.shape) != tuple(own[k].shape)
        ]
        if bad:
            raise ValueError('Cannot inherit the mask decoder (' + '; '.join(bad) + "). Set "
                             "the student's mask_decoder kernel_size, embed_dim and "
                             'num_classes to match the teacher.')
        self.bias_extractor.inherit(teacher_head.bias_extractor)
        self.mask_decoder.load_state_dict(decoder_state)
        if norm is not None:
            self.mask_decoder.norm.eps = norm.eps
        self.query_embeds.copy_(queries.detach().to(self.query_embeds.dtype))
        self.name_to_class.copy_(teacher_head.name_to_class)
        self.templates_id = getattr(teacher_head, 'templates_id', None)
        self.inherited.fill_(True)
        teacher_head.train(was_training)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # `inherited` may only be True with every inherited tensor loaded (mmengine's
        # non-strict load would keep the missing ones at zero with only a warning).
        lacking = [k for k in self.inherited_keys() if prefix + k not in state_dict]
        claims = state_dict.get(prefix + 'inherited')
        if lacking and claims is not None and bool(claims):
            raise ValueError(f'The checkpoint marks {prefix}inherited but lacks {lacking}: it is '
                             'incomplete. Use the full checkpoint written by the distillation run.')
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def _check_inherited(self) -> None:
        if not bool(self.inherited):
            raise RuntimeError(
                'ReCLIPStudentHead has not inherited the teacher\'s query embeddings, bias '
                'and mask decoder. Train it with ReCLIPDistiller (which copies them from the '
                'stage-1 teacher checkpoint) or load a distilled checkpoint.')

    # -- student features -----------------------------------------------------------------
    def forward_features(self, inputs: Tuple[torch.Tensor, ...]) -> torch.Tensor:
        """``F_s = normalize(proj(feature_module(x)))`` ``[B, D, h, w]``."""
        x = self._transform_inputs(inputs)
        x = self.feature_module(x)
        if self.dropout is not None:
            x = self.dropout(x)
        return F.normalize(self.proj(x), dim=1)

    # -- inherited, frozen parts ----------------------------------------------------------
    def queries(self) -> torch.Tensor:
        """Inherited ``Q`` ``[N, D]`` (same interface as :meth:`MaskCLIPHead.queries`)."""
        self._check_inherited()
        return self.query_embeds

    def query_logits(self, feats: torch.Tensor) -> torch.Tensor:
        """``Lq = F_s·Qᵀ`` ``[B, C, h, w]`` (max over synonyms)."""
        return dense_class_logits(feats, self.queries(), self.name_map, self.num_classes)

    def classify(self, feats: torch.Tensor) -> torch.Tensor:
        """Class logits ``[B, C, h, w]`` of ``F_s``: the frozen classifier's output
        (see ``inherit``), or the learnt ``conv_seg`` of the "Ori. head"."""
        self._check_inherited()
        if not self.inherit:
            return self.conv_seg(feats)
        return self.classifier(feats)

    def forward(self, inputs: Tuple[torch.Tensor, ...]) -> torch.Tensor:
        return self.classify(self.forward_features(inputs))

    # -- distillation loss ----------------------------------------------------------------
    @property
    def losses(self) -> List[nn.Module]:
        """The configured distillation losses."""
        loss = self.loss_decode
        return list(loss) if isinstance(loss, nn.ModuleList) else [loss]

    @property
    def target_fields(self) -> Set[str]:
        """The :class:`DistillTargets` fields the losses read (the distiller computes
        only those)."""
        return {field for loss in self.losses for field in loss.needs}

    def loss(self, inputs, batch_data_samples, train_cfg) -> dict:
        raise RuntimeError('ReCLIPStudentHead learns from a teacher: train it inside '
                           'ReCLIPDistiller (which calls distill_loss).')

    def distill_loss(self, inputs: Tuple[torch.Tensor, ...], targets: DistillTargets) -> dict:
        """Distillation losses (docs/method.md §7), one entry per configured loss name.

        Args:
            inputs: backbone / neck features of the student.
            targets (DistillTargets): from :meth:`ReCLIPDistiller.distill_targets`.
        """
        feats = self.forward_features(inputs)
        logits = self.classify(feats)
        batch = DistillBatch(
            feats=feats,
            logits=logits,
            masks=self.classifier.sample_masks(logits),
            queries=self.queries(),
            name_map=self.name_map,
            targets=targets)
        out = {}
        for loss in self.losses:
            value = loss(batch)
            out[loss.loss_name] = out[loss.loss_name] + value if loss.loss_name in out else value
        return out
