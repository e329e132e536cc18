"""The planted-bias world as small pure functions (docs/learning_check.md).

A world is a ``dict`` (saved as ``world.json`` beside the generated data) that fixes:

- ``classes``: ``C`` class names (the heads read them from ``classes.txt``);
- ``colours``: one RGB colour per class: the image content;
- ``lean``: ``[[c, d, γ], ...]``: *class preference*, the features of class ``c`` are
  ``(1 − γ)·Q_c + γ·Q_d`` wherever ``c`` is;
- ``space``: ``[a, b, β]``: *space preference*, the features of the classes
  ``space_classes`` get ``β·ρ(x)·(Q_b − Q_a)`` added, ``ρ`` the border profile of the
  network input (0 in the centre, 1 towards the border): class ``b`` is favoured over
  ``a`` by absolute position. The profile is channel 0 of the CLIP file's
  positional-embedding grid, the grid the bias extractor reads (docs/method.md §3), so
  ``B = Conv1x1(PE)·Rᵀ`` can represent it;
- ``noise``: scale of a per-patch nuisance direction read from the image texture.

The toy image tower (:class:`PlantedBiasCLIP`) computes the features from the pixels
with :func:`patch_class_evidence` and :func:`planted_features`. The crop-vote embedding
(:func:`global_embedding`) is the content alone: no space bias, no noise.
"""
from typing import List, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F

PATCH = 16
#: Sub-patch split of the texture read-out (2 x 2 sub-patches, 3 colours each).
TEXTURE_DIMS = 12


def border_profile(grid: Tuple[int, int], r0: float, r1: float) -> torch.Tensor:
    """``ρ`` ``[gh, gw]``: 0 inside radius ``r0``, 1 outside ``r1`` (smoothstep between).

    Radius of a cell centre in the square ``[-1, 1]²`` (Euclidean, so the corners reach
    ``√2``). With ``r1`` below ~0.6 the profile saturates inside the cells a 5×5
    convolution sees without its zero padding (cells 2 … g − 3 of a ``g``-grid).
    """
    gh, gw = grid
    v = (torch.arange(gh, dtype=torch.float64) + 0.5) / gh * 2 - 1
    u = (torch.arange(gw, dtype=torch.float64) + 0.5) / gw * 2 - 1
    r = torch.sqrt(v[:, None]**2 + u[None, :]**2)
    t = ((r - r0) / (r1 - r0)).clamp(0, 1)
    return (t * t * (3 - 2 * t)).float()


def top_profile(grid: Tuple[int, int], y0: float, y1: float) -> torch.Tensor:
    """``ρ`` ``[gh, gw]``: 1 above row coordinate ``y0``, 0 below ``y1`` (smoothstep between),
    rows at ``[-1, 1]`` from top to bottom: the bias acts on the upper part of the input.

    Unlike :func:`border_profile` it leaves wide bands of constant ``ρ`` away from the
    image border, where a 5×5 view shows no change of the bias (cue-free cells,
    ``soundness.cue_free_cells``)."""
    gh, gw = grid
    v = (torch.arange(gh, dtype=torch.float64) + 0.5) / gh * 2 - 1
    t = ((y1 - v) / (y1 - y0)).clamp(0, 1)
    return (t * t * (3 - 2 * t)).float()[:, None].expand(gh, gw).contiguous()


def profile_grid(grid: Tuple[int, int], kind: str, r0: float, r1: float) -> torch.Tensor:
    """The planted profile of ``kind`` ``'border'`` (:func:`border_profile`) or ``'top'``
    (:func:`top_profile`) on ``grid``."""
    if kind == 'border':
        return border_profile(grid, r0, r1)
    if kind == 'top':
        return top_profile(grid, r0, r1)
    raise ValueError(f'Unknown profile kind {kind!r}: use "border" or "top".')


