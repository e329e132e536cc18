"""Test-time prompt denoising (method §8) against a direct computation."""
import torch

from mmseg_reclip.models.segmentors import prompt_denoise


def test_removes_classes_below_threshold():
    logits = torch.zeros(1, 3, 2, 2)
    logits[0, 0] = 1.0  # class 0 dominates everywhere
    logits[0, 1, 0, 0] = 2.0  # class 1 wins one pixel
    out = prompt_denoise(logits, threshold=0.9, temperature=10.0)
    probs = (10 * logits).softmax(1).flatten(2).amax(2)[0]
    for c in range(3):
        if probs[c] >= 0.9:
            assert torch.equal(out[0, c], logits[0, c])
        else:
            assert (out[0, c] == -100).all()
    assert probs[2] < 0.9 and (out[0, 2] == -100).all()


def test_never_removes_every_class():
    logits = torch.randn(2, 4, 3, 3) * 0.01  # flat: no class reaches 1.0
    out = prompt_denoise(logits, threshold=1.0)
    probs = (10 * logits).softmax(1).flatten(2).amax(2)
    best = probs.argmax(1)
    for b in range(2):
        assert torch.equal(out[b, best[b]], logits[b, best[b]])
        assert out[b].argmax(0).eq(best[b]).all()
