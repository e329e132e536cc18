"""The training-free dense-feature recipes of CLIPViTBackbone (``dense_mode``), each
checked against an independent per-head loop over the tiny model's raw weights."""
import math

import pytest
import torch
import torch.nn.functional as F

from mmseg_reclip.models.backbones.clip_vit import CLIPViTBackbone, dense_features, patch_tokens
from tests.clip_utils import TINY14


@pytest.fixture(scope='module')
def clip14(tmp_path_factory):
    from tests.clip_utils import save_random_clip
    return save_random_clip(str(tmp_path_factory.mktemp('clip14') / 'tiny14.pt'), TINY14, seed=3)


def _layer_norm(ln, x):
    mean = x.mean(-1, keepdim=True)
    var = ((x - mean)**2).mean(-1, keepdim=True)
    return (x - mean) / torch.sqrt(var + ln.eps) * ln.weight + ln.bias


def reference_last_block(block, x, mode, grid, std=5.0):
    """The recipes as their papers' code writes them, with explicit loops over the
    heads and the token pairs (no shared helper of the implementation)."""
    attn = block.attn
    n_tok, width = x.shape[1], x.shape[2]
    heads = attn.num_heads
    d = width // heads
    y = _layer_norm(block.ln_1, x)
    w, b = attn.in_proj_weight, attn.in_proj_bias
    q = y @ w[:width].t() + b[:width]
    k = y @ w[width:2 * width].t() + b[width:2 * width]
    v = y @ w[2 * width:].t() + b[2 * width:]
    # NACLIP's neighbourhood term between patch tokens (row-major grid), CLS excluded
    gauss = torch.zeros(n_tok, n_tok, dtype=torch.float64)
    gh, gw = grid
    for i in range(gh * gw):
        for j in range(gh * gw):
            dy, dx = i // gw - j // gw, i % gw - j % gw
            gauss[1 + i, 1 + j] = math.exp(-(dy * dy + dx * dx) / (2 * std * std))
    outs = []
    for h in range(heads):
        sl = slice(h * d, (h + 1) * d)
        qh, kh, vh = q[0, :, sl].double(), k[0, :, sl].double(), v[0, :, sl].double()
        if mode == 'sclip':
            a = torch.softmax(qh @ qh.t() / math.sqrt(d), -1) + torch.softmax(
                kh @ kh.t() / math.sqrt(d), -1)
        elif mode == 'clearclip':
            a = torch.softmax(qh @ qh.t() / math.sqrt(d), -1)
        else:
            a = torch.softmax(kh @ kh.t() / math.sqrt(d) + gauss, -1)
        outs.append(a @ vh)
    out = torch.cat(outs, -1).float() @ attn.out_proj.weight.t() + attn.out_proj.bias
    out = out[None]
    if mode != 'sclip':  # ClearCLIP and NACLIP: no residual, no FFN
        return out
    x = x + out
    return x + block.mlp(_layer_norm(block.ln_2, x))


@pytest.mark.parametrize('mode', ['sclip', 'clearclip', 'naclip'])
def test_recipe_matches_an_independent_computation(clip14, mode):
    backbone = CLIPViTBackbone('ViT-Tiny-14-test', clip14, dense_mode=mode)
    visual = backbone.visual
    img = torch.randn(1, 3, 3 * 14, 4 * 14, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        x, grid = patch_tokens(visual, img)
        for block in visual.transformer.resblocks[:-1]:
            x = block(x)
        x = reference_last_block(visual.transformer.resblocks[-1], x, mode, grid)
        ref = F.normalize(visual.ln_post(x[:, 1:]) @ visual.proj, dim=-1)
        ref = ref.transpose(1, 2).reshape(1, -1, *grid)
        out = backbone(img)[0]
    assert out.shape == (1, 48, 3, 4)
    err = (out - ref).abs().max() / ref.abs().max()
    assert err < 1e-4, (mode, float(err))
    # the recipe really changes the features (not the MaskCLIP path under another name)
    maskclip = dense_features(visual, img, 'maskclip')
    assert (out - maskclip).abs().max() > 1e-3


def test_naclip_std_changes_only_the_neighbourhood(clip14):
    img = torch.randn(1, 3, 56, 56, generator=torch.Generator().manual_seed(1))
    wide = CLIPViTBackbone('ViT-Tiny-14-test', clip14, dense_mode='naclip', naclip_std=1e4)
    narrow = CLIPViTBackbone('ViT-Tiny-14-test', clip14, dense_mode='naclip', naclip_std=0.5)
    with torch.no_grad():
        a, b = wide(img)[0], narrow(img)[0]
    assert (a - b).abs().max() > 1e-3


def test_bad_dense_mode_is_refused(clip14):
    with pytest.raises(ValueError, match="dense_mode must be one of .*'clearclip'"):
        CLIPViTBackbone('ViT-Tiny-14-test', clip14, dense_mode='gem')
    with pytest.raises(ValueError, match='naclip_std must be > 0'):
        CLIPViTBackbone('ViT-Tiny-14-test', clip14, dense_mode='naclip', naclip_std=0)
