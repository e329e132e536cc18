"""Frozen open_clip ViT image tower producing dense MaskCLIP features."""
import dataclasses
import functools
from typing import Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.model import BaseModule
from mmseg.registry import MODELS

from ..utils import create_clip, freeze, resize_pos_embed_grid, set_block_layernorm_eps
from ..utils.clip_dims import clip_dims


def patch_tokens(visual: nn.Module, img: torch.Tensor) -> Tuple[torch.Tensor, tuple]:
    """Patch-embed ``img`` and add the CLS token and the resized positional embedding.

    Args:
        visual (nn.Module): open_clip ``VisionTransformer``.
        img (Tensor): ``[B, 3, H, W]`` with ``H, W`` multiples of the patch size.

    Returns:
        tuple: tokens ``[B, 1 + h*w, width]`` after ``ln_pre``, and the grid ``(h, w)``.
    """
    x = visual.conv1(img)
    grid = tuple(x.shape[-2:])
    x = x.flatten(2).transpose(1, 2)
    cls = visual.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
    x = torch.cat([cls, x], dim=1)
    pos = visual.positional_embedding.to(x.dtype)
    pos_grid = vit_pos_embed_grid(visual)
    pos_patches = resize_pos_embed_grid(pos_grid, grid).flatten(1).t()
    x = x + torch.cat([pos[:1], pos_patches], dim=0)
    return visual.ln_pre(x), grid


def vit_pos_embed_grid(visual: nn.Module) -> torch.Tensor:
    """The patch positional embeddings of a ViT as a ``[width, gh, gw]`` grid."""
    gh, gw = visual.grid_size
    return visual.positional_embedding[1:].t().reshape(-1, gh, gw)


