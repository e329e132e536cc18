"""Bias extraction (docs/method.md §3): reference prompts + positional projection → ``B``."""
from contextlib import nullcontext
from typing import Dict, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.model import BaseModule
from mmseg.registry import MODELS

from ...utils.amp import autocast_dtype, autocast_off
from ..utils import resize_pos_embed_grid


def bias_logits(pos_feats: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Bias logits ``B = P·Rᵀ`` (docs/method.md §3).

    Args:
        pos_feats (Tensor): ``[D, h, w]`` projected positional embedding ``P``.
        reference (Tensor): ``[C, D]`` reference text embeddings ``R``.

    Returns:
        Tensor: ``[C, h, w]``.
    """
    return torch.einsum('dhw,cd->chw', pos_feats, reference)


#: How ``R`` is normalised: by its Frobenius norm (released), per class, or not at all.
REF_NORMS = ('global', 'row', 'none')


def normalize_reference(reference: torch.Tensor, mode: str) -> torch.Tensor:
    """``'global'``: divide by the Frobenius norm (released); ``'row'``: per class;
    ``'none'``: unchanged (``mode`` is validated by :class:`ReferenceBiasExtractor`)."""
    if mode == 'global':
        return reference / reference.norm()
    if mode == 'row':
        return F.normalize(reference, dim=-1)
    return reference


@MODELS.register_module()
class ReferenceBiasExtractor(BaseModule):
    """Bias logits ``B = Conv1x1(PE_{h×w}) · Rᵀ`` ``[C, h, w]`` (docs/method.md §3).

    Two sources of ``R`` and of CLIP's PE grid, one computation:

    - **learnt** (``text_encoder`` given; the stage-1 :class:`ReCLIPHead`): ``M``
      learnable context vectors (``context``), ``R`` from ``[SOS] + context + name +
      [EOT]`` through the frozen text tower, normalised by ``ref_norm``; the PE grid is
      the text encoder's copy of CLIP's image PE. Trainable: ``context`` and
      ``pe_proj``.
    - **inherited** (``text_encoder=None``; the distillation student): ``R``
      (``reference`` ``[C, D]``) and the PE grid (``pos_embed``
      ``[pe_channels, gh, gw]``) are buffers, filled from a learnt extractor by
      :meth:`inherit` (a ``load_state_dict`` of :meth:`inherited_state`). No CLIP is
      needed; the owner freezes it.

    ``B`` does not depend on the image: outside training (and always in the inherited
    mode) it is computed once per grid size and cached, keyed by (size, device, dtype,
    autocast dtype); the cache is cleared on ``train()`` and on loading a state dict.

    Args:
        num_classes (int): ``C`` (filled in by the head).
        embed_dim (int): ``D`` of CLIP's joint space (filled in by the head).
        text_encoder (nn.Module, optional): the head's :class:`OpenCLIPTextEncoder`
            (filled in by :class:`ReCLIPHead`); held by reference, not as a submodule
            (the head owns and saves it). ``None``: inherited mode.
        class_names (list[list[str]], optional): the head's classes (learnt mode; the
            first name of each class enters the reference prompt).
        num_context (int): ``M`` context vectors (released: 73).
        ctx_init (str): ``'token0'`` (token embedding of id 0, released) or ``'normal'``
            (std 0.02).
        ref_norm (str): ``'global'`` (Frobenius, released), ``'row'`` or ``'none'``.
        name_token_mode (str): ``'eot'`` or ``'released'`` (see
            :meth:`OpenCLIPTextEncoder.name_tokens`).
        pe_channels (int): width of CLIP's image tower (inherited mode; ViT-B/16: 768).
        pe_grid (tuple[int]): CLIP's PE grid (inherited mode; ViT-B/16: (14, 14)).

    Shapes:
        ``forward(size, feats=None)`` → ``B`` ``[C, h, w]``; :meth:`reference_embeddings` → ``R``
        ``[C, D]``; :meth:`positional_features` → ``P`` ``[D, h, w]``.
    """

    def __init__(self,
                 num_classes: int,
                 embed_dim: int,
                 text_encoder: Optional[nn.Module] = None,
                 class_names: Optional[Sequence[Sequence[str]]] = None,
                 num_context: int = 73,
                 ctx_init: str = 'token0',
                 ref_norm: str = 'global',
                 name_token_mode: str = 'eot',
                 pe_channels: int = 768,
                 pe_grid: Sequence[int] = (14, 14),
                 init_cfg: Optional[dict] = None):
        super().__init__(init_cfg=init_cfg)
        if ref_norm not in REF_NORMS:
            raise ValueError(f'ref_norm must be one of {REF_NORMS}, got {ref_norm!r}')
        if ctx_init not in ('token0', 'normal'):
            raise ValueError(f"ctx_init must be 'token0' or 'normal', got {ctx_init!r}")
        self.num_classes = num_classes
        self.embed_dim = embed_dim
        self.ref_norm = ref_norm
        self.ctx_init = ctx_init
        self.num_context = num_context
        self.name_token_mode = name_token_mode
        # A tuple hides the encoder from nn.Module: the head owns (and moves) it.
        self._text = (text_encoder, ) if text_encoder is not None else None
        if text_encoder is not None:
            if class_names is None or len(class_names) != num_classes:
                raise ValueError('ReferenceBiasExtractor needs one class-name entry per '
                                 f'class ({num_classes}) with a text encoder.')
            pe_channels = text_encoder.image_width
            self.context = nn.Parameter(torch.zeros(num_context, text_encoder.width))
            tokens, eot = text_encoder.name_tokens([names[0] for names in class_names], num_context,
                                                   name_token_mode)
            self.register_buffer('ref_tokens', tokens, persistent=False)
            self.register_buffer('ref_eot', eot, persistent=False)
        else:
            gh, gw = pe_grid
            self.register_buffer('reference', torch.zeros(num_classes, embed_dim))
            self.register_buffer('pos_embed', torch.zeros(pe_channels, gh, gw))
        self.pe_proj = nn.Conv2d(pe_channels, embed_dim, 1, bias=True)
        self._cache: Dict[tuple, torch.Tensor] = {}
        self.reset_context()

    @property
    def learnt(self) -> bool:
        """Whether ``R`` is computed from learnable context vectors (stage 1)."""
        return self._text is not None

    @property
    def text_encoder(self) -> Optional[nn.Module]:
        return self._text[0] if self._text is not None else None

    def reset_context(self) -> None:
        """Initialise the context vectors (docs/method.md §3); the PE projection keeps
        ``nn.Conv2d``'s default init, as in the released code."""
        if not self.learnt:
            return
        with torch.no_grad():
            if self.ctx_init == 'token0':
                token0 = self.text_encoder.token_embeddings(
                    torch.zeros(1, dtype=torch.long, device=self.context.device))
                self.context.copy_(token0.expand_as(self.context))
            else:
                nn.init.normal_(self.context, std=0.02)

    def init_weights(self) -> None:
        # mmengine's default init would overwrite the method's initialisation.
        self.reset_context()

    # -- R and P ---------------------------------------------------------------------------
    def reference_embeddings(self) -> torch.Tensor:
        """``R`` ``[C, D]``: from ``[SOS] + context + name + [EOT]``, normalised (learnt),
        or the inherited buffer."""
        if not self.learnt:
            return self.reference
        ref = self.text_encoder.encode_context_prompts(self.context, self.ref_tokens, self.ref_eot)
        return normalize_reference(ref, self.ref_norm)

    def pe_grid(self) -> torch.Tensor:
        """CLIP's image PE grid ``[pe_channels, gh, gw]`` (CLS position removed)."""
        return self.text_encoder.image_pos_embed if self.learnt else self.pos_embed

    def positional_features(self, size: Tuple[int, int]) -> torch.Tensor:
        """``P`` ``[D, h, w]``: the 1x1 projection of CLIP's PE grid resized to ``size``."""
        grid = resize_pos_embed_grid(self.pe_grid(), tuple(size))
        return self.pe_proj(grid[None])[0]

    def forward(self, size: Tuple[int, int], feats: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Bias logits ``B`` ``[C, h, w]`` for a ``size = (h, w)`` grid.

        ``feats`` (the image features, see the contract in :class:`RectifiedClassifier`)
        is ignored: this bias does not depend on the image. With gradients while
        training a learnt extractor; otherwise cached per size.
        """
        if self.learnt and self.training:
            return bias_logits(self.positional_features(size), self.reference_embeddings())
        device, dtype = self.pe_proj.weight.device, self.pe_proj.weight.dtype
        # A learnt bias computed under autocast is rounded: keep it apart from the fp32
        # one. The inherited bias is frozen: always built (and kept) in fp32.
        amp = autocast_dtype(device) if self.learnt else None
        key = (tuple(size), device, dtype, amp)
        if key not in self._cache:
            with torch.no_grad(), (nullcontext() if self.learnt else autocast_off()):
                self._cache[key] = bias_logits(
                    self.positional_features(size), self.reference_embeddings())
        return self._cache[key]

    def train(self, mode: bool = True):
        self._cache.clear()  # parameters may change while training
        return super().train(mode)

    def _load_from_state_dict(self, *args, **kwargs):
        self._cache.clear()
        super()._load_from_state_dict(*args, **kwargs)

    # -- inheritance -----------------------------------------------------------------------
    @torch.no_grad()
    def inherited_state(self) -> Dict[str, torch.Tensor]:
        """This extractor's bias inputs in the inherited layout (``reference``,
        ``pos_embed``, ``pe_proj.*``): a state dict for an inherited-mode copy."""
        state = dict(
            reference=self.reference_embeddings().detach(), pos_embed=self.pe_grid().detach())
        state.update({f'pe_proj.{k}': v.detach() for k, v in self.pe_proj.state_dict().items()})
        return state

    @torch.no_grad()
    def inherit(self, source: 'ReferenceBiasExtractor') -> None:
        """Copy ``R``, the PE grid and the PE projection of ``source`` (a snapshot:
        later changes to ``source`` do not reach this copy). Inherited mode only."""
        if self.learnt:
            raise TypeError('Only an inherited-mode ReferenceBiasExtractor (built without '
                            'a text encoder) can inherit another one.')
        state = source.inherited_state()
        own = self.state_dict()
        bad = [
            f'{k}: source {tuple(v.shape)} vs {tuple(own[k].shape)}' for k, v in state.items()
            if tuple(v.shape) != tuple(own[k].shape)
        ]
        if bad:
            raise ValueError('Cannot inherit the bias extractor (' + '; '.join(bad) + '). '
                             "Set the student's num_classes, embed_dim and its "
                             'bias_extractor pe_channels / pe_grid to the teacher\'s.')
        self.load_state_dict(state)
