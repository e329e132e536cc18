"""The learned bias map next to the planted one (docs/learning_check.md).

    python -m benchmarks.planted_bias.bias_figure CONFIG CHECKPOINT --out fig.png

The planted space bias moves the logits of the planted pair ``(a, b)`` by
``ρ(x)·β·(Q_b − Q_a)·(Q_b − Q_a)`` in ``L_b − L_a`` (before the feature normalisation);
a model that learned it has ``B_b − B_a`` of the same shape (it subtracts ``B``). The
figure shows both on the 14 × 14 grid, and the correlation between them.
"""
import argparse
from typing import Dict, Optional

import numpy as np
import torch


def bias_maps(model, size=(14, 14)) -> Dict[str, np.ndarray]:
    """``learned``: ``B_b − B_a`` of the model's bias extractor; ``planted``: the pair's
    planted logit shift ``ρ·β·|Q_b − Q_a|²``; both ``[h, w]``."""
    tower, head = model.backbone, model.decode_head
    a, b = (int(i) for i in tower.world['space'][:2])
    with torch.no_grad():
        bias = head.bias_extractor(tuple(size)).float()
        direction = tower.direction.float()
        pair = tower.queries[b] - tower.queries[a]
        planted = tower.profile(tuple(size)) * float(direction @ pair)
    return dict(
        learned=(bias[b] - bias[a]).cpu().numpy(), planted=planted.cpu().numpy(), pair=(a, b))


def correlation(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson correlation of two maps (NaN for a constant map)."""
    x, y = x.ravel() - x.mean(), y.ravel() - y.mean()
    den = np.sqrt((x * x).sum() * (y * y).sum())
    return float((x * y).sum() / den) if den > 0 else float('nan')


def draw(maps: Dict[str, np.ndarray], names, out: str, title: Optional[str] = None) -> float:
    """Write the two maps side by side to ``out``; return their correlation."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    a, b = maps['pair']
    corr = correlation(maps['learned'], maps['planted'])
    fig, axes = plt.subplots(1, 2, figsize=(7.5, 3.4))
    for ax, key, label in zip(axes, ('planted', 'learned'),
                              (f'planted: shift of L[{names[b]}] - L[{names[a]}]',
                               f'learned: B[{names[b]}] - B[{names[a]}]')):
        im = ax.imshow(maps[key], cmap='viridis')
        ax.set_title(label, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
        fig.colorbar(im, ax=ax, fraction=0.046)
    fig.suptitle((title + ' — ' if title else '') + f'correlation {corr:+.2f}', fontsize=10)
    fig.tight_layout()
    fig.savefig(out, dpi=90)
    plt.close(fig)
    return corr


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('config')
    parser.add_argument('checkpoint')
    parser.add_argument('--out', required=True)
    parser.add_argument('--title', default=None)
    args = parser.parse_args(argv)
    from mmseg.apis import init_model

    import benchmarks.planted_bias  # noqa: F401
    model = init_model(args.config, args.checkpoint, device='cpu')
    maps = bias_maps(model)
    corr = draw(maps, model.backbone.world['classes'], args.out, args.title)
    print(f'bias map correlation (learned vs planted): {corr:+.3f}')


if __name__ == '__main__':
    main()
