"""ReCLIP++ head: query logits, then a bias extractor and a rectified mask decoder."""
from typing import Dict, Optional, Tuple

import torch
from mmseg.registry import MODELS
from mmseg.utils import SampleList

from ..utils import hypothesis_multi_hot, rename_legacy_keys
from .bias_extractor import ReferenceBiasExtractor, bias_logits, normalize_reference  # noqa: F401
from .mask_decoder import RectifiedMaskDecoder  # noqa: F401 (registers it)
from .maskclip_head import MaskCLIPHead

__all__ = [
    'ReCLIPHead', 'rectify', 'bias_logits', 'normalize_reference', 'hypothesis_multi_hot',
    'upgrade_legacy_state_dict'
]

#: State-dict keys of the head before bias extraction and the mask decoder became
#: modules (checkpoints written until November 2026) -> the keys of today.
LEGACY_KEYS: Dict[str, str] = {
    'context': 'bias_extractor.context',
    'pe_proj.weight': 'bias_extractor.pe_proj.weight',
    'pe_proj.bias': 'bias_extractor.pe_proj.bias',
    'decoder_conv.weight': 'mask_decoder.conv.weight',
    'decoder_conv.bias': 'mask_decoder.conv.bias',
    'decoder_norm.weight': 'mask_decoder.norm.weight',
    'decoder_norm.bias': 'mask_decoder.norm.bias',
    'decoder_norm.running_mean': 'mask_decoder.norm.running_mean',
    'decoder_norm.running_var': 'mask_decoder.norm.running_var',
    'decoder_norm.num_batches_tracked': 'mask_decoder.norm.num_batches_tracked',
}


def upgrade_legacy_state_dict(state_dict: dict, prefix: str = 'decode_head.') -> dict:
    """Rename the old :class:`ReCLIPHead` keys of ``state_dict`` in place (see
    :data:`LEGACY_KEYS`) and return it; for code that reads a checkpoint's tensors
    before loading it (the distiller's teacher checks)."""
    rename_legacy_keys(state_dict, prefix, LEGACY_KEYS)
    return state_dict


def rectify(query_logits: torch.Tensor, bias: torch.Tensor, mode: str = 'subtract') -> torch.Tensor:
    """``Lr = Lq − B`` (``'subtract'``, docs/method.md §4), ``Lq + B`` (``'add'``) or ``Lq``."""
    if mode == 'subtract':
        return query_logits - bias
    if mode == 'add':
        return query_logits + bias
    if mode == 'none':
        return query_logits
    raise ValueError(f"bias_mode must be 'subtract', 'add' or 'none', got {mode!r}")


#: Head arguments that moved into the two component configs (old config -> new place).
MOVED_ARGS: Dict[str, str] = {
    'num_context': 'bias_extractor',
    'ctx_init': 'bias_extractor',
    'ref_norm': 'bias_extractor',
    'name_token_mode': 'bias_extractor',
    'pe_channels': 'bias_extractor',
    'pe_grid': 'bias_extractor',
    'decoder_kernel': 'mask_decoder (as kernel_size)',
    'gumbel_scale': 'mask_decoder',
    'gumbel_tau': 'mask_decoder',
    'noise_seed': 'mask_decoder',
}


def check_moved_args(head: str, kwargs: dict) -> None:
    """A clear error for a config written for the heads before the two modules."""
    moved = [k for k in kwargs if k in MOVED_ARGS]
    if moved:
        where = '; '.join(f'{k} -> {MOVED_ARGS[k]}' for k in moved)
        raise TypeError(f'{head}: {moved} are no longer head arguments; set them in the '
                        f'component configs ({where}), e.g. '
                        "bias_extractor=dict(num_context=73), mask_decoder=dict(kernel_size=5).")


def with_default_type(cfg: Optional[dict], default_type: str) -> dict:
    """A copy of a component config with ``type`` filled in when it is not given (so a
    leaf config or a test can set only, e.g., ``bias_extractor=dict(num_context=4)``)."""
    cfg = dict(cfg or {})
    cfg.setdefault('type', default_type)
    return cfg


