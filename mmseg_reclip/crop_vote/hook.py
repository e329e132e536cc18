"""Multi-label image hypotheses by crop voting (docs/method.md §5), computed once and cached.

The hook only wires: the voting maths is :mod:`mmseg_reclip.crop_vote.vote`,
the pre-pass :mod:`mmseg_reclip.crop_vote.prepass`, the image listing
:mod:`mmseg_reclip.datasets.image_listing` and the cache
:class:`~mmseg_reclip.utils.cache.KeyedCache`.
"""
from functools import partial
from typing import Dict, List, Optional, Sequence

import torch
from mmengine.dist import barrier, broadcast_object_list, is_main_process
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper
from mmseg.registry import HOOKS

from ..datasets.image_listing import collect_img_paths, file_signature
from ..models.utils.clip_dims import model_clip_input_size
from ..utils.amp import precision_context, resolve_precision
from ..utils.cache import KeyedCache, digest
from .crops import CropVoteCrops
from .prepass import (compute_hypotheses, log_summary, model_device, model_fingerprint, norm_params,
                      vote_dtype)
from .vote import Length, global_hypothesis, hypotheses_problem, resolve_length, votes_to_hypothesis

__all__ = ['CropVoteHypothesisHook']

# Bump when the computation changes in a way the settings do not describe: old caches
# then stop matching.
CACHE_VERSION = 1
CACHE_PREFIX = 'reclip_hypotheses_'


