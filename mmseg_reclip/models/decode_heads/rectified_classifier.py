"""The rectification pipeline (docs/method.md §2-§4), written once: ``F → Lq, B, Lr, O``."""
from typing import Callable, Dict, Optional, Sequence

import torch
import torch.nn as nn
from mmengine.model import BaseModule
from mmseg.registry import MODELS

__all__ = ['BIAS_MODES', 'OUTPUTS', 'RectifiedClassifier', 'rectify', 'with_default_type']

#: ``Lr = Lq − B`` (the paper), ``Lq + B`` or ``Lq`` (ablations).
BIAS_MODES = ('subtract', 'add', 'none')

#: What the classifier returns: the decoder output ``O`` (the method), or an earlier
#: stage of the same sequence (the student's Table IX rows, docs/method.md §11.8).
OUTPUTS = ('O', 'Lr', 'Lq')


def rectify(query_logits: torch.Tensor, bias: torch.Tensor, mode: str = 'subtract') -> torch.Tensor:
    """``Lr = Lq − B`` (``'subtract'``, docs/method.md §4), ``Lq + B`` (``'add'``) or ``Lq``.

    ``bias`` is ``[C, h, w]`` (image-independent) or ``[B, C, h, w]``; it broadcasts
    against ``query_logits`` ``[B, C, h, w]``. ``mode`` is validated by
    :class:`RectifiedClassifier` when it is built.
    """
    if mode == 'subtract':
        return query_logits - bias
    if mode == 'add':
        return query_logits + bias
    return query_logits


def with_default_type(cfg: Optional[dict], default_type: str) -> dict:
    """A copy of a component config with ``type`` filled in when it is not given (so a
    leaf config or a test can set only, e.g., ``bias_extractor=dict(num_context=4)``)."""
    cfg = dict(cfg or {})
    cfg.setdefault('type', default_type)
    return cfg


