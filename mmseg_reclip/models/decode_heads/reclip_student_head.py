"""Distillation student head: any backbone's features → ``F_s``, then the teacher's
frozen query head, bias and mask decoder (method §7)."""
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmseg.models.decode_heads.decode_head import BaseDecodeHead
from mmseg.registry import MODELS
from mmseg.utils import SampleList

from ..utils import (autocast_off, dense_class_logits, gumbel_softmax_hard,
                     resize_pos_embed_grid, step_generator)
from ..utils.class_set import ClassSetStateMixin
from .aspp_v2_head import ASPPV2  # noqa: F401  (registers the default feature module)
from .maskclip_head import normalize_class_names
from .reclip_head import bias_logits, hypothesis_multi_hot, rectify

# Frozen tensors copied from the teacher's ReCLIPHead (see `load_from_teacher`).
INHERITED_BUFFERS = ('query_embeds', 'name_to_class', 'reference', 'pos_embed',
                     'pe_proj_weight', 'pe_proj_bias', 'decoder_weight', 'decoder_bias',
                     'decoder_bn_weight', 'decoder_bn_bias', 'decoder_bn_mean',
                     'decoder_bn_var', 'decoder_bn_eps')


@MODELS.register_module()
class ReCLIPStudentHead(ClassSetStateMixin, BaseDecodeHead):
    """The distillation student's head (method §7).

    Trainable: the feature module (``ASPPV2`` by default) and the 1x1 projection into
    the ``embed_dim``-d CLIP space; ``F_s = normalize(proj(feature_module(x)))``.
    Inherited from the stage-1 teacher and frozen (plain buffers: never in the
    optimizer, never given a gradient, saved in the student's checkpoint):

    - ``Q`` (``query_embeds`` ``[N, D]``, ``name_to_class`` ``[N]``),
    - the bias: ``R`` (``reference`` ``[C, D]``), CLIP's image PE grid (``pos_embed``
      ``[pe_channels, gh, gw]``) and the PE projection (``pe_proj_weight/bias``);
      ``B = proj(resize(PE, grid_s))·Rᵀ`` is computed once per student grid size,
    - the mask decoder conv (weight, bias) and BN (weight, bias, running stats, eps);
      BN always uses its running statistics.

    The student therefore needs no CLIP model at all — not for inference, not for its
    checkpoint. Its checkpoint stores the class names (and the teacher's template set);
    loading one of other classes is an error. :meth:`load_from_teacher` copies the
    tensors from a stage-1 :class:`ReCLIPHead` (the :class:`ReCLIPDistiller` does it
    when it loads the teacher).

    Args:
        in_channels (int | list[int]): channels of the selected backbone / neck output(s).
        channels (int): output channels of the feature module (ASPP-V2: 512).
        num_classes (int): ``C``.
        class_names (str | list): as in :class:`MaskCLIPHead`; must equal the teacher's.
        embed_dim (int): ``D`` of CLIP's joint space (ViT-B/16: 512).
        pe_channels (int): width of CLIP's image tower, the PE channels (ViT-B/16: 768).
        pe_grid (tuple[int]): CLIP's PE grid (ViT-B/16 at 224 px: (14, 14)).
        feature_module (dict, optional): backbone features → ``channels`` (default
            ``ASPPV2``; ``in_channels``/``channels`` are filled in). ``None``: identity
            (the input must already have ``channels`` channels).
        bias_mode (str): must match the teacher (``'subtract'``).
        decoder_kernel (int): must match the teacher's decoder conv (5).
        gumbel_scale, gumbel_tau, noise_seed: hard Gumbel masks of the text-guided loss,
            as in :class:`ReCLIPHead`.
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
                 pe_channels: int = 768,
                 pe_grid: Sequence[int] = (14, 14),
                 feature_module: Optional[dict] = dict(
                     type='ASPPV2', dilations=(6, 12, 18, 24)),
                 bias_mode: str = 'subtract',
                 decoder_kernel: int = 5,
                 gumbel_scale: float = 100.0,
                 gumbel_tau: float = 1.0,
                 noise_seed: Optional[int] = None,
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
        del self.conv_seg  # the classifier is the inherited decoder
        self.class_names = normalize_class_names(class_names)
        if len(self.class_names) != num_classes:
            raise ValueError(f'{len(self.class_names)} class names given for '
                             f'num_classes={num_classes}.')
        rectify(torch.zeros(1), torch.zeros(1), bias_mode)  # validate early
        self.bias_mode = bias_mode
        # Template set of the inherited Q (the teacher's); the student has none of its own.
        self.templates_id: Optional[str] = None
        self.embed_dim = embed_dim
        self.decoder_kernel = decoder_kernel
        self.gumbel_scale = gumbel_scale
        self.gumbel_tau = gumbel_tau
        self.noise_seed = noise_seed

        if feature_module is None:
            self.feature_module = nn.Identity()
        else:
            self.feature_module = MODELS.build(
                feature_module,
                default_args=dict(in_channels=self.in_channels, channels=channels))
        self.proj = nn.Conv2d(channels, embed_dim, 1)

        num_names = sum(len(names) for names in self.class_names)
        name_to_class = [c for c, names in enumerate(self.class_names) for _ in names]
        gh, gw = pe_grid
        k = decoder_kernel
        shapes = dict(
            query_embeds=(num_names, embed_dim),
            reference=(num_classes, embed_dim),
            pos_embed=(pe_channels, gh, gw),
            pe_proj_weight=(embed_dim, pe_channels, 1, 1),
            pe_proj_bias=(embed_dim, ),
            decoder_weight=(num_classes, embed_dim + num_classes, k, k),
            decoder_bias=(num_classes, ),
            decoder_bn_weight=(num_classes, ),
            decoder_bn_bias=(num_classes, ),
            decoder_bn_mean=(num_classes, ),
            decoder_bn_var=(num_classes, ))
        for name, shape in shapes.items():
            self.register_buffer(name, torch.zeros(shape))
        self.register_buffer('name_to_class', torch.tensor(name_to_class, dtype=torch.long))
        self.register_buffer('decoder_bn_eps', torch.tensor(1e-5))
        self.register_buffer('inherited', torch.tensor(False))
        self._bias_cache: Dict[tuple, torch.Tensor] = {}

    # -- inheritance ----------------------------------------------------------------------
    @torch.no_grad()
    def load_from_teacher(self, teacher_head: nn.Module) -> None:
        """Copy ``Q``, ``R``, the PE grid, the PE projection and the mask decoder from a
        stage-1 :class:`ReCLIPHead` (a frozen snapshot: later changes to the teacher do
        not reach the student)."""
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
        was_training = teacher_head.training
        teacher_head.eval()
        norm = teacher_head.decoder_norm
        if not isinstance(norm, nn.modules.batchnorm._BatchNorm) or not norm.track_running_stats:
            raise TypeError(f'{name}.decoder_norm must be a BatchNorm with running stats to be '
                            f'inherited, got {type(norm).__name__}.')
        source = dict(
            query_embeds=teacher_head.queries(),
            name_to_class=teacher_head.name_to_class,
            reference=teacher_head.reference_embeddings(),
            pos_embed=teacher_head.text_encoder.image_pos_embed,
            pe_proj_weight=teacher_head.pe_proj.weight,
            pe_proj_bias=teacher_head.pe_proj.bias,
            decoder_weight=teacher_head.decoder_conv.weight,
            decoder_bias=teacher_head.decoder_conv.bias,
            decoder_bn_weight=norm.weight,
            decoder_bn_bias=norm.bias,
            decoder_bn_mean=norm.running_mean,
            decoder_bn_var=norm.running_var)
        hints = dict(
            query_embeds='class_names (synonyms) and embed_dim',
            reference='num_classes and embed_dim',
            pos_embed='pe_channels (CLIP image width) and pe_grid (CLIP PE grid)',
            pe_proj_weight='embed_dim and pe_channels',
            decoder_weight='decoder_kernel, embed_dim and num_classes')
        for key, value in source.items():
            if value is None:
                raise ValueError(f'{name} has no {key} to inherit.')
            buf = getattr(self, key)
            if tuple(buf.shape) != tuple(value.shape):
                raise ValueError(
                    f'Cannot inherit {key}: teacher shape {tuple(value.shape)}, student '
                    f'{tuple(buf.shape)}. Set the student head\'s '
                    f'{hints.get(key, "config")} to match the teacher.')
            buf.copy_(value.detach().to(buf.dtype))
        self.decoder_bn_eps.fill_(norm.eps)
        self.templates_id = getattr(teacher_head, 'templates_id', None)
        self.inherited.fill_(True)
        self._bias_cache.clear()
        teacher_head.train(was_training)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        self._bias_cache.clear()
        # `inherited` may only be True with every inherited tensor loaded (mmengine's
        # non-strict load would keep the missing ones at zero with only a warning).
        lacking = [name for name in INHERITED_BUFFERS if prefix + name not in state_dict]
        claims = state_dict.get(prefix + 'inherited')
        if lacking and claims is not None and bool(claims):
            raise ValueError(
                f'The checkpoint marks {prefix}inherited but lacks {lacking}: it is '
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
        return dense_class_logits(feats, self.query_embeds, self.name_to_class,
                                  self.num_classes)

    def positional_features(self, size: Tuple[int, int]) -> torch.Tensor:
        """``P`` ``[D, h, w]``: inherited PE projection of the PE grid resized to ``size``."""
        grid = resize_pos_embed_grid(self.pos_embed, size)
        return F.conv2d(grid[None], self.pe_proj_weight, self.pe_proj_bias)[0]

    @torch.no_grad()
    def bias(self, size: Tuple[int, int]) -> torch.Tensor:
        """Bias logits ``B`` ``[C, h, w]`` for the student's grid; computed once per size
        (everything it depends on is frozen)."""
        key = (tuple(size), self.reference.device, self.reference.dtype)
        if key not in self._bias_cache:
            with autocast_off():  # cached: always fp32, even if first built under autocast
                self._bias_cache[key] = bias_logits(self.positional_features(size),
                                                    self.reference)
        return self._bias_cache[key]

    def decode(self, feats: torch.Tensor) -> torch.Tensor:
        """Inherited rectified mask decoder: ``BN(conv(concat(F_s, Lq − B)))``."""
        self._check_inherited()
        rectified = rectify(self.query_logits(feats), self.bias(feats.shape[-2:]),
                            self.bias_mode)
        out = F.conv2d(torch.cat([feats, rectified.to(feats.dtype)], dim=1),
                       self.decoder_weight, self.decoder_bias,
                       padding=self.decoder_kernel // 2)
        with autocast_off():  # BN with the inherited statistics: fp32 under autocast
            return F.batch_norm(out.float(), self.decoder_bn_mean, self.decoder_bn_var,
                                self.decoder_bn_weight, self.decoder_bn_bias,
                                training=False, eps=float(self.decoder_bn_eps))

    def forward(self, inputs: Tuple[torch.Tensor, ...]) -> torch.Tensor:
        return self.decode(self.forward_features(inputs))

    def sample_masks(self, logits: torch.Tensor) -> torch.Tensor:
        """Hard Gumbel-softmax masks ``[B, C, h, w]`` of the student (as in stage 1)."""
        gen = step_generator(logits.device, self.noise_seed)
        return gumbel_softmax_hard(self.gumbel_scale * logits, self.gumbel_tau, 1, gen)

    # -- distillation loss ----------------------------------------------------------------
    def _losses(self) -> List[nn.Module]:
        return list(self.loss_decode) if isinstance(self.loss_decode,
                                                    nn.ModuleList) else [self.loss_decode]

    def loss(self,
             inputs: Tuple[torch.Tensor, ...],
             batch_data_samples: SampleList,
             train_cfg: dict,
             teacher_outputs: Optional[dict] = None) -> dict:
        """Distillation losses (method §7), one entry per configured loss.

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
            hypothesis = hypothesis_multi_hot(batch_data_samples, self.num_classes,
                                              feats.device)
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
