"""Space-preference score (ReCLIP++ paper, Fig. 1a and Table VII): how segmentation
quality falls with an object's distance from the image centre."""
from typing import Dict, List, Optional, Sequence

import numpy as np
from mmengine.evaluator import BaseMetric
from mmengine.logging import MMLogger
from mmseg.registry import METRICS
from scipy import ndimage

# 8-connectivity: pixels touching by an edge or a corner belong to the same object.
_STRUCTURE = np.ones((3, 3), dtype=bool)


def centre_distance(ys: np.ndarray, xs: np.ndarray, height: int, width: int) -> float:
    """Normalised distance of the centroid of pixels ``(ys, xs)`` from the image centre.

    Pixel ``(y, x)`` covers ``[x, x+1) × [y, y+1)``; its centre is ``(x + 0.5, y + 0.5)``.
    The offset from the image centre is divided by the half width / half height (the
    image becomes the square ``[-1, 1]²``), then by ``√2``: 0 at the centre, 1 at the
    corners, whatever the aspect ratio.
    """
    u = (xs.mean() + 0.5 - width / 2) / (width / 2)
    v = (ys.mean() + 0.5 - height / 2) / (height / 2)
    return float(np.sqrt(u * u + v * v) / np.sqrt(2))


def object_areas(pred: np.ndarray, label: np.ndarray, num_classes: int,
                 bins: Sequence[float], ignore_index: int = 255) -> np.ndarray:
    """Intersection and union of every ground-truth object, summed per distance bin.

    An object is a connected region (8-connectivity) of one ground-truth class in the
    image. For an object ``O`` of class ``c``: intersection ``|O ∩ P_c|``, union
    ``|O| + |FP charged to O|``, where ``P_c`` are the pixels predicted ``c`` and each
    false-positive pixel of ``c`` (predicted ``c``, labelled another valid class) is
    charged to the nearest object of class ``c`` (Euclidean distance). Summed over the
    objects of a class, these are exactly the image's intersection and union of ``c``.
    False positives of a class absent from the image belong to no object and are not
    counted. Ignored pixels are neither objects nor false positives.

    Args:
        pred (np.ndarray): ``[H, W]`` predicted class ids.
        label (np.ndarray): ``[H, W]`` ground-truth class ids.
        num_classes (int): ``C``.
        bins (Sequence[float]): ``K + 1`` increasing edges of the distance bins; an
            object falls in bin ``k`` when ``edges[k] <= d < edges[k+1]`` (the last bin
            includes its right edge); objects outside the edges are skipped.
        ignore_index (int): ignored label.

    Returns:
        np.ndarray: ``[3, K, C]`` int64: intersection, union and object count.
    """
    pred = np.asarray(pred).astype(np.int64)
    label = np.asarray(label).astype(np.int64)
    edges = np.asarray(bins, dtype=np.float64)
    height, width = label.shape
    out = np.zeros((3, len(edges) - 1, num_classes), dtype=np.int64)
    valid = (label != ignore_index) & (label >= 0) & (label < num_classes)
    for c in np.unique(label[valid]):
        gt = valid & (label == c)
        objects, count = ndimage.label(gt, structure=_STRUCTURE)
        # False positives of c are charged to the nearest pixel of an object of c.
        false_pos = valid & ~gt & (pred == c)
        owner_fp = np.zeros(count + 1, dtype=np.int64)
        if false_pos.any():
            iy, ix = ndimage.distance_transform_edt(
                ~gt, return_distances=False, return_indices=True)
            owners = objects[iy[false_pos], ix[false_pos]]
            owner_fp = np.bincount(owners, minlength=count + 1)
        hit = gt & (pred == c)
        inter = np.bincount(objects[hit], minlength=count + 1)
        area = np.bincount(objects[gt], minlength=count + 1)
        for obj, sl in enumerate(ndimage.find_objects(objects), start=1):
            ys, xs = np.nonzero(objects[sl] == obj)
            d = centre_distance(ys + sl[0].start, xs + sl[1].start, height, width)
            k = int(np.searchsorted(edges, d, side='right')) - 1
            if d == edges[-1]:
                k = len(edges) - 2
            if k < 0 or k >= len(edges) - 1:
                continue
            out[0, k, c] += inter[obj]
            out[1, k, c] += area[obj] + owner_fp[obj]
            out[2, k, c] += 1
    return out