@MODELS.register_module()
class RectifiedClassifier(BaseModule):
    """Rectified classification of dense features (docs/method.md §2-§4)::

        Lq = query_logits(F)                          (frozen Q, §2)
        B  = bias_extractor((h, w), feats=F)          (§3)
        Lr = rectify(Lq, B, bias_mode)                (§4)
        O  = mask_decoder(F, Lr)                      (§4)

    Held by :class:`ReCLIPHead` (stage 1, the teacher) and :class:`ReCLIPStudentHead`
    (stage 2, a frozen copy); :func:`~mmseg_reclip.evaluation.bias_maps.compute_bias_maps`
    reads the same :meth:`intermediates`. ``Q`` stays with the head that owns it (built
    lazily from CLIP in the teacher, inherited in the student): the classifier is given
    the head's ``query_logits`` callable, not a copy of ``Q``.

    Component contract (a new bias extractor or mask decoder registers itself in
    ``MODELS`` and is selected by ``type`` in the head's ``bias_extractor`` /
    ``mask_decoder`` config):

    - **bias extractor**: ``extractor(size, feats=F)`` with ``size = (h, w)`` and ``F``
      ``[B, D, h, w]`` returns ``B`` as ``[C, h, w]`` (image-independent; it may ignore
      ``feats`` and cache per size, as :class:`ReferenceBiasExtractor` does) or
      ``[B, C, h, w]`` (image-dependent); :func:`rectify` broadcasts either. Built with
      ``num_classes``, ``embed_dim``, ``text_encoder`` (``None`` in the student) and
      ``class_names`` filled in.
    - **mask decoder**: ``decoder(F, Lr)`` → ``O`` ``[B, C, h, w]`` and
      ``decoder.sample_masks(O)`` → hard masks ``[B, C, h, w]`` (the losses' masks).
      Built with ``in_channels`` (``D``), ``num_classes`` and ``norm_cfg`` filled in.

    Args:
        query_logits (callable): ``F`` ``[B, D, h, w]`` → ``Lq`` ``[B, C, h, w]`` (the
            owning head's, filled in by it).
        num_classes (int): ``C``.
        embed_dim (int): ``D``, channels of ``F`` (CLIP's joint space).
        bias_extractor (dict): bias extractor config (missing ``type``:
            ``ReferenceBiasExtractor``).
        mask_decoder (dict): mask decoder config (missing ``type``:
            ``RectifiedMaskDecoder``).
        bias_mode (str): one of :data:`BIAS_MODES`.
        norm_cfg (dict): the mask decoder's norm (``BN``; ``SyncBN`` on GPUs).
        text_encoder (nn.Module, optional): the head's CLIP text encoder, for a learnt
            bias extractor (``None``: the student's inherited one).
        class_names (list[list[str]], optional): the head's classes.
        output (str): one of :data:`OUTPUTS`: the classifier's output ``O`` is the mask
            decoder's (``'O'``, the method) or ``Lr`` / ``Lq`` as they are (fp32; the
            student's ``inherit`` ablation, paper Table IX). The masks of
            :meth:`sample_masks` are always the mask decoder's.

    Shapes:
        ``forward(F)``: ``[B, D, h, w]`` → ``O`` ``[B, C, h, w]``;
        ``intermediates(F)``: ``dict(Lq, B, Lr, O)`` (``B`` ``[C, h, w]`` or
        ``[B, C, h, w]``, the others ``[B, C, h, w]``).
    """

    def __init__(self,
                 query_logits: Callable[[torch.Tensor], torch.Tensor],
                 num_classes: int,
                 embed_dim: int,
                 bias_extractor: Optional[dict] = None,
                 mask_decoder: Optional[dict] = None,
                 bias_mode: str = 'subtract',
                 norm_cfg: dict = dict(type='BN'),
                 text_encoder: Optional[nn.Module] = None,
                 class_names: Optional[Sequence[Sequence[str]]] = None,
                 output: str = 'O',
                 init_cfg: Optional[dict] = None):
        super().__init__(init_cfg=init_cfg)
        if bias_mode not in BIAS_MODES:
            raise ValueError(f'bias_mode must be one of {BIAS_MODES}, got {bias_mode!r}')
        self.bias_mode = bias_mode
        if output not in OUTPUTS:
            raise ValueError(f'output must be one of {OUTPUTS}, got {output!r}')
        self.output = output
        # A bound method of the owning head, not a submodule: the head saves and moves Q.
        self.query_logits = query_logits
        self.bias_extractor = MODELS.build(
            with_default_type(bias_extractor, 'ReferenceBiasExtractor'),
            default_args=dict(
                num_classes=num_classes,
                embed_dim=embed_dim,
                text_encoder=text_encoder,
                class_names=class_names))
        self.mask_decoder = MODELS.build(
            with_default_type(mask_decoder, 'RectifiedMaskDecoder'),
            default_args=dict(in_channels=embed_dim, num_classes=num_classes, norm_cfg=norm_cfg))

    def init_weights(self) -> None:
        # mmengine's default init would overwrite the method's initialisation.
        for module in (self.bias_extractor, self.mask_decoder):
            if hasattr(module, 'init_weights'):  # a swapped-in plain nn.Module has none
                module.init_weights()

    def intermediates(self, feats: torch.Tensor) -> Dict[str, torch.Tensor]:
        """``dict(Lq, B, Lr, O)`` for ``F`` ``[B, D, h, w]`` (see the class docstring)."""
        query = self.query_logits(feats)
        bias = self.bias_extractor(tuple(feats.shape[-2:]), feats=feats)
        rectified = rectify(query, bias, self.bias_mode)
        out = dict(Lq=query, B=bias, Lr=rectified)
        out['O'] = (
            self.mask_decoder(feats, rectified) if self.output == 'O' else out[self.output].float())
        return out

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        """``O`` ``[B, C, h, w]`` for ``F`` ``[B, D, h, w]``."""
        return self.intermediates(feats)['O']

    def sample_masks(self, logits: torch.Tensor) -> torch.Tensor:
        """The mask decoder's hard masks ``[B, C, h, w]`` of ``O``."""
        return self.mask_decoder.sample_masks(logits)
