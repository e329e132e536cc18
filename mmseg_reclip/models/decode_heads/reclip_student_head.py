"""Distillation student head: any backbone's features → ``F_s``, then the teacher's
frozen query embeddings, bias extractor and mask decoder (docs/method.md §7)."""
from typing import List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmseg.models.decode_heads.decode_head import BaseDecodeHead
from mmseg.registry import MODELS
from mmseg.utils import SampleList

from ..utils import dense_class_logits, freeze, hypothesis_multi_hot, rename_legacy_keys
from ..utils.class_set import ClassSetStateMixin
from .aspp_v2_head import ASPPV2  # noqa: F401  (registers the default feature module)
from .maskclip_head import normalize_class_names
from .reclip_head import check_moved_args, rectify, with_default_type

#: Frozen tensors of the head itself copied from the teacher (with every tensor of the
#: bias extractor and the mask decoder, see `ReCLIPStudentHead.inherited_keys`).
INHERITED_BUFFERS = ('query_embeds', 'name_to_class')

#: State-dict keys of the student head before it held the two modules (checkpoints
#: written until November 2026) -> the keys of today. ``decoder_bn_eps`` became the
#: BN module's ``eps`` (see `_load_from_state_dict`).
LEGACY_KEYS = {
    'reference': 'bias_extractor.reference',
    'pos_embed': 'bias_extractor.pos_embed',
    'pe_proj_weight': 'bias_extractor.pe_proj.weight',
    'pe_proj_bias': 'bias_extractor.pe_proj.bias',
    'decoder_weight': 'mask_decoder.conv.weight',
    'decoder_bias': 'mask_decoder.conv.bias',
    'decoder_bn_weight': 'mask_decoder.norm.weight',
    'decoder_bn_bias': 'mask_decoder.norm.bias',
    'decoder_bn_mean': 'mask_decoder.norm.running_mean',
    'decoder_bn_var': 'mask_decoder.norm.running_var',
}

#: The valid ``inherit`` settings of the student (paper Table IX rows, docs/method.md §11.8).
INHERIT_OPTIONS = ((), ('query', ), ('query', 'bias'), ('query', 'bias', 'decoder'))


def check_inherit(inherit: Sequence[str]) -> Tuple[str, ...]:
    """``inherit`` as a tuple in canonical order; a clear error for another combination."""
    order = ('query', 'bias', 'decoder')
    unknown = [k for k in inherit if k not in order]
    value = tuple(k for k in order if k in inherit)
    if unknown or value not in INHERIT_OPTIONS:
        raise ValueError(f'inherit={tuple(inherit)!r}: use one of {INHERIT_OPTIONS} (each adds '
                         'one inherited part on top of the previous one, paper Table IX).')
    return value


