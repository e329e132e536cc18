"""Is the planted-bias world a fair test? Three checks, run by the generator on the
labels it drew (docs/learning_check.md §Soundness). Ground truth is read here, and
only here and in the metrics: never by training.

1. The stage-1 loss (docs/method.md §6) at fixed masks ranks the ground truth clearly
   below MaskCLIP's masks (argmax of ``F·Qᵀ``): otherwise no optimiser is pushed
   towards the truth.
2. The space bias is not removable by a translation-equivariant 5×5 decoder alone: a
   decoder trained *with the labels* on ``concat(F, Lq)`` (an upper bound for what the
   unsupervised one can do) stays wrong on the biased interior cells, and the same
   decoder given a position-only term ``Conv1x1(PE)`` (what the bias branch adds) is not.
3. The class queries are not near-identical.
"""
from typing import Dict

import torch
import torch.nn as nn
import torch.nn.functional as F

from mmseg_reclip.models.losses.contrastive_loss import reclip_contrastive_loss

#: Thresholds of a sound world (the generator refuses to write an unsound one).
MIN_LOSS_GAP = 0.01  # loss(MaskCLIP masks) - loss(GT masks)
MIN_POSITION_GAIN = 3.0  # interior accuracy points (planted pair) the position term adds
MAX_QUERY_COSINE = 0.99


def patch_labels(label: torch.Tensor, num_classes: int, patch: int = 16) -> torch.Tensor:
    """Majority class of each patch: ``[B, H, W]`` → ``[B, h, w]``."""
    onehot = F.one_hot(label.long(), num_classes).permute(0, 3, 1, 2).float()
    return F.avg_pool2d(onehot, patch, ceil_mode=True).argmax(1)


def masks_of(pred: torch.Tensor, num_classes: int) -> torch.Tensor:
    """One-hot masks ``[B, C, h, w]`` of a patch-label map ``[B, h, w]``."""
    return F.one_hot(pred, num_classes).permute(0, 3, 1, 2).float()


def loss_at_masks(feats: torch.Tensor, queries: torch.Tensor, gt: torch.Tensor) -> Dict[str, float]:
    """Stage-1 loss at the GT masks and at MaskCLIP's, with the true classes of each
    image as its hypothesis (what unbiased crop votes give)."""
    num_classes = queries.shape[0]
    hyp = masks_of(gt, num_classes).flatten(2).amax(2).bool()
    maskclip = torch.einsum('bdhw,cd->bchw', feats, queries).argmax(1)
    out = {}
    for name, pred in (('gt', gt), ('maskclip', maskclip)):
        out[name] = float(reclip_contrastive_loss(feats, masks_of(pred, num_classes), queries, hyp))
    out['maskclip_patch_acc'] = float((maskclip == gt).float().mean() * 100)
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


def decoder_check(feats: torch.Tensor,
                  queries: torch.Tensor,
                  gt: torch.Tensor,
                  pe: torch.Tensor,
                  profile: torch.Tensor,
                  pair: tuple,
                  steps: int = 300,
                  seed: int = 0) -> Dict[str, float]:
    """Interior accuracy (cells >= 2 from the border, where a 5x5 convolution sees no
    padding) on the cells of the planted pair ``(a, b)`` (labelled ``a`` or ``b``) of two
    label-trained decoders: without and with a position-only term. ``profile`` is
    unused by the decoders (kept for the report's per-position split)."""
    torch.manual_seed(seed)
    num_classes = queries.shape[0]
    logits = torch.einsum('bdhw,cd->bchw', feats, queries)
    h, w = gt.shape[-2:]
    interior = torch.zeros(h, w, dtype=torch.bool)
    interior[2:h - 2, 2:w - 2] = True
    region = interior[None] & ((gt == pair[0]) | (gt == pair[1]))
    out = {}
    for name, position in (('equivariant', False), ('with_position', True)):
        model = _OracleDecoder(feats.shape[1], num_classes, pe.shape[0], position)
        opt = torch.optim.Adam(model.parameters(), lr=0.02)
        for _ in range(steps):
            opt.zero_grad()
            loss = F.cross_entropy(model(feats, logits, pe), gt)
            loss.backward()
            opt.step()
        with torch.no_grad():
            pred = model(feats, logits, pe).argmax(1)
        out[name] = float((pred == gt)[region].float().mean() * 100)
    out['maskclip'] = float((logits.argmax(1) == gt)[region].float().mean() * 100)
    return out


def query_check(queries: torch.Tensor) -> Dict[str, float]:
    """Largest off-diagonal cosine between class queries."""
    cos = queries @ queries.t()
    cos.fill_diagonal_(-1)
    return dict(max_cosine=float(cos.max()))


def run_checks(feats: torch.Tensor, queries: torch.Tensor, gt: torch.Tensor, pe: torch.Tensor,
               profile: torch.Tensor, pair: tuple) -> Dict[str, object]:
    """All three checks; ``sound`` says whether each passed its threshold."""
    loss = loss_at_masks(feats, queries, gt)
    dec = decoder_check(feats, queries, gt, pe, profile, pair)
    qry = query_check(queries)
    sound = dict(
        loss_ranks_gt_first=loss['maskclip'] - loss['gt'] >= MIN_LOSS_GAP,
        space_bias_needs_position=dec['with_position'] - dec['equivariant'] >= MIN_POSITION_GAIN,
        queries_distinct=qry['max_cosine'] <= MAX_QUERY_COSINE)
    return dict(
        stage1_loss_at_masks=loss,
        interior_biased_acc=dec,
        queries=qry,
        sound=sound,
        thresholds=dict(
            min_loss_gap=MIN_LOSS_GAP,
            min_position_gain=MIN_POSITION_GAIN,
            max_query_cosine=MAX_QUERY_COSINE))
