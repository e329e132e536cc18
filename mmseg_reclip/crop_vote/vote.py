"""Crop-vote hypotheses (docs/method.md §5) as pure functions.

ReCLIP++ trains each image against the set of classes it probably contains: square
windows slide over the image (:func:`window_boxes`), CLIP scores each crop with its own
global image path (:func:`global_class_scores`), the top-1 class of a crop is one vote,
and the classes voted more often than ``θ`` form the hypothesis
(:func:`votes_to_hypothesis`). The conference ReCLIP thresholds the whole image's scores
instead (:func:`global_hypothesis`). :class:`CropVoteHypothesisHook` runs them once
before training; nothing here touches files or reads a label.
"""
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn as nn

from ..models.utils.clip_ops import class_max_over_names

__all__ = [
    'Box', 'Length', 'resolve_length', 'window_boxes', 'votes_to_hypothesis', 'global_hypothesis',
    'hypotheses_problem', 'global_class_scores'
]

Box = Tuple[int, int, int, int]
Length = Union[int, float]


def resolve_length(value: Length, short_side: int, name: str = 'window') -> int:
    """A length in pixels: an ``int`` as is, a ``float`` in (0, 1] times ``short_side``.

    Args:
        value (int | float): pixels (``int >= 1``) or a ratio of the shorter image side
            (``float`` in (0, 1], rounded to the nearest pixel, at least 1).
        short_side (int): the image's shorter side, in pixels.
        name (str): argument name for error messages.

    Returns:
        int: the length in pixels.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f'{name} must be an int (pixels) or a float in (0, 1] (ratio of the '
                        f'shorter image side), got {value!r}')
    if isinstance(value, (int, np.integer)):
        if value < 1:
            raise ValueError(f'{name} in pixels must be >= 1, got {value}')
        return int(value)
    if not 0.0 < value <= 1.0:
        raise ValueError(f'{name} as a float is a ratio of the shorter image side and must '
                         f'be in (0, 1], got {value}; give pixels as an int')
    return max(1, int(round(float(value) * short_side)))


def _starts(length: int, window: int, stride: int) -> List[int]:
    """Window start offsets along one axis; the last window is aligned to the edge."""
    starts = list(range(0, length - window + 1, stride))
    if starts[-1] + window < length:
        starts.append(length - window)
    return starts


def window_boxes(h: int, w: int, window: Length, stride: Optional[Length] = None) -> List[Box]:
    """Square sliding windows covering an ``h × w`` image.

    Args:
        h (int): image height.
        w (int): image width.
        window (int | float): window side in pixels (``int``) or as a ratio of
            ``min(h, w)`` (``float`` in (0, 1]). A window larger than the shorter side
            is clamped to it (the crop must stay square and inside the image).
        stride (int | float, optional): step in pixels or as a ratio of ``min(h, w)``;
            ``None``: half the (clamped) window.

    Returns:
        List[Tuple[int, int, int, int]]: ``(y0, x0, y1, x1)`` boxes (end exclusive),
        row-major (top to bottom, then left to right). Starts are ``0, stride,
        2·stride, …``; when the last one does not reach the border, one more window
        aligned to the border is added, so every pixel is covered.
    """
    if h < 1 or w < 1:
        raise ValueError(f'Empty image ({h}x{w})')
    short = min(h, w)
    win = min(resolve_length(window, short, 'window'), short)
    step = max(1, win // 2) if stride is None else resolve_length(stride, short, 'stride')
    return [(y, x, y + win, x + win) for y in _starts(h, win, step) for x in _starts(w, win, step)]


def votes_to_hypothesis(top1: torch.Tensor,
                        num_classes: int,
                        min_frequency: float = 0.0) -> List[int]:
    """Classes whose vote frequency ``votes / num_crops`` is strictly above ``θ``.

    Args:
        top1 (Tensor): ``[N]`` class index voted by each crop.
        num_classes (int): ``C``.
        min_frequency (float): ``θ``; ``0`` keeps every class with at least one vote.

    Returns:
        List[int]: sorted class indices (empty when there is no crop).
    """
    top1 = torch.as_tensor(top1).reshape(-1).long().cpu()
    if top1.numel() == 0:
        return []
    if int(top1.min()) < 0 or int(top1.max()) >= num_classes:
        raise ValueError(f'Votes must lie in [0, {num_classes}), got range '
                         f'[{int(top1.min())}, {int(top1.max())}]')
    freq = torch.bincount(top1, minlength=num_classes).double() / top1.numel()
    return torch.nonzero(freq > min_frequency).flatten().tolist()


def global_hypothesis(scores: torch.Tensor, threshold: float, top_k: int) -> List[int]:
    """Conference ReCLIP: classes with ``score >= threshold``, top-``k`` if fewer.

    Args:
        scores (Tensor): ``[C]`` class scores (the hook passes ``100·cos``).
        threshold (float): keep classes scoring at least this.
        top_k (int): when fewer than ``top_k`` classes pass, take the ``top_k`` best
            instead (ties: the lower index first). ``0`` disables the fallback.

    Returns:
        List[int]: sorted class indices.
    """
    scores = torch.as_tensor(scores).reshape(-1).double().cpu()
    keep = torch.nonzero(scores >= threshold).flatten().tolist()
    if len(keep) < top_k:
        order = torch.argsort(-scores, stable=True)
        keep = order[:min(top_k, scores.numel())].tolist()
    return sorted(int(c) for c in keep)


def hypotheses_problem(hypotheses: Dict[str, Sequence[int]], img_paths: Sequence[str],
                       num_classes: Optional[int]) -> Optional[str]:
    """What is wrong with (cached) hypotheses, or ``None`` when they are usable.

    Args:
        hypotheses (dict): ``{img_path: [class ids]}``.
        img_paths (Sequence[str]): images that must all have an entry.
        num_classes (int, optional): ``C``; ids must lie in ``[0, C)`` (only ``>= 0``
            is checked when ``None``).

    Returns:
        str | None: a short description of the first problem found.
    """
    for path, classes in hypotheses.items():
        if not isinstance(path, str) or not isinstance(classes, (list, tuple)):
            return f'entry {path!r} is not a list of class ids'
        for c in classes:
            if type(c) is not int:  # bool and float are not class ids
                return f'{path}: class id {c!r} is not an int'
            if c < 0 or (num_classes is not None and c >= num_classes):
                return f'{path}: class id {c} outside [0, {num_classes})'
    missing = [p for p in img_paths if p not in hypotheses]
    if missing:
        return f'lacks {len(missing)} of {len(img_paths)} images, e.g. {missing[0]}'
    return None


@torch.no_grad()
def global_class_scores(backbone: nn.Module, head: nn.Module, crops: torch.Tensor) -> torch.Tensor:
    """Cosines of CLIP's global image embedding against the head's queries ``Q``.

    Args:
        backbone (nn.Module): a CLIP backbone with ``encode_image`` (L2-normalised
            ``[N, D]`` global embeddings, e.g. :class:`CLIPViTBackbone`).
        head (nn.Module): a query head with ``queries()`` (``[N_names, D]``),
            ``name_map`` and ``num_classes`` (e.g. :class:`MaskCLIPHead`).
        crops (Tensor): ``[N, 3, S, S]`` normalised crops at CLIP's input size.

    Returns:
        Tensor: ``[N, C]`` scores (max over each class's names).
    """
    emb = backbone.encode_image(crops)
    return class_max_over_names(emb @ head.queries().t(), head.name_map, head.num_classes, dim=-1)
