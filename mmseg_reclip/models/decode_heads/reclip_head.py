"""ReCLIP++ head: query logits, learnable bias extraction and the rectified mask decoder."""
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmcv.cnn import build_norm_layer
from mmengine.model.weight_init import constant_init, kaiming_init
from mmseg.registry import MODELS
from mmseg.utils import SampleList

from ..utils import (autocast_dtype, autocast_off, gumbel_softmax_hard, resize_pos_embed_grid,
                     step_generator)
from .maskclip_head import MaskCLIPHead


def bias_logits(pos_feats: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Bias logits ``B = P·Rᵀ`` (method §3).

    Args:
        pos_feats (Tensor): ``[D, h, w]`` projected positional embedding ``P``.
        reference (Tensor): ``[C, D]`` reference text embeddings ``R``.

    Returns:
        Tensor: ``[C, h, w]``.
    """
    return torch.einsum('dhw,cd->chw', pos_feats, reference)


def rectify(query_logits: torch.Tensor, bias: torch.Tensor, mode: str = 'subtract') -> torch.Tensor:
    """``Lr = Lq − B`` (``'subtract'``, method §4), ``Lq + B`` (``'add'``) or ``Lq``."""
    if mode == 'subtract':
        return query_logits - bias
    if mode == 'add':
        return query_logits + bias
    if mode == 'none':
        return query_logits
    raise ValueError(f"bias_mode must be 'subtract', 'add' or 'none', got {mode!r}")


def normalize_reference(reference: torch.Tensor, mode: str) -> torch.Tensor:
    """``'global'``: divide by the Frobenius norm (released); ``'row'``: per class."""
    if mode == 'global':
        return reference / reference.norm()
    if mode == 'row':
        return F.normalize(reference, dim=-1)
    if mode == 'none':
        return reference
    raise ValueError(f"ref_norm must be 'global', 'row' or 'none', got {mode!r}")


@MODELS.register_module()
class ReCLIPHead(MaskCLIPHead):
    """ReCLIP++ rectification head (method §3-§6).

    Consumes 512-d features aligned with the queries (``inputs[0]``, ``[B, D, h, w]``) —
    from the frozen CLIP backbone or from any student backbone + neck — and predicts
    rectified class logits. Trainable: the ``M`` context vectors, the positional
    projection and the decoder conv + BN. The CLIP text tower and ``Q`` are frozen.

    Args:
        num_context (int): ``M`` learnable context vectors (released: 73).
        ctx_init (str): ``'token0'`` (token embedding of id 0, released) or ``'normal'``
            (std 0.02).
        ref_norm (str): ``'global'`` (Frobenius, released), ``'row'`` or ``'none'``.
        name_token_mode (str): ``'eot'`` or ``'released'`` (see
            :meth:`OpenCLIPTextEncoder.name_tokens`).
        bias_mode (str): ``'subtract'`` (paper), ``'add'`` or ``'none'`` (ablations).
        decoder_kernel (int): decoder conv kernel (5).
        gumbel_scale (float): logits multiplier before hard Gumbel-softmax (100;
            conference ReCLIP: 1000).
        gumbel_tau (float): Gumbel-softmax temperature (1).
        noise_seed (int, optional): base seed of the Gumbel noise (default: the Runner's
            seed); the noise of a step depends on (seed, iteration, rank).
        norm_cfg (dict): decoder norm (``BN``; ``SyncBN`` on GPUs).
        loss_decode (dict): the stage-1 loss (``ReCLIPContrastiveLoss``).
        Other arguments: see :class:`MaskCLIPHead`.

    Shapes:
        ``forward``: ``inputs[0]`` ``[B, D, h, w]`` → decoder output ``[B, C, h, w]``.
    """

    def __init__(self,
                 num_context: int = 73,
                 ctx_init: str = 'token0',
                 ref_norm: str = 'global',
                 name_token_mode: str = 'eot',
                 bias_mode: str = 'subtract',
                 decoder_kernel: int = 5,
                 gumbel_scale: float = 100.0,
                 gumbel_tau: float = 1.0,
                 noise_seed: Optional[int] = None,
                 norm_cfg: dict = dict(type='BN'),
                 loss_decode: dict = dict(type='ReCLIPContrastiveLoss'),
                 **kwargs):
        super().__init__(norm_cfg=norm_cfg, loss_decode=loss_decode, **kwargs)
        self.ref_norm = ref_norm
        self.bias_mode = bias_mode
        self.gumbel_scale = gumbel_scale
        self.gumbel_tau = gumbel_tau
        self.noise_seed = noise_seed
        self.ctx_init = ctx_init
        rectify(torch.zeros(1), torch.zeros(1), bias_mode)  # validate early
        normalize_reference(torch.ones(1), ref_norm)
        text = self.text_encoder
        self.context = nn.Parameter(torch.zeros(num_context, text.width))
        tokens, eot = text.name_tokens([names[0] for names in self.class_names], num_context,
                                       name_token_mode)
        self.register_buffer('ref_tokens', tokens, persistent=False)
        self.register_buffer('ref_eot', eot, persistent=False)
        self.pe_proj = nn.Conv2d(text.image_width, self.channels, 1, bias=True)
        self.decoder_conv = nn.Conv2d(
            self.channels + self.num_classes,
            self.num_classes,
            decoder_kernel,
            padding=decoder_kernel // 2)
        self.decoder_norm = build_norm_layer(norm_cfg, self.num_classes)[1]
        self._bias_cache: Dict[tuple, torch.Tensor] = {}
        self.reset_trainable()

    def reset_trainable(self) -> None:
        """Initialise the trainable parts (method §3/§4)."""
        with torch.no_grad():
            if self.ctx_init == 'token0':
                token0 = self.text_encoder.token_embeddings(
                    torch.zeros(1, dtype=torch.long, device=self.context.device))
                self.context.copy_(token0.expand_as(self.context))
            elif self.ctx_init == 'normal':
                nn.init.normal_(self.context, std=0.02)
            else:
                raise ValueError(f"ctx_init must be 'token0' or 'normal', got {self.ctx_init!r}")
        kaiming_init(self.decoder_conv, mode='fan_out', nonlinearity='relu',
                     distribution='normal')
        constant_init(self.decoder_norm, 1, bias=0)

    def init_weights(self) -> None:
        # mmengine's default init would overwrite the method's initialisation.
        self.reset_trainable()
        self.queries()

    # -- bias extraction ----------------------------------------------------------------
    def reference_embeddings(self) -> torch.Tensor:
        """``R`` ``[C, D]`` from ``[SOS] + context + name + [EOT]``, normalised."""
        ref = self.text_encoder.encode_context_prompts(self.context, self.ref_tokens,
                                                       self.ref_eot)
        return normalize_reference(ref, self.ref_norm)

    def positional_features(self, size: Tuple[int, int]) -> torch.Tensor:
        """``P`` ``[D, h, w]``: the 1x1 projection of CLIP's PE grid resized to ``size``."""
        grid = resize_pos_embed_grid(self.text_encoder.image_pos_embed, size)
        return self.pe_proj(grid[None])[0]

    def bias(self, size: Tuple[int, int]) -> torch.Tensor:
        """Bias logits ``B`` ``[C, h, w]``; cached per grid size outside training."""
        if self.training:
            return bias_logits(self.positional_features(size), self.reference_embeddings())
        # A bias computed under autocast is rounded: keep it apart from the fp32 one.
        key = (tuple(size), self.context.device, self.context.dtype,
               autocast_dtype(self.context.device))
        if key not in self._bias_cache:
            with torch.no_grad():
                self._bias_cache[key] = bias_logits(self.positional_features(size),
                                                    self.reference_embeddings())
        return self._bias_cache[key]

    def train(self, mode: bool = True):
        self._bias_cache.clear()  # parameters may change while training
        return super().train(mode)

    def _load_from_state_dict(self, *args, **kwargs):
        self._bias_cache.clear()
        super()._load_from_state_dict(*args, **kwargs)

    # -- mask decoder -------------------------------------------------------------------
    def decode(self, feats: torch.Tensor, rectified: torch.Tensor) -> torch.Tensor:
        """``BN(conv(concat(F, Lr)))`` ``[B, C, h, w]`` (no activation).

        Under autocast the conv runs in low precision; BatchNorm (its batch statistics
        and running buffers) always runs in fp32.
        """
        out = self.decoder_conv(torch.cat([feats, rectified.to(feats.dtype)], dim=1))
        with autocast_off():
            return self.decoder_norm(out.float())

    def forward(self, inputs: Tuple[torch.Tensor, ...]) -> torch.Tensor:
        feats = inputs[0]
        rectified = rectify(self.query_logits(feats), self.bias(feats.shape[-2:]),
                            self.bias_mode)
        return self.decode(feats, rectified)

    def sample_masks(self, logits: torch.Tensor) -> torch.Tensor:
        """Hard Gumbel-softmax masks ``[B, C, h, w]`` (one-hot, differentiable)."""
        gen = step_generator(logits.device, self.noise_seed)
        return gumbel_softmax_hard(self.gumbel_scale * logits, self.gumbel_tau, 1, gen)

    def loss(self, inputs: Tuple[torch.Tensor, ...], batch_data_samples: SampleList,
             train_cfg: dict) -> dict:
        """Stage-1 loss: images, their crop-vote hypotheses, no ground truth."""
        feats = inputs[0]
        masks = self.sample_masks(self.forward(inputs))
        hypothesis = hypothesis_multi_hot(batch_data_samples, self.num_classes, feats.device)
        loss = self.loss_decode(feats, masks, self.queries(), hypothesis, self.name_map)
        return {self.loss_decode.loss_name: loss}


def hypothesis_multi_hot(data_samples: SampleList, num_classes: int,
                         device: torch.device) -> torch.Tensor:
    """``[B, C]`` bool from each sample's ``metainfo['hypothesis']`` (class indices)."""
    # Built on the host and moved once: no per-sample device copies in the step.
    out = torch.zeros(len(data_samples), num_classes, dtype=torch.bool)
    for i, sample in enumerate(data_samples):
        if 'hypothesis' not in sample.metainfo:
            raise KeyError(
                'A training sample carries no crop-vote hypothesis. Add '
                "dict(type='CropVoteHypothesisHook') to custom_hooks (the ReCLIP configs do).")
        out[i, torch.as_tensor(list(sample.metainfo['hypothesis']), dtype=torch.long)] = True
    return out.to(device)
