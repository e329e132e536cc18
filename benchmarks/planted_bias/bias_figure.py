"""The learned bias map next to the planted one (docs/learning_check.md).

    python -m benchmarks.planted_bias.bias_figure CONFIG CHECKPOINT --out fig.png

The planted space bias moves the logits of the planted pair ``(a, b)`` by
``ρ(x)·β·(Q_b − Q_a)·(Q_b − Q_a)`` in ``L_b − L_a`` (before the feature normalisation);
a model that learned it has ``B_b − B_a`` of the same shape (it subtracts ``B``). A
bias that is nearly the same for every class can still rectify through the decoder,
which weighs each class's ``B`` channel differently for each output: the third panel is
the bias's own contribution to ``O_a − O_b`` (``inspect_run.bias_contribution``), which
rectifies when it has the planted shape. The figure shows the three on the 14 × 14
grid, and the correlations with the planted map (the effect's on the interior cells,
away from the decoder's zero padding).
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
    from .inspect_run import bias_contribution
    effect = bias_contribution(model, size)
    return dict(
        learned=(bias[b] - bias[a]).cpu().numpy(),
        planted=planted.cpu().numpy(),
        effect=(effect[a] - effect[b]).cpu().numpy(),
        pair=(a, b))


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
    effect_corr = correlation(maps['effect'][2:-2, 2:-2], maps['planted'][2:-2, 2:-2])
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.4))
    for ax, key, label in zip(axes, ('planted', 'learned', 'effect'),
                              (f'planted: shift of L[{names[b]}] - L[{names[a]}]',
                               f'learned: B[{names[b]}] - B[{names[a]}]',
                               f"bias's effect on O[{names[a]}] - O[{names[b]}]")):
        im = ax.imshow(maps[key], cmap='viridis')
        ax.set_title(label, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
        fig.colorbar(im, ax=ax, fraction=0.046)
    fig.suptitle(
        (title + ' — ' if title else '') +
        f'correlation with the planted map: B {corr:+.2f}, effect (interior) '
        f'{effect_corr:+.2f}',
        fontsize=10)
    fig.tight_layout()
    fig.savefig(out, dpi=90)
    plt.close(fig)
    return corr


def draw_examples(model, world_root: str, out: str, count: int = 4) -> None:
    """Validation images, their labels, MaskCLIP's prediction (``argmax F·Qᵀ`` of the
    same model's head) and the model's, on the patch grid."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    from .inspect_run import val_inputs, val_labels
    names = model.backbone.world['classes']
    colours = np.asarray(model.backbone.world['colours']) / 255.0
    inputs = val_inputs(world_root, count)
    labels = val_labels(world_root, count).numpy()
    with torch.no_grad():
        feats = model.backbone(inputs)[0]
        maskclip = model.decode_head.query_logits(feats).argmax(1).numpy()
        preds = model.decode_head.forward((feats, )).argmax(1).numpy()
    images = inputs.permute(0, 2, 3, 1).numpy().astype(np.uint8)
    fig, axes = plt.subplots(len(images), 4, figsize=(8, 2 * len(images)))
    for i, row in enumerate(np.atleast_2d(axes)):
        pics = (images[i], colours[labels[i]], colours[maskclip[i]], colours[preds[i]])
        for ax, pic, title in zip(row, pics, ('image', 'label', 'MaskCLIP', 'trained')):
            ax.imshow(pic, interpolation='nearest')
            ax.set_title(title, fontsize=8)
            ax.axis('off')
    handles = [matplotlib.patches.Patch(color=c, label=n) for c, n in zip(colours, names)]
    fig.legend(handles=handles, loc='lower center', ncol=len(names), fontsize=8)
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    fig.savefig(out, dpi=80)
    plt.close(fig)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('config')
    parser.add_argument('checkpoint')
    parser.add_argument('--out', required=True)
    parser.add_argument('--title', default=None)
    parser.add_argument('--examples', default=None, help='also draw predictions to this file')
    parser.add_argument('--world', default='data/planted_bias', help='world folder (examples)')
    args = parser.parse_args(argv)
    from mmseg.apis import init_model

    import benchmarks.planted_bias  # noqa: F401  (before mmseg: the plugin's glue)
    from .inspect_run import bias_effect, val_inputs
    model = init_model(args.config, args.checkpoint, device='cpu')
    maps = bias_maps(model)
    corr = draw(maps, model.backbone.world['classes'], args.out, args.title)
    print(f'bias map correlation (learned vs planted): {corr:+.3f}')
    print(f'predictions moved by the bias: {bias_effect(model, val_inputs(args.world)):.2f} % '
          'of the validation cells')
    if args.examples:
        draw_examples(model, args.world, args.examples)


if __name__ == '__main__':
    main()
