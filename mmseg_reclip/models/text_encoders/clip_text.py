"""Frozen open_clip text tower: template-ensemble queries and context-prompt encoding."""
import dataclasses
import os
from typing import List, Optional, Sequence, Tuple

import open_clip
import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.model import BaseModule
from mmengine.utils import ProgressBar
from mmseg.registry import MODELS

from ..backbones.clip_vit import vit_pos_embed_grid
from ..utils import create_clip, freeze, set_block_layernorm_eps
from ..utils.clip_dims import clip_dims


def shared_prefix_mask(num_prefix: int, num_suffix: int, device: torch.device) -> torch.Tensor:
    """``[S, P + S]`` bool attention mask of the suffix queries (True: may attend).

    Suffix query ``i`` sits at position ``P + i``: it sees all of the prefix and the
    suffix tokens ``j <= i``.
    """
    return torch.ones(
        num_suffix, num_prefix + num_suffix, dtype=torch.bool,
        device=device).tril(diagonal=num_prefix)


def encode_shared_prefix(blocks: Sequence[nn.Module],
                         prefix: torch.Tensor,
                         suffix: torch.Tensor,
                         mask: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Causal text transformer over ``[prefix ; suffix_c]`` for C suffixes, prefix once.

    Under the causal mask the prefix tokens never see a suffix token, so their states
    (and per-layer keys/values) are the same for every class: run them once and let each
    class-specific suffix attend to the cached prefix keys/values.

    Every per-token operation (LayerNorms, the qkv and output projections, the MLP) runs
    as one matrix over the ``P + C·S`` prefix and suffix tokens together, so a layer is
    ~10 kernels whatever ``C`` (GPUs are latency-bound on this small text side); only
    the attention is split (causal prefix; suffixes against ``[prefix keys ; own
    keys]``). The last layer's prefix outputs are never used and are not computed.

    Args:
        blocks: the text transformer's residual blocks (open_clip
            ``ResidualAttentionBlock`` with ``nn.MultiheadAttention``).
        prefix (Tensor): ``[P, W]`` embedded prefix (position embeddings added).
        suffix (Tensor): ``[C, S, W]`` embedded suffixes (position embeddings added).
        mask (Tensor, optional): :func:`shared_prefix_mask` ``(P, S)``, when the caller
            keeps it; built here otherwise.

    Returns:
        Tensor: ``[C, S, W]`` suffix states after the last block.
    """
    num_prefix = prefix.shape[0]
    num_cls, num_suffix, width = suffix.shape
    if mask is None:
        mask = shared_prefix_mask(num_prefix, num_suffix, suffix.device)
    x = torch.cat([prefix.to(suffix.dtype), suffix.reshape(num_cls * num_suffix, width)])
    last = len(blocks) - 1
    for i, block in enumerate(blocks):
        attn = block.attn
        heads = attn.num_heads
        qkv = F.linear(block.ln_1(x), attn.in_proj_weight, attn.in_proj_bias)
        qkv = qkv.view(-1, 3, heads, width // heads)  # q | k | v, each split into heads
        q_p, k_p, v_p = qkv[:num_prefix].permute(1, 2, 0, 3).unsqueeze(1)  # [1, H, P, d]
        q_s, k_s, v_s = qkv[num_prefix:].view(num_cls, num_suffix, 3, heads,
                                              -1).permute(2, 0, 3, 1, 4)  # each [C, H, S, d]
        keys = torch.cat([k_p.expand(num_cls, -1, -1, -1), k_s], dim=2)
        values = torch.cat([v_p.expand(num_cls, -1, -1, -1), v_s], dim=2)
        out_s = F.scaled_dot_product_attention(q_s, keys, values, attn_mask=mask)
        out_s = out_s.transpose(1, 2).reshape(num_cls * num_suffix, width)
        if i == last:  # only the suffix states are returned
            x = x[num_prefix:]
            out = out_s
        else:
            out_p = F.scaled_dot_product_attention(q_p, k_p, v_p, is_causal=True)
            out = torch.cat([out_p[0].transpose(0, 1).reshape(num_prefix, width), out_s])
        x = x + block.ls_1(attn.out_proj(out))
        x = x + block.ls_2(block.mlp(block.ln_2(x)))
    if last < 0:
        x = x[num_prefix:]
    return x.view(num_cls, num_suffix, width)


def weights_identity(model_name: str, pretrained: Optional[str],
                     ln_eps: Optional[float]) -> Optional[str]:
    """A string naming the exact weights (tag, or file path + size + mtime); None if random."""
    if not pretrained:
        return None
    if os.path.isfile(pretrained):
        stat = os.stat(pretrained)
        source = f'{os.path.abspath(pretrained)}:{stat.st_size}:{stat.st_mtime_ns}'
    else:
        source = f'tag:{pretrained}'
    return f'{model_name}|{source}|ln_eps={ln_eps}'


@MODELS.register_module()
class OpenCLIPTextEncoder(BaseModule):
    """The frozen CLIP pieces the ReCLIP heads need, built once from open_clip.

    Holds CLIP's text tower (token embedding, causal transformer, final LayerNorm,
    projection) and the image tower's patch positional-embedding grid (the input of the
    bias head). Nothing here trains; weights are rebuilt from ``pretrained`` and are not
    saved in checkpoints unless ``save_weights=True``.

    Args:
        model_name (str): open_clip model name.
        pretrained (str, optional): open_clip tag or local weights file.
        ln_eps (float, optional): block LayerNorm eps override. The released code keeps
            CLIP's 1e-5 on the text tower (its 1e-6 is on the image tower only), so
            leave it ``None`` to reproduce it.
        quick_gelu (bool, optional): QuickGELU activations (see
            :func:`~mmseg_reclip.models.utils.create_clip`).
        save_weights (bool): keep the text tower in checkpoints. Default False.
        compile_mode (str, optional): run the Reference-prompt encoding
            (:func:`encode_shared_prefix`, forward and backward) through
            ``torch.compile`` with this mode: ``'default'``, ``'reduce-overhead'`` (CUDA
            graphs on GPUs: the fixed-shape text side becomes one graph launch) or
            ``'max-autotune'``. ``None`` (default): eager. Compiling costs start-up time
            (tens of seconds) and needs a C++ compiler on CPU.
    """

    def __init__(self,
                 model_name: str = 'ViT-B-16',
                 pretrained: Optional[str] = 'openai',
                 ln_eps: Optional[float] = None,
                 quick_gelu: Optional[bool] = None,
                 save_weights: bool = False,
                 compile_mode: Optional[str] = None,
                 init_cfg: Optional[dict] = None):
        super().__init__(init_cfg=init_cfg)
        self.compile_mode = compile_mode
        # One CLIP may be shared with the backbone (shared_clip_models): the eps override
        # goes on the text tower only.
        clip = create_clip(model_name, pretrained, quick_gelu=quick_gelu)
        if ln_eps is not None:
            set_block_layernorm_eps(clip.transformer, ln_eps)
        self.model_name = model_name
        self.weights_id = weights_identity(model_name, pretrained, ln_eps)
        if quick_gelu is not None and self.weights_id is not None:
            self.weights_id += f'|quick_gelu={bool(quick_gelu)}'  # Q depends on it
        self.tokenizer = open_clip.get_tokenizer(model_name)
        self.context_length = clip.context_length
        tower = nn.Module()
        tower.token_embedding = clip.token_embedding
        tower.transformer = clip.transformer
        tower.ln_final = clip.ln_final
        tower.register_buffer('positional_embedding', clip.positional_embedding.detach().clone())
        tower.register_buffer('text_projection', clip.text_projection.detach().clone())
        tower.register_buffer('attn_mask', clip.attn_mask.clone(), persistent=False)
        tower.register_buffer('image_pos_embed', vit_pos_embed_grid(clip.visual).detach().clone())
        self.tower = freeze(tower, save_weights=save_weights)
        # D, text width and image width (the bias extractor's PE channels) of this CLIP
        self.dims = dataclasses.replace(clip_dims(clip), model_name=model_name)
        self.width = self.dims.text_width
        self.embed_dim = self.dims.embed_dim
        self.image_width = self.dims.image_width

    def init_weights(self) -> None:
        pass  # weights come from `pretrained`

    @property
    def image_pos_embed(self) -> torch.Tensor:
        """CLIP image patch positional embedding, ``[image_width, gh, gw]``."""
        return self.tower.image_pos_embed

    @property
    def device(self) -> torch.device:
        return self.tower.positional_embedding.device

    def tokenize(self, texts: List[str]) -> torch.Tensor:
        """``[N, context_length]`` token ids (SOS ... EOT, zero padded)."""
        return self.tokenizer(texts).to(self.device)

    def token_embeddings(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.tower.token_embedding(tokens)

    def encode_embeddings(self, x: torch.Tensor, eot_index: torch.Tensor) -> torch.Tensor:
        """Run the text transformer on embedded tokens and project the EOT state.

        Args:
            x (Tensor): ``[N, L, W]`` token embeddings (no positions yet), ``L <= 77``.
            eot_index (Tensor): ``[N]`` position whose state is the text feature.

        Returns:
            Tensor: ``[N, D]`` (not normalised).
        """
        length = x.shape[1]
        x = x + self.tower.positional_embedding[:length].to(x.dtype)
        x = self.tower.transformer(x, attn_mask=self.tower.attn_mask[:length, :length])
        x = self.tower.ln_final(x[torch.arange(x.shape[0], device=x.device), eot_index])
        return x @ self.tower.text_projection

    def encode_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        """CLIP ``encode_text``: ``[N, 77]`` token ids → ``[N, D]`` (not normalised).

        Positions after the last EOT of the batch cannot influence any EOT state under
        the causal mask, so they are not computed (prompts are ~15 of 77 tokens).
        """
        eot = tokens.argmax(dim=-1)
        tokens = tokens[:, :int(eot.max()) + 1]
        return self.encode_embeddings(self.token_embeddings(tokens), eot)

    @torch.no_grad()
    def build_queries(self,
                      names: List[str],
                      templates: List[str],
                      batch_size: int = 256,
                      show_progress: bool = False) -> torch.Tensor:
        """Template-ensemble text embeddings (docs/method.md §2).

        For each name: encode every template, L2-normalise, average, L2-normalise.

        Returns:
            Tensor: ``[len(names), D]`` unit vectors.
        """
        bar = ProgressBar(len(names)) if show_progress else None
        out = []
        for name in names:
            texts = [t.format(name) for t in templates]
            feats = torch.cat([
                self.encode_tokens(self.tokenize(texts[i:i + batch_size]))
                for i in range(0, len(texts), batch_size)
            ])
            out.append(F.normalize(F.normalize(feats, dim=-1).mean(0), dim=-1))
            if bar is not None:
                bar.update()
        return torch.stack(out)

    def encode_context_prompts(self, context: torch.Tensor, name_tokens: torch.Tensor,
                               eot_index: torch.Tensor) -> torch.Tensor:
        """Encode ``[SOS] + context + name tokens`` for every class, prefix computed once.

        Args:
            context (Tensor): ``[M, W]`` learnable context vectors.
            name_tokens (Tensor): ``[C, S]`` token ids placed after the context
                (class name, EOT, padding), positions ``1 + M ... M + S``.
            eot_index (Tensor): ``[C]`` absolute position of each prompt's feature token.

        Returns:
            Tensor: ``[C, D]`` (not normalised).
        """
        num_prefix = 1 + context.shape[0]
        # Everything but the context is frozen: the SOS row, the suffix embeddings, the
        # mask and the gather indices are built once per (tokens, shape) and reused.
        fixed = self._prompt_constants(name_tokens, eot_index, num_prefix)
        prefix = torch.cat([fixed['sos'], context.to(fixed['sos'].dtype)], dim=0)
        prefix = prefix + self.tower.positional_embedding[:num_prefix]
        x = self._encode_shared_prefix(self.tower.transformer.resblocks, prefix, fixed['suffix'],
                                       fixed['mask'])
        x = x[fixed['rows'], fixed['eot']]
        return self.tower.ln_final(x) @ self.tower.text_projection

    def _prompt_constants(self, name_tokens: torch.Tensor, eot_index: torch.Tensor,
                          num_prefix: int) -> dict:
        """The frozen pieces of :meth:`encode_context_prompts`, cached.

        Keyed by the token tensors' identity and in-place version counters (``ref_tokens``
        / ``ref_eot`` are fixed buffers of the head), the prefix length, the device and
        the version counters of the token/position embeddings; recomputed when any
        changes. Built without autograd: they depend on nothing trainable.
        """
        emb, pos = self.tower.token_embedding.weight, self.tower.positional_embedding
        key = (id(name_tokens), name_tokens._version, tuple(name_tokens.shape), id(eot_index),
               eot_index._version, num_prefix, name_tokens.device, emb._version, pos._version,
               pos.dtype)  # (a loaded state dict bumps them)
        cache = self.__dict__.setdefault('_prompt_cache', {})
        hit = cache.get(key)
        # ids are only unique among live objects (and a deepcopy copies the cache)
        if hit is None or hit['refs'][0] is not name_tokens or hit['refs'][1] is not eot_index:
            cache.clear()  # one live entry: the head's Reference prompt
            with torch.no_grad():
                # States after the furthest feature token never influence it (causal).
                num_suffix = int(eot_index.max()) - num_prefix + 1
                pos = self.tower.positional_embedding
                suffix = self.token_embeddings(name_tokens[:, :num_suffix])
                suffix = suffix + pos[num_prefix:num_prefix + num_suffix]
                sos = self.token_embeddings(name_tokens.new_full((1, ), self.sot_token_id))
                cache[key] = dict(
                    sos=sos,
                    suffix=suffix,
                    mask=shared_prefix_mask(num_prefix, num_suffix, name_tokens.device),
                    rows=torch.arange(name_tokens.shape[0], device=name_tokens.device),
                    eot=eot_index - num_prefix,
                    # keep the keyed tensors alive so that their ids stay theirs
                    refs=(name_tokens, eot_index))
        return cache[key]

    def _encode_shared_prefix(self, blocks, prefix, suffix, mask):
        """:func:`encode_shared_prefix`, through ``torch.compile`` when ``compile_mode``."""
        mode = getattr(self, 'compile_mode', None)
        if mode is None:
            return encode_shared_prefix(blocks, prefix, suffix, mask)
        compiled = self.__dict__.get('_compiled_encode')
        if compiled is None:
            compiled = torch.compile(encode_shared_prefix, mode=mode, dynamic=False)
            self.__dict__['_compiled_encode'] = compiled
        return compiled(blocks, prefix, suffix, mask)

    def encode_context_prompts_naive(self, context: torch.Tensor, name_tokens: torch.Tensor,
                                     eot_index: torch.Tensor) -> torch.Tensor:
        """Reference implementation of :meth:`encode_context_prompts`: full C prompts."""
        num_cls = name_tokens.shape[0]
        sos = self.token_embeddings(name_tokens.new_full((num_cls, 1), self.sot_token_id))
        ctx = context.to(sos.dtype).expand(num_cls, -1, -1)
        x = torch.cat([sos, ctx, self.token_embeddings(name_tokens)], dim=1)
        x = x[:, :self.context_length]
        return self.encode_embeddings(x, eot_index)

    @property
    def sot_token_id(self) -> int:
        return int(self.tokenizer.sot_token_id)

    @property
    def eot_token_id(self) -> int:
        return int(self.tokenizer.eot_token_id)

    def name_tokens(self,
                    names: List[str],
                    num_context: int,
                    mode: str = 'eot') -> Tuple[torch.Tensor, torch.Tensor]:
        """Token ids that follow ``[SOS] + M context vectors`` in a reference prompt.

        Args:
            names (list[str]): one name per class.
            num_context (int): ``M``.
            mode (str): ``'eot'`` keeps an EOT token in every prompt (names cut so that
                it fits); ``'released'`` reproduces the released ReCLIP++ code: the first
                ``77 - 1 - M`` BPE tokens after SOS, feature token at
                ``1 + M + argmax(those tokens)``.

        Returns:
            tuple: ``name_tokens`` ``[C, 77 - 1 - M]`` and ``eot_index`` ``[C]``.
        """
        room = self.context_length - 1 - num_context
        if room < 1:
            raise ValueError(f'{num_context} context vectors leave no room for the class name '
                             f'in a {self.context_length}-token prompt.')
        tokens = self.tokenize(names)[:, 1:1 + room].clone()
        if mode == 'released':
            eot = 1 + num_context + tokens.argmax(dim=-1)
        elif mode == 'eot':
            lengths = (tokens != 0).sum(-1)
            # Position of EOT within `tokens`: keep it, or overwrite the last slot with it.
            has_eot = (tokens == self.eot_token_id).any(-1)
            pos = torch.where(has_eot, lengths - 1, torch.full_like(lengths, room - 1))
            tokens[torch.arange(len(names)), pos] = self.eot_token_id
            eot = 1 + num_context + pos
        else:
            raise ValueError(f"name token mode must be 'eot' or 'released', got {mode!r}")
        return tokens, eot
