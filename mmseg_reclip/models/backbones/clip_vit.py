"""Frozen open_clip ViT image tower producing dense MaskCLIP features."""
from typing import Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.model import BaseModule
from mmseg.registry import MODELS

from ..utils import create_clip, freeze, resize_pos_embed_grid, set_block_layernorm_eps


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


def dense_features(visual: nn.Module, img: torch.Tensor) -> torch.Tensor:
    """Dense, L2-normalised MaskCLIP features (docs/method.md §1).

    Args:
        visual (nn.Module): open_clip ``VisionTransformer`` (pre-norm, CLS token).
        img (Tensor): ``[B, 3, H, W]`` normalised image, ``H, W`` multiples of the patch.

    Returns:
        Tensor: ``[B, D, H/p, W/p]`` with ``D`` the CLIP embedding dim (512 for ViT-B-16).
    """
    x, (h, w) = patch_tokens(visual, img)
    blocks = visual.transformer.resblocks
    for block in blocks[:-1]:
        x = block(x)
    x = value_path_block(blocks[-1], x)
    x = visual.ln_post(x[:, 1:])
    x = x @ visual.proj
    x = F.normalize(x, dim=-1)
    return x.transpose(1, 2).reshape(x.shape[0], -1, h, w)


@MODELS.register_module()
class CLIPViTBackbone(BaseModule):
    """Frozen open_clip ViT returning dense MaskCLIP features.

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
                 save_weights: bool = False,
                 init_cfg: Optional[dict] = None):
        super().__init__(init_cfg=init_cfg)
        # One CLIP may be shared with the text encoder (shared_clip_models): the eps
        # override goes on this tower only (the released code's 1e-6 is image-side).
        clip = create_clip(model_name, pretrained, quick_gelu=quick_gelu)
        if ln_eps is not None:
            set_block_layernorm_eps(clip.visual, ln_eps)
        self.visual = freeze(clip.visual, save_weights=save_weights)
        self.patch_size = tuple(self.visual.patch_size)
        self.embed_dim = self.visual.proj.shape[1]
        self.width = self.visual.conv1.out_channels

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
            return (dense_features(self.visual, self.pad_to_patch(img)), )

    @torch.no_grad()
    def encode_image(self, img: torch.Tensor) -> torch.Tensor:
        """CLIP's own global image embedding (CLS + attention path), L2-normalised.

        Args:
            img (Tensor): ``[N, 3, S, S]`` with ``S`` CLIP's input size (224).

        Returns:
            Tensor: ``[N, D]``.
        """
        return F.normalize(self.visual(img), dim=-1)