@HOOKS.register_module()
class CropVoteHypothesisHook(Hook):
    """Attach multi-label crop-vote hypotheses to the training samples (docs/method.md §5).

    ``before_train`` (also on resume) lists the training images
    (:func:`collect_img_paths`; no annotation is read) and loads their hypotheses from
    the cache, or computes them (:func:`compute_hypotheses`, shared across ranks): each
    image as ``LoadImageFromFile`` reads it (RGB when the data preprocessor has
    ``bgr_to_rgb``), optionally rescaled to a short side of ``img_scale``, is cut into
    square windows (:func:`window_boxes`) resized to ``input_size²`` (torch bilinear, no
    antialias) and normalised like the model's inputs; ``model.global_class_scores``
    scores them; a crop's top-1 class is a vote and the classes voted more often than
    ``min_frequency`` form the hypothesis (:func:`votes_to_hypothesis`).
    ``mode='global'`` (conference ReCLIP) scores the whole image squashed to
    ``input_size²`` and keeps ``score_scale·cos >= score_threshold``, else the ``top_k``
    best (:func:`global_hypothesis`). ``before_train_iter`` sets
    ``metainfo['hypothesis']`` of each sample (by ``img_path``).

    The cache, ``<cache_dir>/reclip_hypotheses_<16 hex digits>.pth``, is keyed by a
    SHA-256 over :meth:`settings`, every image's path, size and mtime, and ``Q`` (CLIP
    weights, class names, templates) with the class mapping; content is validated on
    load (ids in ``[0, C)``, every image present), anything wrong is recomputed.

    Args:
        window (int | float): window side in pixels or as a ratio of the shorter image
            side (float in (0, 1]). Released: crop_size / 6 (VOC 56, Context 80,
            others 85); the dataset bases set ``crop_vote_window``.
        stride (int | float, optional): window step like ``window``; ``None``: half.
        min_frequency (float): ``θ``; keep classes with ``votes / crops > θ`` (0).
        mode (str): ``'crop_vote'`` (ReCLIP++) or ``'global'`` (conference ReCLIP).
        score_threshold (float, optional): ``'global'``: threshold on
            ``score_scale·cos`` (VOC 23, Context 20, ADE 21, Cityscapes 21.5, COCO-27 20).
        top_k (int, optional): ``'global'``: fallback K (VOC 2, Context 6, ADE 5,
            Cityscapes 2, COCO-27 8); ``0`` disables it.
        score_scale (float): multiplier of the cosines in ``'global'`` mode (100).
        input_size (int, optional): CLIP's input size each crop is resized to; ``None``
            (default): the model's CLIP's (224; ViT-L-14-336: 336).
        batch_size (int): crops per forward pass (across images).
        cache_dir (str, optional): cache folder; default ``runner.work_dir``.
        img_scale (int, optional): rescale images to this shorter side first.
        backend_args (dict, optional): mmengine fileio backend (the key uses
            ``os.stat``: images must be local files).
        log_interval (int): log progress every this many images.
        num_workers (int): image reader processes (``0``: main process). Default 2.
        precision (str): ``'fp32'``, ``'bf16'``, ``'fp16'`` (GPU) or ``'auto'``: the
            ``AmpOptimWrapper``'s dtype (mmengine's default when unset), else fp32.
            Anything but fp32 enters the cache key.
    """

    priority = 'NORMAL'

    def __init__(self,
                 window: Length = 56,
                 stride: Optional[Length] = None,
                 min_frequency: float = 0.0,
                 mode: str = 'crop_vote',
                 score_threshold: Optional[float] = None,
                 top_k: Optional[int] = None,
                 score_scale: float = 100.0,
                 input_size: Optional[int] = None,
                 batch_size: int = 256,
                 cache_dir: Optional[str] = None,
                 img_scale: Optional[int] = None,
                 backend_args: Optional[dict] = None,
                 log_interval: int = 100,
                 num_workers: int = 2,
                 precision: str = 'auto') -> None:
        if mode not in ('crop_vote', 'global'):
            raise ValueError(f"mode must be 'crop_vote' or 'global', got {mode!r}")
        if mode == 'crop_vote':
            resolve_length(window, 1 << 30, 'window')  # type / range check only
            if stride is not None:
                resolve_length(stride, 1 << 30, 'stride')
            if not 0.0 <= min_frequency < 1.0:
                raise ValueError(f'min_frequency must be in [0, 1), got {min_frequency}')
        elif score_threshold is None or top_k is None:
            raise ValueError("mode='global' needs score_threshold and top_k (conference "
                             'ReCLIP: VOC 23/2, Context 20/6, ADE 21/5, Cityscapes 21.5/2, '
                             'COCO-27 20/8)')
        elif top_k < 0:
            raise ValueError(f'top_k must be >= 0, got {top_k}')
        if (input_size is not None and int(input_size) < 1) or int(batch_size) < 1:
            raise ValueError('input_size and batch_size must be >= 1')
        if img_scale is not None and int(img_scale) < 1:
            raise ValueError(f'img_scale must be None or >= 1, got {img_scale}')
        if int(num_workers) < 0:
            raise ValueError(f'num_workers must be >= 0, got {num_workers}')
        if precision != 'auto':
            resolve_precision(precision)  # clear error for an unknown name
        self.window, self.stride, self.mode = window, stride, mode
        self.min_frequency = float(min_frequency)
        self.score_threshold = None if score_threshold is None else float(score_threshold)
        self.top_k = None if top_k is None else int(top_k)
        self.score_scale = float(score_scale)
        self.input_size = None if input_size is None else int(input_size)
        self.batch_size = int(batch_size)
        self.cache_dir = cache_dir
        self.img_scale = None if img_scale is None else int(img_scale)
        self.backend_args = backend_args
        self.log_interval = max(1, int(log_interval))
        self.num_workers = int(num_workers)
        self.precision = precision
        self.cast_dtype: Optional[torch.dtype] = None  # resolved in before_train
        self.hypotheses: Dict[str, List[int]] = {}
        self.cache_path: Optional[str] = None
        self.cache_key: Optional[str] = None
        self.cache_reused = False

    def settings(self, model=None) -> dict:
        """Every setting that affects the hypotheses (stored in the cache and hashed)."""
        s = dict(
            version=CACHE_VERSION,
            mode=self.mode,
            input_size=self.input_size,
            img_scale=self.img_scale,
            resize='torch-bilinear-noantialias',
            decode='cv2-color')
        if self.mode == 'crop_vote':
            s.update(window=self.window, stride=self.stride, min_frequency=self.min_frequency)
        else:
            s.update(
                score_threshold=self.score_threshold,
                top_k=self.top_k,
                score_scale=self.score_scale)
        if self.cast_dtype is not None:  # fp32 keeps the keys of existing caches
            s['precision'] = str(self.cast_dtype)
        if model is not None:
            s['bgr_to_rgb'] = bool(getattr(model.data_preprocessor, 'channel_conversion', False))
            mean, std = norm_params(model.data_preprocessor)
            s['mean'] = None if mean is None else [float(v) for v in mean.flatten()]
            s['std'] = None if std is None else [float(v) for v in std.flatten()]
        return s

    def compute_key(self, model, img_paths: Sequence[str]) -> str:
        """SHA-256 over every setting, the images (path, size, mtime_ns) and ``Q``."""
        files = [(p, *file_signature(p)) for p in sorted(img_paths)]
        return digest(self.settings(model), files, model_fingerprint(model, self.input_size))

    def before_train(self, runner) -> None:
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        for attr in ('global_class_scores', 'data_preprocessor'):
            if not hasattr(model, attr):
                raise TypeError(f'CropVoteHypothesisHook needs a model with `{attr}` '
                                f'(ReCLIP and its distiller); got {type(model).__name__}')
        self.cast_dtype = vote_dtype(self.precision, getattr(runner, 'optim_wrapper', None))
        if self.input_size is None:
            self.input_size = model_clip_input_size(model)
        img_paths = collect_img_paths(runner.train_dataloader.dataset)
        if not img_paths:
            raise ValueError('CropVoteHypothesisHook: the training dataset has no image')
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                self.cache_key = self.compute_key(model, img_paths)
            cache = KeyedCache(
                self.cache_dir or runner.work_dir,
                CACHE_PREFIX,
                self.cache_key,
                what='Crop-vote cache')
            self.cache_path = cache.path
            num_classes = getattr(getattr(model, 'decode_head', None), 'num_classes', None)
            check = partial(_content_problem, img_paths=img_paths, num_classes=num_classes)
            loaded = [cache.load(check) if is_main_process() else None]
            broadcast_object_list(loaded, src=0)
            self.cache_reused = loaded[0] is not None
            if self.cache_reused:
                self.hypotheses = {k: list(v) for k, v in loaded[0]['hypotheses'].items()}
                print_log(
                    f'Crop-vote hypotheses: reused the cache {cache.path} '
                    f'({len(self.hypotheses)} images)',
                    logger='current')
            else:
                self.hypotheses = self._compute(model, img_paths)
                if is_main_process():
                    cache.save(dict(settings=self.settings(model), hypotheses=self.hypotheses))
                    print_log(f'Crop-vote hypotheses written to {cache.path}', logger='current')
                barrier()
        finally:
            model.train(was_training)
        log_summary(self.hypotheses, self.mode)

    def before_train_iter(self, runner, batch_idx: int, data_batch=None) -> None:
        if data_batch is None or 'data_samples' not in data_batch:
            return
        for sample in data_batch['data_samples']:
            path = sample.metainfo.get('img_path')
            if path not in self.hypotheses:
                raise KeyError(
                    f'CropVoteHypothesisHook has no hypothesis for image {path!r} '
                    f'({len(self.hypotheses)} images known). The sample must carry the '
                    "dataset's `img_path` (PackSegInputs meta_keys) and the dataset must "
                    'not change after before_train.')
            sample.set_metainfo(dict(hypothesis=list(self.hypotheses[path])))

    def _compute(self, model, img_paths: List[str]) -> Dict[str, List[int]]:
        pre = model.data_preprocessor
        mean, std = norm_params(pre)
        device = mean.device if mean is not None else model_device(model)
        crops = CropVoteCrops(img_paths, self.mode, self.window, self.stride, self.img_scale,
                              bool(getattr(pre, 'channel_conversion', False)), self.backend_args)
        if self.mode == 'crop_vote':
            reduce = partial(torch.argmax, dim=1)
            vote = partial(_crop_vote, min_frequency=self.min_frequency)
        else:
            reduce = None
            vote = partial(
                _global_vote,
                scale=self.score_scale,
                threshold=self.score_threshold,
                top_k=self.top_k)

        def score_fn(batch: torch.Tensor) -> torch.Tensor:
            with precision_context(self.cast_dtype, batch.device):
                return model.global_class_scores(batch).float()

        dtype = 'fp32' if self.cast_dtype is None else str(self.cast_dtype).split('.')[-1]
        return compute_hypotheses(
            score_fn,
            crops,
            vote,
            reduce,
            input_size=self.input_size,
            mean=mean,
            std=std,
            device=device,
            batch_size=self.batch_size,
            num_workers=self.num_workers,
            log_interval=self.log_interval,
            precision_name=dtype)


def _crop_vote(top1: torch.Tensor, num_classes: int, min_frequency: float) -> List[int]:
    return votes_to_hypothesis(top1, num_classes, min_frequency)


def _global_vote(scores: torch.Tensor, num_classes: int, scale: float, threshold: float,
                 top_k: int) -> List[int]:
    return global_hypothesis(scale * scores[0], threshold, top_k)


def _content_problem(data: dict, img_paths: Sequence[str],
                     num_classes: Optional[int]) -> Optional[str]:
    if not isinstance(data.get('hypotheses'), dict):
        return 'not a hypothesis cache'
    return hypotheses_problem(data['hypotheses'], img_paths, num_classes)
