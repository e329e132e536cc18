"""LinearProbeHead (paper Table I, docs/method.md §11.9): logits = W·e + b per pixel."""
import torch
from mmseg.registry import MODELS

import mmseg_reclip  # noqa: F401


def test_linear_probe_equals_einsum():
    head = MODELS.build(dict(type='LinearProbeHead', in_channels=6, num_classes=4))
    assert [n for n, _ in head.named_parameters()] == ['conv_seg.weight', 'conv_seg.bias']
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        head.conv_seg.weight.copy_(torch.randn(4, 6, 1, 1, generator=g))
        head.conv_seg.bias.copy_(torch.randn(4, generator=g))
    emb = torch.randn(2, 6, 3, 5, generator=g)
    out = head.forward([emb])
    w, b = head.conv_seg.weight[:, :, 0, 0].double(), head.conv_seg.bias.double()
    expected = torch.einsum('kd,bdhw->bkhw', w, emb.double()) + b[None, :, None, None]
    assert torch.allclose(
        out.double(), expected, rtol=1e-6, atol=1e-6 * float(expected.abs().max()))
