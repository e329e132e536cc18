"""The planted-bias world's pieces (benchmarks/planted_bias, docs/learning_check.md):
profiles, cue-free cells, texture read-out and the loss-optimum soundness check, each
against an independent computation; and the check rejecting the first world, which the
old soundness checks passed while its loss optimum dropped the biased cells."""
import itertools

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from benchmarks.planted_bias import world as W
from benchmarks.planted_bias.generate import generate
from benchmarks.planted_bias.inspect_run import cue_free_pixels, twin_accuracy
from benchmarks.planted_bias.soundness import cue_free_cells, loss_optimum


def test_top_profile_is_one_above_and_zero_below():
    prof = W.top_profile((14, 14), -0.1, 0.1)
    rows = (torch.arange(14) + 0.5) / 14 * 2 - 1
    assert torch.equal(prof[rows <= -0.1], torch.ones_like(prof[rows <= -0.1]))
    assert torch.equal(prof[rows >= 0.1], torch.zeros_like(prof[rows >= 0.1]))
    assert torch.all(prof[1:, 0] <= prof[:-1, 0])  # decreasing downwards
    assert torch.equal(prof, prof[:, :1].expand(14, 14))  # a function of the row only
    with pytest.raises(ValueError, match='Unknown profile kind'):
        W.profile_grid((14, 14), 'left', 0, 1)


@pytest.mark.parametrize('kind,r0,r1', [('top', -0.1, 0.1), ('border', 0.2, 0.7),
                                        ('border', 0.3, 0.4)])
def test_cue_free_cells_match_a_brute_force_scan(kind, r0, r1):
    prof = W.profile_grid((14, 14), kind, r0, r1)
    expected = torch.zeros(14, 14, dtype=torch.bool)
    for i, j in itertools.product(range(2, 12), repeat=2):
        view = prof[i - 2:i + 3, j - 2:j + 3]
        expected[i, j] = bool(view.max() - view.min() < 0.05)
    assert torch.equal(cue_free_cells(prof), expected)


def test_top_profile_leaves_cue_free_bands_on_both_sides():
    prof = W.top_profile((14, 14), -0.1, 0.1)
    cells = cue_free_cells(prof)
    assert cells[prof > 0.5].sum() >= 10 and cells[prof < 0.5].sum() >= 10
    # the first world's border profile has none: a 5x5 view always sees it change
    assert not cue_free_cells(W.border_profile((14, 14), 0.2, 0.7)).any()


def test_twin_accuracy_counts_only_the_cue_free_twins():
    """Car (0) above, house (1) below, on a 224-pixel top-profile world: the cue-free
    pixels are 16 × 16 blocks of :func:`cue_free_cells`, a position-blind "house
    everywhere" scores 50, the truth 100, and errors off the cue-free twins count for
    nothing."""
    world = dict(profile=dict(kind='top', r0=-0.1, r1=0.1))
    free = cue_free_pixels(world, 224)
    cells = cue_free_cells(W.top_profile((14, 14), -0.1, 0.1))
    assert torch.equal(free, cells.repeat_interleave(16, 0).repeat_interleave(16, 1))
    profile = (torch.arange(224) < 112).float()[:, None].expand(224, 224)
    gt = torch.where(profile >= 0.5, 0, 1)[None].repeat(2, 1, 1)
    gt[1, :, :112] = 2  # another class: not a twin
    assert twin_accuracy(torch.ones_like(gt), gt, profile, free, (0, 1)) == 50.0
    assert twin_accuracy(gt.clone(), gt, profile, free, (0, 1)) == 100.0
    wrong_elsewhere = torch.where(free[None], gt, 3)
    assert twin_accuracy(wrong_elsewhere, gt, profile, free, (0, 1)) == 100.0
    half = gt.clone()
    half[0][free & (profile >= 0.5)] = 1  # image 0's upper twins wrong: 1 of 2 images' cars
    upper = (gt == 0) & free[None] & (profile[None] >= 0.5)
    expected = (1 - (upper[0].sum() / upper.sum()).item()) * 50 + 50
    assert twin_accuracy(half, gt, profile, free, (0, 1)) == pytest.approx(expected, rel=1e-6)


def test_texture_reads_noise_not_the_colour_edges():
    colours = torch.tensor(W.default_colours(6), dtype=torch.float32)
    label = np.zeros((64, 64), dtype=np.int64)
    label[:, 20:] = 4
    label[37:, 5:50] = 5  # edges cut through patches and sub-patches
    flat = colours[torch.from_numpy(label)].permute(2, 0, 1)[None]
    assert torch.equal(W.patch_texture(flat, colours, 25.0), torch.zeros(1, 12, 4, 4))
    rng = np.random.default_rng(0)
    noisy = torch.from_numpy(W.render(rng, label.astype(np.uint8), colours.numpy(), 25.0))
    noisy = noisy.permute(2, 0, 1)[None].float()
    tex = W.patch_texture(noisy, colours, 25.0)
    assert abs(float(tex.std()) - 1.0) < 0.25  # ~N(0, 1) per statistic


def _two_cell_world():
    """Orthonormal queries of 3 classes; one image of 2 x 4 cells, hypothesis {0, 1}."""
    queries = torch.eye(3, 8)
    gt = torch.tensor([[[0, 0, 1, 1], [0, 0, 1, 1]]])
    hyp = torch.tensor([[True, True, False]])
    return queries, gt, hyp


def test_loss_optimum_is_the_truth_when_features_are_the_queries():
    queries, gt, hyp = _two_cell_world()
    feats = queries[gt].permute(0, 3, 1, 2)  # [1, 8, 2, 4]
    assert torch.equal(loss_optimum(feats, queries, hyp), gt)


def test_loss_optimum_drops_cells_into_a_class_outside_the_hypothesis():
    queries, gt, hyp = _two_cell_world()
    feats = queries[gt].permute(0, 3, 1, 2).clone()
    # the class-1 cells lean strongly towards class 2, which the image does not hold:
    # in class 1 they would pull its pooled feature towards 2; in class 2 they cost nothing
    leaning = F.normalize(0.3 * queries[1] + queries[2], dim=0)
    feats[0, :, :, 2:] = leaning[:, None, None]
    opt = loss_optimum(feats, queries, hyp)
    assert torch.equal(opt[0, :, :2], gt[0, :, :2])
    assert torch.all(opt[0, :, 2:] == 2)


def test_soundness_rejects_the_first_world(tmp_path):
    """The first world (border profile, car/house shift 2.0, water → sky 0.6): the old
    checks passed it (GT below MaskCLIP in loss), but the loss's own optimum keeps few
    of the biased cars: the new check says unsound."""
    report = generate(
        str(tmp_path / 'first'),
        num_train=2,
        num_val=60,
        check=False,
        profile='border',
        r0=0.2,
        r1=0.7,
        lean=[[2, 0, 0.6]],
        space=[4, 5, 2.0])
    assert report['stage1_loss_at_masks']['gt'] < report['stage1_loss_at_masks']['maskclip']
    assert report['sound']['loss_optimum_rectifies'] is False
    optimum = report['loss_optimum']
    assert optimum['loss_optimum']['acc_space'] < optimum['maskclip_in_hypothesis']['acc_space']