@MODELS.register_module()
class ReCLIPStudentHead(ClassSetStateMixin, BaseDecodeHead):
    """The distillation student's head (docs/method.md §7).

    Trainable: the feature module (``ASPPV2`` by default) and the 1x1 projection into
    the ``embed_dim``-d CLIP space; ``F_s = normalize(proj(feature_module(x)))``.
    Inherited from the stage-1 teacher and frozen (never in the optimizer, never given
    a gradient, saved in the student's checkpoint):

    - ``Q`` (``query_embeds`` ``[N, D]``, ``name_to_class`` ``[N]``),
    - a frozen copy of the teacher's bias extractor in its inherited mode
      (:class:`ReferenceBiasExtractor` without a text encoder: ``R``, CLIP's image PE
      grid and the PE projection); ``B = proj(resize(PE, grid_s))·Rᵀ`` is computed once
      per student grid size,
    - a frozen copy of the teacher's :class:`RectifiedMaskDecoder` (conv + BN; BN always
      uses its running statistics).

    The student therefore needs no CLIP model at all — not for inference, not for its
    checkpoint. Its checkpoint stores the class names (and the teacher's template set);
    loading one of other classes is an error. :meth:`load_from_teacher` copies the
    tensors from a stage-1 :class:`ReCLIPHead` (the :class:`ReCLIPDistiller` does it
    when it loads the teacher)::

        forward(): F_s = forward_features(x) -> decode(F_s)
                   (decode: mask_decoder(F_s, rectify(F_s·Qᵀ, bias_extractor(h, w))))
        loss():    forward_features() -> decode() -> mask_decoder.sample_masks()
                   -> the distillation losses

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
            (ReCLIP++, default), ``('query', 'bias')`` (``O = Lr``), ``('query',)``
            (``O = Lq``) or ``()`` ("Ori. head": a learnt 1x1 classifier ``conv_seg``
            on ``F_s``, nothing inherited is used). Everything is still copied from the
            teacher (the Gumbel masks of the text-guided loss use the decoder's scale).
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
        check_moved_args('ReCLIPStudentHead', kwargs)
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
        if self.inherit:
            del self.conv_seg  # the classifier is the inherited decoder
        else:  # "Ori. head" (Table IX): a learnt classifier on F_s
            self.conv_seg = nn.Conv2d(embed_dim, num_classes, 1)
        self.class_names = normalize_class_names(class_names)
        if len(self.class_names) != num_classes:
            raise ValueError(f'{len(self.class_names)} class names given for '
                             f'num_classes={num_classes}.')
        rectify(torch.zeros(1), torch.zeros(1), bias_mode)  # validate early
        self.bias_mode = bias_mode
        # Template set of the inherited Q (the teacher's); the student has none of its own.
        self.templates_id: Optional[str] = None
        self.embed_dim = embed_dim

        if feature_module is None:
            self.feature_module = nn.Identity()
        else:
            self.feature_module = MODELS.build(
                feature_module, default_args=dict(in_channels=self.in_channels, channels=channels))
        self.proj = nn.Conv2d(channels, embed_dim, 1)

        # Frozen copies of the teacher's two modules (filled by `load_from_teacher`).
        self.bias_extractor = freeze(
            MODELS.build(
                with_default_type(bias_extractor, 'ReferenceBiasExtractor'),
                default_args=dict(num_classes=num_classes, embed_dim=embed_dim, text_encoder=None)))
        self.mask_decoder = freeze(
            MODELS.build(
                with_default_type(mask_decoder, 'RectifiedMaskDecoder'),
                default_args=dict(
                    in_channels=embed_dim, num_classes=num_classes, norm_cfg=dict(type='BN'))))
        for module in (self.bias_extractor, self.mask_decoder):
            module.is_init = True  # filled from the teacher: mmengine's init skips them

        num_names = sum(len(names) for names in self.class_names)
        name_to_class = [c for c, names in enumerate(self.class_names) for _ in names]
        self.register_buffer('query_embeds', torch.zeros(num_names, embed_dim))
        self.register_buffer('name_to_class', torch.tensor(name_to_class, dtype=torch.long))
        self.register_buffer('inherited', torch.tensor(False))

    def inherited_keys(self) -> List[str]:
        """State-dict keys (without prefix) of every tensor inherited from the teacher."""
        keys = list(INHERITED_BUFFERS)
        for name in ('bias_extractor', 'mask_decoder'):
            keys += [
                f'{name}.{k}' for k in getattr(self, name).state_dict()
                if not k.endswith('num_batches_tracked')
            ]
        return keys

    # -- inheritance ----------------------------------------------------------------------
    @torch.no_grad()
    def load_from_teacher(self, teacher_head: nn.Module) -> None:
        """Copy ``Q``, the bias extractor (``R``, PE grid, PE projection) and the mask
        decoder from a stage-1 :class:`ReCLIPHead` (a frozen snapshot: later changes to
        the teacher do not reach the student)."""
        name = type(teacher_head).__name__
        if teacher_head.num_classes != self.num_classes:
            raise ValueError(f'The teacher predicts {teacher_head.num_classes} classes, the '
                             f'student head num_classes={self.num_classes}.')
        if [list(n) for n in teacher_head.class_names] != [list(n) for n in self.class_names]:
            raise ValueError('Teacher and student class names differ: give the student head '
                             'the class_names of the stage-1 config.\n  teacher: '
                             f'{teacher_head.class_names}\n  student: {self.class_names}')
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
        # Checkpoints of the student before it held the two modules (see LEGACY_KEYS).
        if rename_legacy_keys(state_dict, prefix, LEGACY_KEYS):
            state_dict.setdefault(prefix + 'mask_decoder.norm.num_batches_tracked',
                                  torch.tensor(0, dtype=torch.long))
        eps = state_dict.pop(prefix + 'decoder_bn_eps', None)
        if eps is not None:
            self.mask_decoder.norm.eps = float(eps)
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
        return dense_class_logits(feats, self.query_embeds, self.name_to_class, self.num_classes)

    def bias(self, size: Tuple[int, int], feats: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Bias logits ``B`` ``[C, h, w]`` for the student's grid; computed once per size
        by the frozen bias extractor (everything it depends on is frozen). An
        image-dependent extractor (conference ReCLIP) reads ``feats`` (``F_s``)."""
        return self.bias_extractor(tuple(size), feats=feats)

    def rectified_logits(self, feats: torch.Tensor) -> torch.Tensor:
        """``Lr`` ``[B, C, h, w]``: the student's query logits rectified by the bias."""
        return rectify(self.query_logits(feats), self.bias(feats.shape[-2:], feats), self.bias_mode)

    def decode(self, feats: torch.Tensor) -> torch.Tensor:
        """Inherited rectified mask decoder: ``BN(conv(concat(F_s, Lq − B)))`` (or less,
        see ``inherit``)."""
        self._check_inherited()
        if not self.inherit:  # Table IX "Ori. head"
            return self.conv_seg(feats)
        if 'bias' not in self.inherit:
            return self.query_logits(feats).float()
        if 'decoder' not in self.inherit:
            return self.rectified_logits(feats).float()
        return self.mask_decoder(feats, self.rectified_logits(feats))

    def forward(self, inputs: Tuple[torch.Tensor, ...]) -> torch.Tensor:
        return self.decode(self.forward_features(inputs))

    def sample_masks(self, logits: torch.Tensor) -> torch.Tensor:
        """Hard Gumbel-softmax masks ``[B, C, h, w]`` of the student (as in stage 1)."""
        return self.mask_decoder.sample_masks(logits)

    # -- distillation loss ----------------------------------------------------------------
    def _losses(self) -> List[nn.Module]:
        return list(self.loss_decode) if isinstance(self.loss_decode,
                                                    nn.ModuleList) else [self.loss_decode]

    def loss(self,
             inputs: Tuple[torch.Tensor, ...],
             batch_data_samples: SampleList,
             train_cfg: dict,
             teacher_outputs: Optional[dict] = None) -> dict:
        """Distillation losses (docs/method.md §7), one entry per configured loss.

        Args:
            inputs: backbone / neck features of the student.
            batch_data_samples: carry the crop-vote hypotheses (text-guided loss) and,
                for the valid (un-padded) image region, ``img_shape``.
            teacher_outputs (dict): from :meth:`ReCLIPDistiller.teacher_outputs`:
                ``target`` ``[B, H, W]`` long (teacher argmax at image size, ignore
                index outside the image) and ``feats`` ``[B, D, H, W]`` (teacher ``F``
                upsampled to image size), ``valid`` ``[B, H, W]`` bool.
        """
        if teacher_outputs is None:
            raise ValueError('ReCLIPStudentHead.loss needs the teacher outputs; train it '
                             'inside ReCLIPDistiller.')
        feats = self.forward_features(inputs)
        logits = self.decode(feats)
        losses = self._losses()
        hypothesis = None
        if any(getattr(loss, 'uses_hypothesis', False) for loss in losses):
            hypothesis = hypothesis_multi_hot(batch_data_samples, self.num_classes, feats.device)
        student = dict(
            student_feats=feats,
            student_logits=logits,
            student_masks=self.sample_masks(logits),
            queries=self.query_embeds,
            name_to_class=self.name_to_class,
            hypothesis=hypothesis,
            teacher_target=teacher_outputs.get('target'),
            teacher_feats=teacher_outputs.get('feats'),
            valid=teacher_outputs.get('valid'))
        out = {}
        for loss in losses:
            name = loss.loss_name
            value = loss(**student)
            out[name] = out[name] + value if name in out else value
        return out