@MODELS.register_module()
class ReCLIPHead(MaskCLIPHead):
    """ReCLIP++ rectification head (docs/method.md §3-§6).

    Consumes 512-d features aligned with the queries (``inputs[0]``, ``[B, D, h, w]``) —
    from the frozen CLIP backbone or from any student backbone + neck — and predicts
    rectified class logits::

        forward(): Lq = query_logits(F)            (frozen Q, docs/method.md §2)
                   B  = bias_extractor((h, w))     (docs/method.md §3)
                   Lr = rectify(Lq, B, bias_mode)  (docs/method.md §4)
                   O  = mask_decoder(F, Lr)        (docs/method.md §4)
        loss():    forward() -> mask_decoder.sample_masks(O) -> loss_decode

    The bias extractor and the mask decoder are registered modules built from
    ``bias_extractor`` / ``mask_decoder`` configs (either can be swapped); the
    distillation student holds frozen copies of the same two modules. Trainable: the
    extractor's context vectors and PE projection, the decoder conv + BN. The CLIP text
    tower and ``Q`` are frozen.

    Args:
        bias_extractor (dict): config of the bias extractor
            (:class:`ReferenceBiasExtractor`: ``num_context``, ``ctx_init``,
            ``ref_norm``, ``name_token_mode``); ``num_classes``, ``embed_dim``
            (``channels``), ``text_encoder`` and ``class_names`` are filled in. A
            missing ``type`` means ``ReferenceBiasExtractor``.
        mask_decoder (dict): config of the mask decoder
            (:class:`RectifiedMaskDecoder`: ``kernel_size``, ``gumbel_scale``,
            ``gumbel_tau``, ``noise_seed``); ``in_channels`` (``channels``),
            ``num_classes`` and ``norm_cfg`` (the head's) are filled in. A missing
            ``type`` means ``RectifiedMaskDecoder``.
        bias_mode (str): ``'subtract'`` (paper), ``'add'`` or ``'none'`` (ablations).
        norm_cfg (dict): decoder norm (``BN``; ``SyncBN`` on GPUs).
        loss_decode (dict): the stage-1 loss (``ReCLIPContrastiveLoss``).
        Other arguments: see :class:`MaskCLIPHead`.

    Shapes:
        ``forward``: ``inputs[0]`` ``[B, D, h, w]`` → decoder output ``[B, C, h, w]``.
    """

    def __init__(self,
                 bias_extractor: dict = dict(type='ReferenceBiasExtractor'),
                 mask_decoder: dict = dict(type='RectifiedMaskDecoder'),
                 bias_mode: str = 'subtract',
                 norm_cfg: dict = dict(type='BN'),
                 loss_decode: dict = dict(type='ReCLIPContrastiveLoss'),
                 **kwargs):
        check_moved_args('ReCLIPHead', kwargs)
        super().__init__(norm_cfg=norm_cfg, loss_decode=loss_decode, **kwargs)
        rectify(torch.zeros(1), torch.zeros(1), bias_mode)  # validate early
        self.bias_mode = bias_mode
        self.bias_extractor = MODELS.build(
            with_default_type(bias_extractor, 'ReferenceBiasExtractor'),
            default_args=dict(
                num_classes=self.num_classes,
                embed_dim=self.channels,
                text_encoder=self.text_encoder,
                class_names=self.class_names))
        self.mask_decoder = MODELS.build(
            with_default_type(mask_decoder, 'RectifiedMaskDecoder'),
            default_args=dict(
                in_channels=self.channels, num_classes=self.num_classes, norm_cfg=norm_cfg))

    def reset_trainable(self) -> None:
        """Initialise the trainable parts (docs/method.md §3/§4)."""
        for module in (self.bias_extractor, self.mask_decoder):
            if hasattr(module, 'init_weights'):  # a swapped-in plain nn.Module has none
                module.init_weights()

    def init_weights(self) -> None:
        # mmengine's default init would overwrite the method's initialisation.
        self.reset_trainable()
        self.queries()

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # Checkpoints written before the two modules existed (see LEGACY_KEYS); renamed
        # before the class-set and shape checks of the mixin and before the children load.
        rename_legacy_keys(state_dict, prefix, LEGACY_KEYS)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    # -- rectification ------------------------------------------------------------------
    def bias(self, size: Tuple[int, int], feats: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Bias logits ``B``: ``[C, h, w]`` (ReCLIP++, cached outside training) or
        ``[B, C, h, w]`` (an image-dependent extractor, which reads ``feats``)."""
        return self.bias_extractor(tuple(size), feats=feats)

    def rectified_logits(self, feats: torch.Tensor) -> torch.Tensor:
        """``Lr`` ``[B, C, h, w]``: the query logits rectified by the bias."""
        return rectify(self.query_logits(feats), self.bias(feats.shape[-2:], feats), self.bias_mode)

    def decode(self, feats: torch.Tensor) -> torch.Tensor:
        """``O = mask_decoder(F, Lr)`` ``[B, C, h, w]`` from ``F`` ``[B, D, h, w]``."""
        return self.mask_decoder(feats, self.rectified_logits(feats))

    def forward(self, inputs: Tuple[torch.Tensor, ...]) -> torch.Tensor:
        return self.decode(inputs[0])

    def sample_masks(self, logits: torch.Tensor) -> torch.Tensor:
        """Hard Gumbel-softmax masks ``[B, C, h, w]`` (the mask decoder's)."""
        return self.mask_decoder.sample_masks(logits)

    def loss(self, inputs: Tuple[torch.Tensor, ...], batch_data_samples: SampleList,
             train_cfg: dict) -> dict:
        """Stage-1 loss: images, their crop-vote hypotheses, no ground truth."""
        feats = inputs[0]
        masks = self.sample_masks(self.forward(inputs))
        hypothesis = hypothesis_multi_hot(batch_data_samples, self.num_classes, feats.device)
        loss = self.loss_decode(feats, masks, self.queries(), hypothesis, self.name_map)
        return {self.loss_decode.loss_name: loss}
