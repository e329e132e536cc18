"""Space-preference score (ReCLIP++ paper, Fig. 1a and Table VII): how segmentation
quality falls with an object's distance from the image centre."""
from typing import Dict, List, Optional, Sequence, Tuple

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


def object_areas(pred: np.ndarray,
                 label: np.ndarray,
                 num_classes: int,
                 bins: Sequence[float],
                 ignore_index: int = 255) -> np.ndarray:
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
    num_bins = len(edges) - 1
    out = np.zeros((3, num_bins, num_classes), dtype=np.int64)
    valid = (label != ignore_index) & (label >= 0) & (label < num_classes)
    # Bounding box of each class (find_objects of label + 1 over the valid pixels).
    boxes = ndimage.find_objects(np.where(valid, label + 1, 0))
    objects, obj_class, first = _label_objects(label, boxes)
    num_obj = len(obj_class)
    if num_obj == 1:
        return out
    flat = objects.ravel()
    area = np.bincount(flat, minlength=num_obj)
    hit = valid & (pred == label)
    inter = np.bincount(objects[hit], minlength=num_obj)
    false_pos = valid & ~hit & (pred >= 0) & (pred < num_classes)
    fp_owner = _charge_false_positives(pred, label, false_pos, objects, obj_class, first, boxes)
    k = _object_bins(objects, area, edges)
    keep = (k >= 0) & (k < num_bins)
    cls = obj_class[1:][keep]
    k = k[keep]
    np.add.at(out[0], (k, cls), inter[1:][keep])
    np.add.at(out[1], (k, cls), (area + fp_owner)[1:][keep])
    np.add.at(out[2], (k, cls), 1)
    return out


def _label_objects(label: np.ndarray, boxes: list) -> Tuple[np.ndarray, np.ndarray, dict]:
    """One map of global object ids (0: no object) ``[H, W]``, the class of each id
    (``[N + 1]``, -1 for id 0) and the first id of each class present."""
    objects = np.zeros(label.shape, dtype=np.int64)
    obj_class = [-1]
    first = {}
    for c, box in enumerate(boxes):
        if box is None:
            continue
        gt = label[box] == c
        local, count = ndimage.label(gt, structure=_STRUCTURE)
        first[c] = len(obj_class)
        objects[box][gt] = local[gt] + (first[c] - 1)
        obj_class += [c] * count
    return objects, np.asarray(obj_class), first


def _charge_false_positives(pred: np.ndarray, label: np.ndarray, false_pos: np.ndarray,
                            objects: np.ndarray, obj_class: np.ndarray, first: dict,
                            boxes: list) -> np.ndarray:
    """False-positive pixels charged to objects ``[N + 1]``: a pixel predicted ``p`` (a
    class of this image) where the label is another valid class goes to the nearest
    object of class ``p``; predictions of a class absent from the image go nowhere."""
    fp_owner = np.zeros(len(obj_class), dtype=np.int64)
    fys, fxs = np.nonzero(false_pos)
    fcls = pred[fys, fxs]
    for c in np.unique(fcls):
        if c not in first:
            continue
        sel = fcls == c
        ys, xs = fys[sel], fxs[sel]
        ids = np.flatnonzero(obj_class == c)
        if len(ids) == 1:
            fp_owner[ids[0]] += len(ys)
            continue
        # Nearest object pixel: a distance transform over the box holding the class's
        # objects and these false positives (the nearest object pixel lies inside it).
        box = boxes[c]
        y0, y1 = min(box[0].start, ys.min()), max(box[0].stop, ys.max() + 1)
        x0, x1 = min(box[1].start, xs.min()), max(box[1].stop, xs.max() + 1)
        crop = objects[y0:y1, x0:x1]
        is_c = (label[y0:y1, x0:x1] == c) & (crop > 0)
        iy, ix = ndimage.distance_transform_edt(~is_c, return_distances=False, return_indices=True)
        owners = crop[iy[ys - y0, xs - x0], ix[ys - y0, xs - x0]]
        fp_owner += np.bincount(owners, minlength=len(obj_class))
    return fp_owner


def _object_bins(objects: np.ndarray, area: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """The distance bin of each object ``[N]`` (-1 or ``K`` outside the edges): its
    centroid's normalised distance from the image centre (see :func:`centre_distance`)."""
    height, width = objects.shape
    flat = objects.ravel()
    num_obj = len(area)
    rows = np.repeat(np.arange(height, dtype=np.float64), width)
    cols = np.tile(np.arange(width, dtype=np.float64), height)
    cy = np.bincount(flat, weights=rows, minlength=num_obj)[1:] / area[1:] + 0.5
    cx = np.bincount(flat, weights=cols, minlength=num_obj)[1:] / area[1:] + 0.5
    u = (cx - width / 2) / (width / 2)
    v = (cy - height / 2) / (height / 2)
    dist = np.sqrt(u * u + v * v) / np.sqrt(2)
    k = np.searchsorted(edges, dist, side='right') - 1
    k[dist == edges[-1]] = len(edges) - 2
    return k


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
    return dict(
        centres=centres.tolist(),
        miou=miou.tolist(),
        objects=count.sum(axis=1).astype(int).tolist(),
        slope=slope)


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

    Cost: one connected-component labelling per class present, and a distance transform
    for the classes with several objects and false positives; about 20 ms per VOC image
    on one CPU core.

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
        logger.info('Space-preference slope %.4f; mIoU by centre distance: %s' %
                    (curve['slope'], ', '.join(
                        f'{c:.2f}: {m * 100:.1f} ({n} obj)'
                        for c, m, n in zip(curve['centres'], curve['miou'], curve['objects']))))
        return dict(
            space_pref=curve['slope'],
            space_pref_curve=dict(
                bins=list(self.bins),
                centres=curve['centres'],
                miou=[round(m * 100, 2) if m == m else None for m in curve['miou']],
                objects=curve['objects']))
