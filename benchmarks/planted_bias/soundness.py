"""Is the planted-bias world a fair test? Its checks, run by the generator on the
labels it drew (docs/learning_check.md §Soundness). Ground truth is read here, and
only here and in the metrics: never by training.

1. The stage-1 loss (docs/method.md §6) at fixed masks ranks the ground truth clearly
   below MaskCLIP's masks (argmax of ``F·Qᵀ``), and the loss's *own optimum* is right
   where MaskCLIP is wrong: masks optimised freely against the loss (one logit per cell
   and class, no decoder) put the biased cells back into their true class. Ranking the
   truth above MaskCLIP is not enough: a loss can prefer a third set of masks to both
   (for example one that drops the biased cells into a class outside the image's
   hypothesis, where they cost nothing), and then training is pushed there, not to the
   truth.
2. The space bias is not removable by a translation-equivariant 5×5 decoder alone: a
   decoder trained *with the labels* on ``concat(F, Lq)`` (an upper bound for what the
   unsupervised one can do) stays wrong on the biased interior cells, and the same
   decoder given a position-only term ``Conv1x1(PE)`` (what the bias branch adds) is not.
   Measured on the *cue-free* cells: interior cells whose 5×5 view holds one class and
   one value of the profile, so that nothing in view tells where the cell is.
3. The class queries are not near-identical.
"""
from typing import Dict, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from mmseg_reclip.models.losses.contrastive_loss import reclip_contrastive_loss

#: Thresholds of a sound world (the generator refuses to write an unsound one).
MIN_LOSS_GAP = 0.01  # loss(MaskCLIP masks) - loss(GT masks)
MIN_OPTIMUM_GAIN = 25.0  # accuracy points the loss optimum gains over MaskCLIP on biased cells
MIN_POSITION_GAIN = 5.0  # cue-free accuracy points (planted pair) the position term adds
MAX_QUERY_COSINE = 0.99


def patch_labels(label: torch.Tensor, num_classes: int, patch: int = 16) -> torch.Tensor:
    """Majority class of each patch: ``[B, H, W]`` → ``[B, h, w]``."""
    onehot = F.one_hot(label.long(), num_classes).permute(0, 3, 1, 2).float()
    return F.avg_pool2d(onehot, patch, ceil_mode=True).argmax(1)


def masks_of(pred: torch.Tensor, num_classes: int) -> torch.Tensor:
    """One-hot masks ``[B, C, h, w]`` of a patch-label map ``[B, h, w]``."""
    return F.one_hot(pred, num_classes).permute(0, 3, 1, 2).float()


def loss_optimum(feats: torch.Tensor,
                 queries: torch.Tensor,
                 hyp: torch.Tensor,
                 steps: int = 200,
                 lr: float = 0.05,
                 sharpness: float = 10.0) -> torch.Tensor:
    """Cell labels ``[B, h, w]`` that (locally) minimise the stage-1 loss, found without a
    decoder: one free logit per cell and class, soft masks ``softmax(sharpness·O)``,
    Adam from MaskCLIP's logits. A cell may go to a class outside the image's hypothesis
    (it then costs nothing), as the trained model's may."""
    logits = torch.einsum('bdhw,cd->bchw', feats, queries)
    free = (logits * 10).clone().requires_grad_(True)
    opt = torch.optim.Adam([free], lr=lr)
    for _ in range(steps):
        opt.zero_grad()
        reclip_contrastive_loss(feats, torch.softmax(free * sharpness, 1), queries, hyp).backward()
        opt.step()
    return free.detach().argmax(1)


def biased_cells(gt: torch.Tensor, profile: torch.Tensor, pair: tuple,
                 leans: Sequence[Sequence[float]]) -> Dict[str, torch.Tensor]:
    """Where the planted biases act ``{name: [B, h, w] bool}``: ``space`` the cells of
    class ``pair[0]`` with profile ≥ 0.5; ``lean_<c>`` the cells of each leaning class."""
    cells = dict(space=(gt == pair[0]) & (profile[None] >= 0.5))
    for c, _, _ in leans:
        cells[f'lean_{int(c)}'] = gt == int(c)
    return cells


