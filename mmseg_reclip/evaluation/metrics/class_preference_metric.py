"""Class-preference score (ReCLIP++ paper, Table VII): how strongly a model prefers some
classes over others, read from the dataset's confusion matrix."""
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from mmengine.evaluator import BaseMetric
from mmengine.logging import MMLogger
from mmseg.registry import METRICS


def confusion_matrix(pred: np.ndarray,
                     label: np.ndarray,
                     num_classes: int,
                     ignore_index: int = 255) -> np.ndarray:
    """Pixel counts ``[C, C]``: row = ground-truth class, column = predicted class.

    Pixels whose label is ``ignore_index`` (or outside ``[0, C)``) are skipped; so are
    predictions outside ``[0, C)``.

    Args:
        pred (np.ndarray): ``[H, W]`` predicted class ids.
        label (np.ndarray): ``[H, W]`` ground-truth class ids.
    """
    pred = np.asarray(pred).astype(np.int64).ravel()
    label = np.asarray(label).astype(np.int64).ravel()
    keep = (label != ignore_index) & (label >= 0) & (label < num_classes) & \
        (pred >= 0) & (pred < num_classes)
    idx = label[keep] * num_classes + pred[keep]
    return np.bincount(idx, minlength=num_classes**2).reshape(num_classes, num_classes)


def class_preference_scores(confusion: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Per-class score and most-confused partner from a confusion matrix.

    Row ``c`` is normalised to sum 1; ``score_c = M[c, c] − max_{j≠c} M[c, j]``
    (in ``[-1, 1]``; 1: class c is always predicted as c).

    Args:
        confusion (np.ndarray): ``[C, C]`` counts (rows: ground truth).

    Returns:
        tuple: ``scores`` ``[C]`` (NaN for classes absent from the ground truth) and
        ``partner`` ``[C]`` (the off-diagonal column of the row maximum; -1 if absent).
    """
    confusion = np.asarray(confusion, dtype=np.float64)
    num = confusion.shape[0]
    totals = confusion.sum(axis=1)
    present = totals > 0
    rows = np.divide(
        confusion, totals[:, None], out=np.zeros_like(confusion), where=present[:, None])
    off = rows.copy()
    np.fill_diagonal(off, -np.inf)
    partner = off.argmax(axis=1) if num > 1 else np.zeros(num, dtype=np.int64)
    best_other = off.max(axis=1) if num > 1 else np.zeros(num)
    scores = np.where(present, np.diag(rows) - best_other, np.nan)
    partner = np.where(present, partner, -1)
    return scores, partner


@METRICS.register_module()
class ClassPreferenceMetric(BaseMetric):
    """Class-preference score (paper §IV "Quantitative results of bias rectification").

    From the confusion matrix of the whole dataset (rows: ground truth, normalised to
    sum 1), each class ``c`` scores ``diag_c − max_{j≠c} M[c, j]``; the score is the
    mean over the classes present in the ground truth. Higher means less class-preference
    bias (paper, PASCAL Context: MaskCLIP 0.29, ReCLIP++ 0.37).

    Use it beside ``IoUMetric``::

        test_evaluator = [dict(type='IoUMetric', iou_metrics=['mIoU']),
                          dict(type='ClassPreferenceMetric')]

    ``process`` keeps one ``[C, C]`` count matrix per sample (mmengine gathers the
    per-sample results of every rank before :meth:`compute_metrics`). After
    ``compute_metrics`` the summed counts are kept in :attr:`confusion` (for plots).

    Args:
        ignore_index (int): label ignored in evaluation (255).
        collect_device (str): ``'cpu'`` or ``'gpu'`` (for gathering across ranks).
        prefix (str, optional): prefix of the metric names.

    Returns (``compute_metrics``):
        ``class_pref`` (float): mean score; ``class_pref_per_class`` (dict name → score,
        classes present only); ``class_pref_confused`` (dict name → most-confused
        partner, e.g. ``'cow': 'dog'``).
    """

    def __init__(self,
                 ignore_index: int = 255,
                 collect_device: str = 'cpu',
                 prefix: Optional[str] = None,
                 **kwargs) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix)
        self.ignore_index = ignore_index
        self.confusion: Optional[np.ndarray] = None

    def process(self, data_batch: dict, data_samples: Sequence[dict]) -> None:
        """Count (ground truth, prediction) pixel pairs of each sample.

        Args:
            data_batch (dict): the batch from the dataloader (unused).
            data_samples (Sequence[dict]): model outputs with ``pred_sem_seg`` and
                ``gt_sem_seg`` (``[1, H, W]`` each).
        """
        num_classes = len(self.dataset_meta['classes'])
        for sample in data_samples:
            pred = sample['pred_sem_seg']['data'].squeeze().cpu().numpy()
            label = sample['gt_sem_seg']['data'].squeeze().cpu().numpy()
            self.results.append(confusion_matrix(pred, label, num_classes, self.ignore_index))

    def compute_metrics(self, results: List[np.ndarray]) -> Dict[str, object]:
        """Sum the per-sample counts and score them.

        Args:
            results (list[np.ndarray]): ``[C, C]`` counts, one per sample (all ranks).
        """
        classes = list(self.dataset_meta['classes'])
        confusion = np.sum(np.stack(results), axis=0)
        self.confusion = confusion
        scores, partner = class_preference_scores(confusion)
        present = ~np.isnan(scores)
        mean = float(np.mean(scores[present])) if present.any() else float('nan')
        per_class = {classes[c]: round(float(scores[c]), 4) for c in np.flatnonzero(present)}
        confused = {classes[c]: classes[partner[c]] for c in np.flatnonzero(present)}
        logger: MMLogger = MMLogger.get_current_instance()
        worst = sorted(per_class, key=per_class.get)[:5]
        logger.info(
            'Class-preference score %.4f over %d classes; most confused: %s' %
            (mean, int(present.sum()), ', '.join(f'{c} -> {confused[c]} ({per_class[c]:+.2f})'
                                                 for c in worst)))
        return dict(class_pref=mean, class_pref_per_class=per_class, class_pref_confused=confused)
