"""Small pure tensor functions shared by the CLIP backbone, heads and losses."""
from typing import Optional

import torch
import torch.nn.functional as F

from ...utils.amp import fp32
from ...utils.seeding import step_generator


def resize_pos_embed_grid(pos_embed: torch.Tensor, size: tuple) -> torch.Tensor:
    """Resize a ViT patch positional-embedding grid bicubically.

    Args:
        pos_embed (Tensor): ``[C, gh, gw]`` grid (CLS position removed).
        size (tuple): target ``(h, w)``.

    Returns:
        Tensor: ``[C, h, w]``.
    """
    if tuple(pos_embed.shape[-2:]) == tuple(size):
        return pos_embed
    return F.interpolate(pos_embed[None], size=size, mode='bicubic', align_corners=False)[0]


def class_max_over_names(scores: torch.Tensor,
                         name_to_class: Optional[torch.Tensor],
                         num_classes: int,
                         dim: int = 1) -> torch.Tensor:
    """Reduce per-name scores to per-class scores by a max over each class's synonyms.

    Args:
        scores (Tensor): scores with ``N`` names along ``dim``.
        name_to_class (Tensor | None): ``[N]`` long, the class of each name; ``None``
            means one name per class (identity).
        num_classes (int): ``C``.

    Returns:
        Tensor: same shape as ``scores`` with ``C`` along ``dim``.
    """
    if name_to_class is None:
        return scores
    identity = torch.arange(num_classes, device=name_to_class.device)
    if scores.shape[dim] == num_classes and bool((name_to_class == identity).all()):
        return scores
    moved = scores.movedim(dim, -1)
    out = moved.new_full(moved.shape[:-1] + (num_classes, ), float('-inf'))
    index = name_to_class.to(moved.device).expand_as(moved)
    out = out.scatter_reduce(-1, index, moved, reduce='amax', include_self=True)
    return out.movedim(-1, dim)


def name_map(name_to_class: torch.Tensor, num_classes: int) -> Optional[torch.Tensor]:
    """``name_to_class`` ``[N]``, or ``None`` when every class has exactly one name.

    Then the map is the identity by construction, and passing ``None`` spares
    :func:`class_max_over_names` its identity check, a device→host sync per call on
    GPUs (which would stall the crop-vote and training pipelines). Decided from the
    shape alone (no sync).
    """
    return None if name_to_class.numel() == num_classes else name_to_class


def dense_class_logits(feats: torch.Tensor, embeds: torch.Tensor,
                       name_to_class: Optional[torch.Tensor], num_classes: int) -> torch.Tensor:
    """Cosine logits of a dense feature map against text embeddings.

    Args:
        feats (Tensor): ``[B, D, h, w]`` L2-normalised features.
        embeds (Tensor): ``[N, D]`` L2-normalised name embeddings.

    Returns:
        Tensor: ``[B, C, h, w]`` (max over synonyms).
    """
    logits = torch.einsum('bdhw,nd->bnhw', feats, embeds.to(feats.dtype))
    return class_max_over_names(logits, name_to_class, num_classes, dim=1)


@fp32  # scale-100 logits and argmax ties: bf16/fp16 would change the winning class
def gumbel_softmax_hard(logits: torch.Tensor,
                        tau: float = 1.0,
                        dim: int = 1,
                        generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Straight-through hard Gumbel-softmax with an explicit generator.

    Forward value is one-hot along ``dim``; the gradient is that of the soft sample.
    Always computed in fp32 (autocast off): the logits are multiplied by 100 before.

    Args:
        logits (Tensor): e.g. ``[B, C, h, w]`` (already multiplied by the Gumbel scale).
        tau (float): temperature.
        generator (torch.Generator, optional): source of the uniform noise.

    Returns:
        Tensor: same shape as ``logits``.
    """
    uniform = torch.rand(
        logits.shape, generator=generator, device=logits.device, dtype=logits.dtype)
    eps = torch.finfo(logits.dtype).tiny
    neg_log_u = (-torch.log(uniform.clamp_min(eps))).clamp_min(eps)
    gumbels = -torch.log(neg_log_u)
    soft = ((logits + gumbels) / tau).softmax(dim)
    hard = torch.zeros_like(soft).scatter_(dim, soft.argmax(dim, keepdim=True), 1.0)
    return hard - soft.detach() + soft


def gumbel_masks(logits: torch.Tensor,
                 scale: float = 100.0,
                 tau: float = 1.0,
                 base_seed: Optional[int] = None) -> torch.Tensor:
    """Hard Gumbel-softmax masks over classes (docs/method.md §4), seeded per training step.

    ``gumbel_softmax_hard(scale · logits, tau)`` along ``dim=1`` with noise from
    :func:`~mmseg_reclip.utils.seeding.step_generator` (seed, iteration, rank).

    Args:
        logits (Tensor): ``[B, C, h, w]`` decoder output ``O``.
        scale (float): multiplier before the softmax (100; conference ReCLIP 1000).
        tau (float): temperature (1).
        base_seed (int, optional): base seed (default: the Runner's seed).

    Returns:
        Tensor: ``[B, C, h, w]`` one-hot along ``C`` (straight-through gradient).
    """
    gen = step_generator(logits.device, base_seed)
    return gumbel_softmax_hard(scale * logits, tau, 1, gen)
