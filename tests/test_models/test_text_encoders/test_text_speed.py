"""The batched shared-prefix Reference encoding: equality with the naive C-prompt encoding
across repeated calls (cached constants), cache invalidation, bf16 autocast, and the
opt-in ``torch.compile`` path.

The compile test takes ~70 s on a 2-core CPU (inductor builds C++ kernels), so it runs
only with ``MMSEG_RECLIP_TEST_COMPILE=1`` or on a machine with CUDA.
"""
import os

import pytest
import torch

from mmseg_reclip.models.text_encoders import OpenCLIPTextEncoder
from mmseg_reclip.models.text_encoders.clip_text import encode_shared_prefix
from tests.clip_utils import TINY, save_random_clip


@pytest.fixture(scope='module')
def tiny_file(tmp_path_factory):
    return save_random_clip(str(tmp_path_factory.mktemp('clip') / 'tiny.pt'), TINY)


def names(n):
    return [f'thing number {i} of the {"very " * (i % 4)}long list' for i in range(n)]


def fwd_bwd(encode, context, tokens, eot):
    context = context.detach().clone().requires_grad_(True)
    out = encode(context, tokens, eot)
    out.square().sum().backward()
    return out.detach(), context.grad


def test_repeated_steps_equal_naive(tiny_file):
    enc = OpenCLIPTextEncoder(TINY, pretrained=tiny_file)
    tokens, eot = enc.name_tokens(names(30), 8, 'eot')
    for seed in range(3):  # the cached suffix/mask/indices serve every step
        ctx = 0.1 * torch.randn(8, enc.width, generator=torch.Generator().manual_seed(seed))
        fast, g_fast = fwd_bwd(enc.encode_context_prompts, ctx, tokens, eot)
        naive, g_naive = fwd_bwd(enc.encode_context_prompts_naive, ctx, tokens, eot)
        assert (fast - naive).abs().max() <= 1e-5
        assert (g_fast - g_naive).abs().max() <= 1e-5 * g_naive.abs().max()
    assert len(enc._prompt_cache) == 1


def test_constants_follow_token_changes(tiny_file):
    enc = OpenCLIPTextEncoder(TINY, pretrained=tiny_file)
    tokens, eot = enc.name_tokens(names(5), 8, 'eot')
    ctx = 0.1 * torch.randn(8, enc.width, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        before = enc.encode_context_prompts(ctx, tokens, eot)
        # new frozen weights (as a loaded state dict would bring): the cache must follow
        enc.tower.token_embedding.weight.mul_(1.5)
        after = enc.encode_context_prompts(ctx, tokens, eot)
        naive = enc.encode_context_prompts_naive(ctx, tokens, eot)
        assert (after - before).abs().max() > 1e-3
        assert (after - naive).abs().max() <= 1e-5
        # other name tokens (same shape), changed in place
        other, _ = enc.name_tokens(names(10)[5:], 8, 'eot')
        tokens.copy_(other)
        assert (enc.encode_context_prompts(ctx, tokens, eot) -
                enc.encode_context_prompts_naive(ctx, tokens, eot)).abs().max() <= 1e-5


def test_mask_argument_and_no_blocks(tiny_file):
    enc = OpenCLIPTextEncoder(TINY, pretrained=tiny_file)
    blocks = enc.tower.transformer.resblocks
    g = torch.Generator().manual_seed(0)
    prefix, suffix = torch.randn(
        5, enc.width, generator=g), torch.randn(
            3, 4, enc.width, generator=g)
    with torch.no_grad():
        a = encode_shared_prefix(blocks, prefix, suffix)
        b = encode_shared_prefix(blocks, prefix, suffix, torch.ones(4, 9, dtype=torch.bool).tril(5))
    assert torch.equal(a, b)
    assert torch.equal(encode_shared_prefix([], prefix, suffix), suffix)


def test_bf16_autocast_close(tiny_file):
    enc = OpenCLIPTextEncoder(TINY, pretrained=tiny_file)
    tokens, eot = enc.name_tokens(names(20), 8, 'eot')
    ctx = 0.1 * torch.randn(8, enc.width, generator=torch.Generator().manual_seed(0))
    ref, g_ref = fwd_bwd(enc.encode_context_prompts_naive, ctx, tokens, eot)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        amp, g_amp = fwd_bwd(enc.encode_context_prompts, ctx, tokens, eot)
    assert torch.isfinite(amp).all() and torch.isfinite(g_amp).all()
    assert g_amp.dtype == torch.float32  # the context parameter's gradient stays fp32
    scale = ref.abs().max()
    assert (amp.float() - ref).abs().max() <= 0.05 * scale
    cos = torch.nn.functional.cosine_similarity(g_amp.flatten(), g_ref.flatten(), dim=0)
    assert cos > 0.99


@pytest.mark.skipif(
    not (os.environ.get('MMSEG_RECLIP_TEST_COMPILE') == '1' or torch.cuda.is_available()),
    reason='torch.compile takes ~70 s on a small CPU; set '
    'MMSEG_RECLIP_TEST_COMPILE=1 to run it')
def test_compiled_equals_eager(tiny_file):
    device = 'cuda' if torch.cuda.is_available() else 'cpu'
    enc = OpenCLIPTextEncoder(TINY, pretrained=tiny_file).to(device)
    tokens, eot = enc.name_tokens(names(10), 8, 'eot')
    ctx = 0.1 * torch.randn(8, enc.width, generator=torch.Generator().manual_seed(0))
    ctx = ctx.to(device)
    eager, g_eager = fwd_bwd(enc.encode_context_prompts, ctx, tokens, eot)
    enc.compile_mode = 'default'
    for _ in range(2):  # compile, then the compiled graph
        comp, g_comp = fwd_bwd(enc.encode_context_prompts, ctx, tokens, eot)
        assert (comp - eager).abs().max() <= 1e-5
        assert (g_comp - g_eager).abs().max() <= 1e-4 * g_eager.abs().max()
