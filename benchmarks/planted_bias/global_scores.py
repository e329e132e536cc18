"""The conference hypothesis threshold of the planted-bias world, from training images only.

    PLANTED_ROOT=<world> python -m benchmarks.planted_bias.global_scores [CONFIG]

Conference ReCLIP keeps the classes with ``100·cos(global image feature, Q) >= t``
(top-``K`` fallback, docs/method.md §5). Its thresholds (VOC 23, …) are tuned for real
CLIP; the toy tower's global scores lie elsewhere. This prints the distribution of the
scores that ``CropVoteHypothesisHook(mode='global')`` computes (the whole training
image at the tower's input size, ``model.global_class_scores``) over every training
image and class, and the world's threshold by a rule that reads **no label**: Otsu's
threshold of that pooled distribution (the cut that best splits it in two groups,
the present and the absent classes, by between-group variance). The
planted Table III configs (``configs/planted_table3-{1,2}_*.py``) write the number down.
"""
import argparse
import glob
import os.path as osp

import numpy as np
import torch

DEFAULT_CONFIG = osp.join(osp.dirname(__file__), 'configs', 'planted_reclip.py')


def otsu_threshold(values: np.ndarray, bins: int = 256) -> float:
    """Otsu's threshold of ``values``: the histogram cut maximising the between-class
    variance (a bin edge; the classes are ``< t`` and ``>= t``)."""
    hist, edges = np.histogram(values, bins=bins)
    p = hist / hist.sum()
    centres = (edges[:-1] + edges[1:]) / 2
    w0 = np.cumsum(p)
    mu = np.cumsum(p * centres)
    w1 = 1 - w0
    valid = (w0 > 0) & (w1 > 0)
    between = np.zeros_like(w0)
    between[valid] = (mu[-1] * w0[valid] - mu[valid])**2 / (w0[valid] * w1[valid])
    return float(edges[int(np.argmax(between)) + 1])


@torch.no_grad()
def training_scores(cfg) -> np.ndarray:
    """``[N, C]`` ``100·cos`` global scores of the training images (no label read)."""
    from mmseg.registry import MODELS
    from mmseg.utils import register_all_modules

    from mmseg_reclip.datasets.image_listing import read_image
    register_all_modules()
    import benchmarks.planted_bias  # noqa: F401
    model = MODELS.build(cfg.model).eval()
    root = cfg.train_dataloader.dataset.dataset.data_root
    prefix = cfg.train_dataloader.dataset.dataset.data_prefix.img_path
    paths = sorted(glob.glob(osp.join(root, prefix, '*.png')))
    rows = []
    for i in range(0, len(paths), 64):
        imgs = [read_image(p)[..., ::-1] for p in paths[i:i + 64]]  # BGR -> RGB, 0-255
        batch = torch.from_numpy(np.ascontiguousarray(np.stack(imgs))).permute(0, 3, 1, 2)
        rows.append(100.0 * model.global_class_scores(batch.float()))
    return torch.cat(rows).numpy()


def main() -> None:
    from mmengine.config import Config
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('config', nargs='?', default=DEFAULT_CONFIG)
    args = parser.parse_args()
    cfg = Config.fromfile(args.config)
    scores = training_scores(cfg)
    t = otsu_threshold(scores.ravel())
    print(f'{scores.shape[0]} training images, {scores.shape[1]} classes')
    print('100*cos quantiles (5, 25, 50, 75, 95 %):',
          ' '.join(f'{q:.2f}' for q in np.percentile(scores, [5, 25, 50, 75, 95])))
    print('per class mean:', ' '.join(f'{m:.2f}' for m in scores.mean(0)))
    kept = (scores >= t).sum(1)
    print(f'Otsu threshold: {t:.2f}; classes kept per image: mean {kept.mean():.2f}, '
          f'min {kept.min()}, max {kept.max()}')


if __name__ == '__main__':
    main()