def planted_pos_embed(width: int,
                      grid: Tuple[int, int],
                      r0: float,
                      r1: float,
                      seed: int,
                      kind: str = 'border') -> torch.Tensor:
    """A ViT patch PE grid ``[width, gh, gw]``: channel 0 is the profile
    (:func:`profile_grid`), the others random ``N(0, 0.1²)`` (seeded) so that the PE is
    not trivially low-rank."""
    gen = torch.Generator().manual_seed(seed)
    pe = torch.randn(width, *grid, generator=gen) * 0.1
    pe[0] = profile_grid(grid, kind, r0, r1)
    return pe


def patch_colours(img_rgb: torch.Tensor) -> torch.Tensor:
    """Mean colour of every 16×16 patch: ``[B, 3, H, W]`` (0-255) → ``[B, 3, h, w]``."""
    return F.avg_pool2d(img_rgb, PATCH, ceil_mode=True)


def patch_class_evidence(img_rgb: torch.Tensor, colours: torch.Tensor,
                         sharpness: float) -> torch.Tensor:
    """Soft class content of each patch: softmax over classes of
    ``−‖mean colour − colour_k‖ / sharpness`` ``[B, C, h, w]``. A patch on a region
    boundary mixes the classes it covers."""
    mean = patch_colours(img_rgb)  # [B, 3, h, w]
    dist = torch.cdist(mean.permute(0, 2, 3, 1).flatten(1, 2), colours[None].to(mean))
    prob = torch.softmax(-dist / sharpness, dim=-1)  # [B, hw, C]
    return prob.transpose(1, 2).reshape(mean.shape[0], -1, *mean.shape[-2:])