def optimum_check(feats: torch.Tensor, queries: torch.Tensor, gt: torch.Tensor,
                  cells: Dict[str, torch.Tensor]) -> Dict[str, Dict[str, float]]:
    """Stage-1 loss and accuracy on each set of biased ``cells`` of four sets of masks:
    the truth, MaskCLIP's, MaskCLIP's restricted to the image's hypothesis, and the
    loss's own optimum (:func:`loss_optimum`)."""
    num_classes = queries.shape[0]
    hyp = masks_of(gt, num_classes).flatten(2).amax(2).bool()
    logits = torch.einsum('bdhw,cd->bchw', feats, queries)
    preds = dict(
        gt=gt,
        maskclip=logits.argmax(1),
        maskclip_in_hypothesis=logits.masked_fill(~hyp[:, :, None, None], -1e4).argmax(1),
        loss_optimum=loss_optimum(feats, queries, hyp))
    out = {}
    for name, pred in preds.items():
        row = dict(
            loss=float(reclip_contrastive_loss(feats, masks_of(pred, num_classes), queries, hyp)))
        row['acc_all'] = float((pred == gt).float().mean() * 100)
        for key, sel in cells.items():
            row['acc_' + key] = float((pred == gt)[sel].float().mean() * 100)
        out[name] = row
    return out


class _OracleDecoder(nn.Module):
    """``Conv5x5(concat(F, Lq))`` (+ ``Conv1x1(PE)`` with ``position``), trained with labels."""

    def __init__(self, dim: int, num_classes: int, pe_channels: int, position: bool):
        super().__init__()
        self.conv = nn.Conv2d(dim + num_classes, num_classes, 5, padding=2)
        self.pos = nn.Conv2d(pe_channels, num_classes, 1) if position else None

    def forward(self, feats, logits, pe):
        out = self.conv(torch.cat([feats, logits * 10], 1))
        return out + self.pos(pe[None]) if self.pos is not None else out


def cue_free_cells(profile: torch.Tensor, kernel: int = 5, tol: float = 0.05) -> torch.Tensor:
    """``[h, w]`` bool: interior cells (no padding in a ``kernel``-wide view) over whose
    view the profile varies by less than ``tol``: a translation-equivariant
    ``kernel × kernel`` decoder sees no change of the bias there (no rim of an object
    that crosses the profile's transition), so nothing in view tells the position."""
    pad = kernel // 2
    h, w = profile.shape[-2:]
    prof = profile[None, None]
    spread = (F.max_pool2d(prof, kernel, 1, pad) + F.max_pool2d(-prof, kernel, 1, pad))[0, 0]
    interior = torch.zeros(h, w, dtype=torch.bool)
    interior[pad:h - pad, pad:w - pad] = True
    return interior & (spread < tol)