def distance_curve(areas: np.ndarray, bins: Sequence[float]) -> Dict[str, list]:
    """mIoU per distance bin and the mean slope between consecutive non-empty bins.

    Args:
        areas (np.ndarray): ``[3, K, C]`` summed intersection, union, object count.
        bins (Sequence[float]): the ``K + 1`` bin edges.

    Returns:
        dict: ``centres`` ``[K]``, ``miou`` ``[K]`` (fraction in [0, 1]; NaN for an empty
        bin: the mean IoU over the classes with a non-zero union in that bin),
        ``objects`` ``[K]`` and ``slope`` (mean of ``Δ mIoU / Δ distance`` between
        consecutive non-empty bins, NaN with fewer than two).
    """
    edges = np.asarray(bins, dtype=np.float64)
    centres = (edges[:-1] + edges[1:]) / 2
    inter, union, count = areas.astype(np.float64)
    with np.errstate(invalid='ignore', divide='ignore'):
        iou = np.where(union > 0, inter / union, np.nan)
    miou = np.array([np.nanmean(row) if np.any(~np.isnan(row)) else np.nan for row in iou])
    full = ~np.isnan(miou)
    x, y = centres[full], miou[full]
    slope = float(np.mean(np.diff(y) / np.diff(x))) if len(x) >= 2 else float('nan')
    return dict(centres=centres.tolist(), miou=miou.tolist(),
                objects=count.sum(axis=1).astype(int).tolist(), slope=slope)


@METRICS.register_module()
class SpacePreferenceMetric(BaseMetric):
    """Space-preference score (paper Fig. 1a, Table VII): the mIoU of ground-truth
    objects as a function of their centroid's distance from the image centre.

    Objects are the connected regions (8-connectivity) of each ground-truth class in each
    image. Each object's centroid distance from the image centre is normalised to
    ``[0, 1]`` (0: centre, 1: a corner; see :func:`centre_distance`) and puts it in one
    of the ``bins``. Per bin, intersections and unions of its objects (false positives
    charged to the nearest object of their class, see :func:`object_areas`) are summed
    per class over the dataset; the bin's mIoU is their mean IoU. The score is the mean
    slope of the mIoU (fraction) vs distance curve between consecutive non-empty bins:
    negative when objects far from the centre are segmented worse; higher (closer to 0
    or positive) means less space-preference bias (paper, VOC: MaskCLIP −0.50, ReCLIP++
    −0.29).

    Args:
        bins (Sequence[float]): bin edges of the normalised distance (default five
            equal bins on ``[0, 1]``).
        ignore_index (int): label ignored in evaluation (255).
        collect_device (str): ``'cpu'`` or ``'gpu'``.
        prefix (str, optional): prefix of the metric names.

    Returns (``compute_metrics``):
        ``space_pref`` (float): the mean slope; ``space_pref_curve`` (dict: ``bins``,
        ``centres``, ``miou`` (%), ``objects`` per bin).
    """

    def __init__(self,
                 bins: Sequence[float] = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0),
                 ignore_index: int = 255,
                 collect_device: str = 'cpu',
                 prefix: Optional[str] = None,
                 **kwargs) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix)
        edges = [float(b) for b in bins]
        if len(edges) < 2 or any(b >= a for a, b in zip(edges[1:], edges[:-1])):
            raise ValueError(f'SpacePreferenceMetric bins must be at least two increasing '
                             f'edges, e.g. (0, 0.2, 0.4, 0.6, 0.8, 1.0); got {bins!r}.')
        self.bins = edges
        self.ignore_index = ignore_index
        self.curve: Optional[dict] = None

    def process(self, data_batch: dict, data_samples: Sequence[dict]) -> None:
        """Per sample, intersection / union / count ``[3, K, C]`` per distance bin.

        Args:
            data_batch (dict): the batch from the dataloader (unused).
            data_samples (Sequence[dict]): model outputs with ``pred_sem_seg`` and
                ``gt_sem_seg`` (``[1, H, W]`` each).
        """
        num_classes = len(self.dataset_meta['classes'])
        for sample in data_samples:
            pred = sample['pred_sem_seg']['data'].squeeze().cpu().numpy()
            label = sample['gt_sem_seg']['data'].squeeze().cpu().numpy()
            self.results.append(
                object_areas(pred, label, num_classes, self.bins, self.ignore_index))

    def compute_metrics(self, results: List[np.ndarray]) -> Dict[str, object]:
        """Sum the per-sample areas (all ranks) and fit the curve."""
        curve = distance_curve(np.sum(np.stack(results), axis=0), self.bins)
        self.curve = dict(bins=list(self.bins), **curve)
        logger: MMLogger = MMLogger.get_current_instance()
        logger.info('Space-preference slope %.4f; mIoU by centre distance: %s' % (
            curve['slope'], ', '.join(
                f'{c:.2f}: {m * 100:.1f} ({n} obj)'
                for c, m, n in zip(curve['centres'], curve['miou'], curve['objects']))))
        return dict(
            space_pref=curve['slope'],
            space_pref_curve=dict(
                bins=list(self.bins),
                centres=curve['centres'],
                miou=[round(m * 100, 2) if m == m else None for m in curve['miou']],
                objects=curve['objects']))