def patch_texture(img_rgb: torch.Tensor, colours: torch.Tensor, pixel_noise: float) -> torch.Tensor:
    """Texture statistics ``[B, 12, h, w]``: the 2×2 sub-patch means of each pixel's
    residual from its nearest class colour, divided by the spread that i.i.d. pixel
    noise of std ``pixel_noise`` gives them (so each is ~N(0, 1) on the generated images).

    Residuals, not raw colours: at a region boundary the raw sub-patch means differ by
    the two classes' colour contrast, which would tell a decoder which classes meet there
    (and so, for the planted pair, which one a biased cell really is)."""
    pix = img_rgb.permute(0, 2, 3, 1)  # [B, H, W, 3]
    nearest = torch.cdist(pix.flatten(1, 2), colours[None].to(pix)).argmin(-1)
    residual = (pix - colours.to(pix)[nearest].view_as(pix)).permute(0, 3, 1, 2)
    sub = F.avg_pool2d(residual, PATCH // 2, ceil_mode=True)
    b, _, h2, w2 = sub.shape
    sub = sub.reshape(b, 3, h2 // 2, 2, w2 // 2, 2).permute(0, 1, 3, 5, 2, 4)
    # std of the mean of 64 px of i.i.d. noise
    return sub.reshape(b, TEXTURE_DIMS, h2 // 2, w2 // 2) / (pixel_noise / 8)


def class_embeddings(queries: torch.Tensor, lean: Sequence[Sequence[float]]) -> torch.Tensor:
    """``A`` ``[C, D]``: the query rows, with each leaning class ``c`` replaced by
    ``(1 − γ)·Q_c + γ·Q_d`` (class preference)."""
    emb = queries.clone()
    for c, d, gamma in lean:
        emb[int(c)] = (1 - gamma) * queries[int(c)] + gamma * queries[int(d)]
    return emb


def space_direction(queries: torch.Tensor, space: Sequence[float]) -> torch.Tensor:
    """``β·(Q_b − Q_a)`` ``[D]``: the planted space-bias direction at full profile."""
    a, b, beta = space
    return beta * (queries[int(b)] - queries[int(a)])


def planted_features(evidence: torch.Tensor, embeds: torch.Tensor, profile: torch.Tensor,
                     direction: torch.Tensor, affected: Sequence[int], texture: torch.Tensor,
                     texture_proj: torch.Tensor, noise: float) -> torch.Tensor:
    """Dense features ``F = normalize(Σ_k π_k A_k + ρ·m·v + noise·P_t·t)`` ``[B, D, h, w]``.

    ``m = Σ_{k ∈ affected} π_k`` confines the space bias to the objects: were the
    background shifted too, a convolution could read the position off it (its class is
    known) and undo the bias without the bias branch.

    Args:
        evidence (Tensor): ``π`` ``[B, C, h, w]`` (:func:`patch_class_evidence`).
        embeds (Tensor): ``A`` ``[C, D]`` (:func:`class_embeddings`).
        profile (Tensor): ``ρ`` ``[h, w]`` (PE channel 0 at the input's grid).
        direction (Tensor): ``v`` ``[D]`` (:func:`space_direction`).
        affected (Sequence[int]): the classes the space bias acts on.
        texture (Tensor): ``t`` ``[B, 12, h, w]`` (:func:`patch_texture`).
        texture_proj (Tensor): ``P_t`` ``[D, 12]`` fixed random projection.
        noise (float): nuisance scale.
    """
    content = torch.einsum('bchw,cd->bdhw', evidence, embeds)
    weight = evidence[:, list(affected)].sum(1, keepdim=True)  # [B, 1, h, w]
    space = weight * profile[None, None] * direction[None, :, None, None]
    nuisance = torch.einsum('bthw,dt->bdhw', texture, texture_proj)
    return F.normalize(content + space + noise * nuisance, dim=1)


def global_embedding(evidence: torch.Tensor, embeds: torch.Tensor) -> torch.Tensor:
    """Crop-vote embedding ``[B, D]``: ``normalize(mean_x Σ_k π_k(x) A_k)``, content
    only (no space bias, no nuisance)."""
    content = torch.einsum('bchw,cd->bd', evidence, embeds) / evidence[0, 0].numel()
    return F.normalize(content, dim=-1)


# -- scenes ---------------------------------------------------------------------------------
def draw_scene(rng: np.random.Generator, size: int, backgrounds: Sequence[int],
               objects: Sequence[int], max_objects: int) -> np.ndarray:
    """A label map ``[size, size]`` (uint8): a background class and 1 … ``max_objects``
    ellipses / rectangles of object classes, anywhere in the image (some at the border)."""
    label = np.full((size, size), rng.choice(backgrounds), dtype=np.uint8)
    yy, xx = np.mgrid[0:size, 0:size] + 0.5
    for _ in range(rng.integers(1, max_objects + 1)):
        cls = rng.choice(objects)
        cy, cx = rng.uniform(0, size, 2)
        ry, rx = rng.uniform(0.12, 0.3, 2) * size
        if rng.random() < 0.5:
            inside = ((yy - cy) / ry)**2 + ((xx - cx) / rx)**2 <= 1
        else:
            inside = (np.abs(yy - cy) <= ry) & (np.abs(xx - cx) <= rx)
        label[inside] = cls
    return label


def render(rng: np.random.Generator, label: np.ndarray, colours: np.ndarray,
           pixel_noise: float) -> np.ndarray:
    """RGB image ``[H, W, 3]`` uint8: each class's colour plus i.i.d. Gaussian noise."""
    img = colours[label].astype(np.float64) + rng.normal(0, pixel_noise, label.shape + (3, ))
    return np.clip(np.round(img), 0, 255).astype(np.uint8)


def default_colours(num_classes: int) -> List[List[int]]:
    """Well separated RGB colours (corners and mid-points of the colour cube)."""
    base = [[200, 60, 60], [60, 180, 60], [60, 90, 210], [210, 200, 70], [170, 80, 200],
            [70, 200, 200], [230, 150, 60], [120, 120, 120]]
    if num_classes > len(base):
        raise ValueError(f'At most {len(base)} classes have a default colour; give colours.')
    return base[:num_classes]
