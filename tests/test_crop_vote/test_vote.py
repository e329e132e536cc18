"""The crop-vote maths (docs/method.md §5) against independent computations."""
import numpy as np
import pytest
import torch

from mmseg_reclip.crop_vote.vote import global_hypothesis, votes_to_hypothesis, window_boxes


def _edge_aligned_starts(length, window, stride):
    """Independent: all multiples of stride that fit, plus the edge-aligned start."""
    fits, k = [], 0
    while k * stride + window <= length:
        fits.append(k * stride)
        k += 1
    return sorted(set(fits) | {length - window})


def test_window_boxes_exact():
    boxes = window_boxes(100, 120, 56, 28)
    # rows: 0, 28 (+56 = 84 <= 100), then the edge 100 - 56 = 44;
    # cols: 0, 28, 56 (+56 = 112 <= 120), then the edge 120 - 56 = 64.
    ys, xs = [0, 28, 44], [0, 28, 56, 64]
    assert ys == _edge_aligned_starts(100, 56, 28)
    assert xs == _edge_aligned_starts(120, 56, 28)
    expected = [(y, x, y + 56, x + 56) for y in ys for x in xs]
    assert boxes == expected
    # stride None = half the window
    assert window_boxes(100, 120, 56, None) == expected
    # exact fit: no duplicate edge window
    assert window_boxes(84, 84, 56, 28) == [(0, 0, 56, 56), (0, 28, 56, 84), (28, 0, 84, 56),
                                            (28, 28, 84, 84)]


def test_window_boxes_ratio_and_clamp():
    # float window/stride = ratio of the shorter side (100): 50 px, stride 25 px
    assert window_boxes(100, 120, 0.5, None) == window_boxes(100, 120, 50, 25)
    assert window_boxes(100, 120, 0.5, 0.25) == window_boxes(100, 120, 50, 25)
    assert window_boxes(120, 100, 1.0) == [(0, 0, 100, 100), (20, 0, 120, 100)]
    # window larger than the image: clamped to the shorter side
    assert window_boxes(100, 120, 200) == [(0, 0, 100, 100), (0, 20, 100, 120)]
    assert window_boxes(10, 10, 56) == [(0, 0, 10, 10)]
    for bad in (0, -3, 0.0, 1.5, True, '56'):
        with pytest.raises((ValueError, TypeError)):
            window_boxes(100, 120, bad)


@pytest.mark.parametrize('h,w,window,stride', [(100, 120, 56, None), (97, 131, 30, 17),
                                               (375, 500, 56, 28), (33, 200, 0.3, 0.1),
                                               (64, 64, 64, 1), (57, 59, 56, 50)])
def test_window_boxes_cover_every_pixel(h, w, window, stride):
    boxes = window_boxes(h, w, window, stride)
    covered = np.zeros((h, w), dtype=bool)
    sides = set()
    for y0, x0, y1, x1 in boxes:
        assert 0 <= y0 < y1 <= h and 0 <= x0 < x1 <= w
        sides.add((y1 - y0, x1 - x0))
        covered[y0:y1, x0:x1] = True
    assert covered.all()
    assert len(sides) == 1 and len(set(sides.pop())) == 1  # one square size
    assert len(set(boxes)) == len(boxes)


def test_votes_to_hypothesis():
    votes = torch.tensor([3, 3, 3, 1, 1, 0, 7, 3, 3, 1])  # freq: 0 .1, 1 .3, 3 .5, 7 .1
    assert votes_to_hypothesis(votes, 8, 0.0) == [0, 1, 3, 7]
    assert votes_to_hypothesis(votes, 8, 0.3) == [3]  # strictly above θ
    assert votes_to_hypothesis(votes, 8, 0.29) == [1, 3]
    assert votes_to_hypothesis(torch.tensor([], dtype=torch.long), 8, 0.0) == []
    with pytest.raises(ValueError):
        votes_to_hypothesis(torch.tensor([8]), 8, 0.0)


def test_global_hypothesis():
    scores = torch.tensor([10.0, 25.0, 23.0, 22.9, 30.0])
    assert global_hypothesis(scores, 23.0, 2) == [1, 2, 4]  # >= threshold
    assert global_hypothesis(scores, 26.0, 2) == [1, 4]  # 1 passes < 2: top-2
    assert global_hypothesis(scores, 26.0, 1) == [4]
    assert global_hypothesis(scores, 40.0, 3) == [1, 2, 4]
    assert global_hypothesis(scores, 40.0, 0) == []
    assert global_hypothesis(scores, 40.0, 9) == [0, 1, 2, 3, 4]
    assert global_hypothesis(torch.tensor([1.0, 5.0, 5.0, 5.0]), 9.0, 2) == [1, 2]  # ties