def decoder_check(feats: torch.Tensor,
                  queries: torch.Tensor,
                  gt: torch.Tensor,
                  pe: torch.Tensor,
                  profile: torch.Tensor,
                  pair: tuple,
                  steps: int = 600,
                  seed: int = 0) -> Dict[str, Dict[str, float]]:
    """Accuracy on the cells of the planted pair ``(a, b)`` of two label-trained
    decoders, without and with a position-only term, and of MaskCLIP: on all interior
    cells (≥ 2 from the border, where a 5×5 convolution sees no padding) and on the
    cue-free ones (:func:`cue_free_cells`). The decoders are trained on the first half
    of the images and scored on the second."""
    torch.manual_seed(seed)
    num_classes = queries.shape[0]
    logits = torch.einsum('bdhw,cd->bchw', feats, queries)
    h, w = gt.shape[-2:]
    interior = torch.zeros(h, w, dtype=torch.bool)
    interior[2:h - 2, 2:w - 2] = True
    in_pair = (gt == pair[0]) | (gt == pair[1])
    regions = dict(
        interior=interior[None] & in_pair, cue_free=cue_free_cells(profile)[None] & in_pair)
    # trained on the first half of the images, scored on the second: a decoder scored on
    # its own training cells can memorise their noise and look less ambiguous than it is
    half = gt.shape[0] // 2
    fit, held = slice(0, half), slice(half, None)
    preds = dict(maskclip=logits.argmax(1)[held])
    for name, position in (('equivariant', False), ('with_position', True)):
        model = _OracleDecoder(feats.shape[1], num_classes, pe.shape[0], position)
        opt = torch.optim.Adam(model.parameters(), lr=0.02)
        for _ in range(steps):
            opt.zero_grad()
            loss = F.cross_entropy(model(feats[fit], logits[fit], pe), gt[fit])
            loss.backward()
            opt.step()
        with torch.no_grad():
            preds[name] = model(feats[held], logits[held], pe).argmax(1)
    gt = gt[held]
    regions = {key: sel[held] for key, sel in regions.items()}
    out = {}
    for region, sel in regions.items():
        out[region] = {
            name: float((pred == gt)[sel].float().mean() * 100)
            for name, pred in preds.items()
        }
        out[region]['cells'] = int(sel.sum())
    return out


def query_check(queries: torch.Tensor) -> Dict[str, float]:
    """Largest off-diagonal cosine between class queries."""
    cos = queries @ queries.t()
    cos.fill_diagonal_(-1)
    return dict(max_cosine=float(cos.max()))


def run_checks(feats: torch.Tensor,
               queries: torch.Tensor,
               gt: torch.Tensor,
               pe: torch.Tensor,
               profile: torch.Tensor,
               pair: tuple,
               leans: Sequence[Sequence[float]] = ()) -> Dict[str, object]:
    """All four checks; ``sound`` says whether each passed its threshold."""
    optimum = optimum_check(feats, queries, gt, biased_cells(gt, profile, pair, leans))
    # check 1a reads the same masks as 1b: the loss at GT and at MaskCLIP's masks
    loss = dict(
        gt=optimum['gt']['loss'],
        maskclip=optimum['maskclip']['loss'],
        maskclip_patch_acc=optimum['maskclip']['acc_all'])
    dec = decoder_check(feats, queries, gt, pe, profile, pair)
    qry = query_check(queries)
    # where the planted biases make MaskCLIP wrong (a lean too weak to flip the argmax
    # shapes the features without being an error to correct)
    gains = {
        key[4:]: optimum['loss_optimum'][key] - optimum['maskclip'][key]
        for key in optimum['gt']
        if key.startswith('acc_') and key != 'acc_all' and optimum['maskclip'][key] < 50
    }
    cue_free = dec['cue_free']
    sound = dict(
        loss_ranks_gt_first=loss['maskclip'] - loss['gt'] >= MIN_LOSS_GAP,
        loss_optimum_rectifies=all(g >= MIN_OPTIMUM_GAIN for g in gains.values()),
        space_bias_needs_position=(cue_free['with_position'] - cue_free['equivariant']
                                   >= MIN_POSITION_GAIN),
        queries_distinct=qry['max_cosine'] <= MAX_QUERY_COSINE)
    return dict(
        stage1_loss_at_masks=loss,
        loss_optimum=optimum,
        loss_optimum_gain_on_biased_cells=gains,
        pair_cell_accuracy=dec,
        queries=qry,
        sound=sound,
        thresholds=dict(
            min_loss_gap=MIN_LOSS_GAP,
            min_optimum_gain=MIN_OPTIMUM_GAIN,
            min_position_gain=MIN_POSITION_GAIN,
            max_query_cosine=MAX_QUERY_COSINE))