def value_path_block(block: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """MaskCLIP's last block: attention replaced by its value path.

    ``v = x + out_proj(V(ln_1(x)))``; ``v = v + mlp(ln_2(v))`` (LayerScale kept).
    """
    attn = block.attn
    width = x.shape[-1]
    w_v = attn.in_proj_weight[2 * width:]
    b_v = attn.in_proj_bias[2 * width:] if attn.in_proj_bias is not None else None
    v = attn.out_proj(F.linear(block.ln_1(x), w_v, b_v))
    x = x + block.ls_1(v)
    return x + block.ls_2(block.mlp(block.ln_2(x)))


def split_heads(block: nn.Module, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
    """``q, k, v`` of a block's attention on ``ln_1(x)``, each ``[B, heads, N, head_dim]``."""
    attn = block.attn
    b, n, width = x.shape
    qkv = F.linear(block.ln_1(x), attn.in_proj_weight, attn.in_proj_bias)
    qkv = qkv.view(b, n, 3, attn.num_heads, width // attn.num_heads)
    return qkv.permute(2, 0, 3, 1, 4).unbind(0)


def merge_heads(block: nn.Module, weights: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """``out_proj(weights @ v)`` with the heads merged back: ``[B, N, width]``."""
    out = (weights @ v).transpose(1, 2).flatten(2)
    return block.attn.out_proj(out)


@functools.lru_cache(maxsize=8)  # frozen per grid: computed once per (grid, std, device)
def neighbourhood_bias(grid: Tuple[int, int], std: float, device: torch.device,
                       dtype: torch.dtype) -> torch.Tensor:
    """NACLIP's Gaussian neighbourhood term ``[1 + h*w, 1 + h*w]``.

    ``exp(-|p - p'|² / (2 std²))`` between patch positions (in patches); the CLS row and
    column get 0. Cached: the caller must not modify it in place.
    """
    h, w = grid
    ys, xs = torch.meshgrid(
        torch.arange(h, device=device, dtype=dtype),
        torch.arange(w, device=device, dtype=dtype),
        indexing='ij')
    pos = torch.stack([ys.flatten(), xs.flatten()], dim=1)
    gauss = torch.exp(-torch.cdist(pos, pos).square() / (2 * std**2))
    return F.pad(gauss, (1, 0, 1, 0))


def sclip_block(block: nn.Module, x: torch.Tensor, grid: Tuple[int, int]) -> torch.Tensor:
    """SCLIP's last block: correlative self-attention, residual and FFN kept.

    ``attn = softmax(q qᵀ / √d) + softmax(k kᵀ / √d)`` (rows sum to 2, as released).
    """
    q, k, v = split_heads(block, x)
    scale = q.shape[-1]**-0.5
    weights = ((q @ q.transpose(-2, -1)) * scale).softmax(-1) + (
        (k @ k.transpose(-2, -1)) * scale).softmax(-1)
    x = x + block.ls_1(merge_heads(block, weights, v))
    return x + block.ls_2(block.mlp(block.ln_2(x)))


def clearclip_block(block: nn.Module, x: torch.Tensor, grid: Tuple[int, int]) -> torch.Tensor:
    """ClearCLIP's last block: ``softmax(q qᵀ / √d)`` attention output only (no residual,
    no FFN)."""
    q, _, v = split_heads(block, x)
    weights = ((q @ q.transpose(-2, -1)) * q.shape[-1]**-0.5).softmax(-1)
    return merge_heads(block, weights, v)


def naclip_block(block: nn.Module,
                 x: torch.Tensor,
                 grid: Tuple[int, int],
                 std: float = 5.0) -> torch.Tensor:
    """NACLIP's last block ("reduced"): ``softmax(k kᵀ / √d + Gaussian neighbourhood)``
    attention output only (no residual, no FFN)."""
    _, k, v = split_heads(block, x)
    logits = (k @ k.transpose(-2, -1)) * k.shape[-1]**-0.5
    logits = logits + neighbourhood_bias(grid, std, x.device, logits.dtype)
    return merge_heads(block, logits.softmax(-1), v)


#: Training-free dense-feature recipes: how the last block turns tokens into features.
DENSE_MODES = {
    'maskclip': lambda block, x, grid: value_path_block(block, x),
    'sclip': sclip_block,
    'clearclip': clearclip_block,
    'naclip': naclip_block,
}


def dense_features(visual: nn.Module,
                   img: torch.Tensor,
                   dense_mode: str = 'maskclip',
                   naclip_std: float = 5.0) -> torch.Tensor:
    """Dense, L2-normalised CLIP features (docs/method.md §1).

    Args:
        visual (nn.Module): open_clip ``VisionTransformer`` (pre-norm, CLS token).
        img (Tensor): ``[B, 3, H, W]`` normalised image, ``H, W`` multiples of the patch.
        dense_mode (str): the last block's recipe, a key of :data:`DENSE_MODES`.
        naclip_std (float): Gaussian std (in patches) of ``'naclip'``.

    Returns:
        Tensor: ``[B, D, H/p, W/p]`` with ``D`` the CLIP embedding dim (512 for ViT-B-16).
    """
    x, (h, w) = patch_tokens(visual, img)
    blocks = visual.transformer.resblocks
    for block in blocks[:-1]:
        x = block(x)
    if dense_mode == 'naclip':
        x = naclip_block(blocks[-1], x, (h, w), naclip_std)
    else:
        x = DENSE_MODES[dense_mode](blocks[-1], x, (h, w))
    x = visual.ln_post(x[:, 1:])
    x = x @ visual.proj
    x = F.normalize(x, dim=-1)
    return x.transpose(1, 2).reshape(x.shape[0], -1, h, w)


@MODELS.register_module()
class CLIPViTBackbone(BaseModule):
    """Frozen open_clip ViT returning dense CLIP features (MaskCLIP by default).

    Always in eval mode with gradients off; its weights come from ``pretrained`` at
    construction and are not written to checkpoints (``save_weights=False``).

    Args:
        model_name (str): open_clip model name (``'ViT-B-16'``; tests use
            ``'ViT-Tiny-16-test'``).
        pretrained (str, optional): open_clip tag (``'openai'``) or local weights file.
        ln_eps (float, optional): block LayerNorm eps override of the image tower
            (released code: 1e-6; CLIP: 1e-5).
        quick_gelu (bool, optional): QuickGELU activations (see
            :func:`~mmseg_reclip.models.utils.create_clip`).
        dense_mode (str): how the last block makes dense features (training-free
            recipes, each usable under ReCLIP++): ``'maskclip'`` (default, released
            ReCLIP++: value path, residual and FFN), ``'sclip'`` (correlative
            self-attention q-q + k-k, residual and FFN), ``'clearclip'`` (q-q
            attention, no residual, no FFN), ``'naclip'`` (k-k attention + Gaussian
            neighbourhood, no residual, no FFN).
        naclip_std (float): std of NACLIP's Gaussian neighbourhood, in patches (5).
        save_weights (bool): keep the frozen CLIP weights in checkpoints. Default False.

    Shapes:
        input ``[B, 3, H, W]`` (padded here to a multiple of the patch size) →
        ``(F,)`` with ``F`` ``[B, D, ceil(H/p), ceil(W/p)]``, L2-normalised over ``D``.
    """

    def __init__(self,
                 model_name: str = 'ViT-B-16',
                 pretrained: Optional[str] = 'openai',
                 ln_eps: Optional[float] = None,
                 quick_gelu: Optional[bool] = None,
                 dense_mode: str = 'maskclip',
                 naclip_std: float = 5.0,
                 save_weights: bool = False,
                 init_cfg: Optional[dict] = None):
        super().__init__(init_cfg=init_cfg)
        if dense_mode not in DENSE_MODES:
            raise ValueError(f'dense_mode must be one of {sorted(DENSE_MODES)}, got {dense_mode!r}')
        if naclip_std <= 0:
            raise ValueError(f'naclip_std must be > 0, got {naclip_std}')
        self.dense_mode = dense_mode
        self.naclip_std = float(naclip_std)
        # One CLIP may be shared with the text encoder (shared_clip_models): the eps
        # override goes on this tower only (the released code's 1e-6 is image-side).
        clip = create_clip(model_name, pretrained, quick_gelu=quick_gelu)
        if ln_eps is not None:
            set_block_layernorm_eps(clip.visual, ln_eps)
        self.visual = freeze(clip.visual, save_weights=save_weights)
        self.dims = dataclasses.replace(clip_dims(clip), model_name=model_name)
        self.patch_size = self.dims.patch_size
        self.embed_dim = self.dims.embed_dim
        self.width = self.dims.image_width

    def init_weights(self) -> None:
        # Weights come from `pretrained`; mmengine's init must not overwrite them.
        pass

    def pad_to_patch(self, img: torch.Tensor) -> torch.Tensor:
        ph, pw = self.patch_size
        pad_h = (-img.shape[-2]) % ph
        pad_w = (-img.shape[-1]) % pw
        if pad_h or pad_w:
            img = F.pad(img, (0, pad_w, 0, pad_h))
        return img

    def forward(self, img: torch.Tensor) -> Tuple[torch.Tensor]:
        with torch.no_grad():
            img = self.pad_to_patch(img)
            return (dense_features(self.visual, img, self.dense_mode, self.naclip_std), )

    @torch.no_grad()
    def encode_image(self, img: torch.Tensor) -> torch.Tensor:
        """CLIP's own global image embedding (CLS + attention path), L2-normalised.

        Args:
            img (Tensor): ``[N, 3, S, S]`` with ``S`` CLIP's input size
                (``dims.image_size``: 224, ViT-L-14-336: 336).

        Returns:
            Tensor: ``[N, D]``.
        """
        return F.normalize(self.visual(img), dim=-1)
