"""Multi-label image hypotheses by crop voting (method §5), computed once and cached.

ReCLIP++ trains with, for every training image, the set of classes it probably
contains: a square window slides over the image; each crop goes through CLIP's own
image path (resized to 224, global embedding) and its top-1 class over the text
queries ``Q`` is one vote; the classes whose vote frequency exceeds ``θ`` form the
image's hypothesis. The conference ReCLIP instead thresholds
``100·cos(global image feature, Q)`` with a top-K fallback (``mode='global'``).

Everything depends only on the frozen CLIP, so the hypotheses are computed once in
``before_train`` (on resume too), cached on disk and attached to every training
sample's metainfo (``'hypothesis'``) in ``before_train_iter``. Ground truth is never
read: the hook opens the image files listed by the training dataset, nothing else.
"""
import hashlib
import logging
import os
import os.path as osp
import time
from typing import Dict, Iterator, List, Optional, Sequence, Tuple, Union

import mmcv
import numpy as np
import torch
from mmengine import fileio
from mmengine.dist import (all_gather_object, barrier, broadcast_object_list,
                           get_dist_info, is_main_process)
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper
from mmseg.registry import HOOKS
from ...datasets.crop_vote_crops import (CropVoteCrops, batch_crops, build_crop_loader,
                                         prepare_crops)
from ...models.utils import atomic_torch_save, precision_context, resolve_precision

__all__ = [
    'CropVoteHypothesisHook', 'window_boxes', 'votes_to_hypothesis', 'global_hypothesis',
    'resolve_length', 'collect_img_paths'
]

Box = Tuple[int, int, int, int]
Length = Union[int, float]

# Bump when the computation changes in a way the settings do not describe: old caches
# then stop matching.
CACHE_VERSION = 1
CACHE_PREFIX = 'reclip_hypotheses_'


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
    return [(y, x, y + win, x + win) for y in _starts(h, win, step)
            for x in _starts(w, win, step)]


def votes_to_hypothesis(top1: torch.Tensor, num_classes: int,
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


def collect_img_paths(dataset) -> List[str]:
    """Sorted unique ``img_path`` of every item of a (possibly wrapped) dataset.

    Handles mmengine's ``ConcatDataset`` / ``RepeatDataset`` / ``ClassBalancedDataset``,
    torch's ``ConcatDataset`` / ``Subset`` and mmseg's ``MultiImageMixDataset``; any
    other dataset must provide ``get_data_info(i)`` with an ``'img_path'`` key.
    """
    from mmengine.dataset import ClassBalancedDataset, ConcatDataset, RepeatDataset
    from torch.utils.data import ConcatDataset as TorchConcat
    from torch.utils.data import Subset
    paths = set()

    def visit(ds):
        if isinstance(ds, (ConcatDataset, TorchConcat)):
            for sub in ds.datasets:
                visit(sub)
            return
        if isinstance(ds, (RepeatDataset, ClassBalancedDataset)):
            visit(ds.dataset)
            return
        if type(ds).__name__ == 'MultiImageMixDataset' and hasattr(ds, 'dataset'):
            visit(ds.dataset)
            return
        if isinstance(ds, Subset):
            base = ds.dataset
            if not hasattr(base, 'get_data_info'):
                raise TypeError(f'Subset of {type(base).__name__} has no get_data_info')
            if hasattr(base, 'full_init'):
                base.full_init()
            for i in ds.indices:
                paths.add(_img_path(base, int(i)))
            return
        if not hasattr(ds, 'get_data_info'):
            raise TypeError(
                f'CropVoteHypothesisHook cannot list the images of a {type(ds).__name__}: '
                'it supports mmseg/mmengine BaseDataset (get_data_info(i)["img_path"]) and '
                'the ConcatDataset / RepeatDataset / ClassBalancedDataset / '
                'MultiImageMixDataset / Subset wrappers.')
        if hasattr(ds, 'full_init'):
            ds.full_init()
        for i in range(len(ds)):
            paths.add(_img_path(ds, i))

    visit(dataset)
    return sorted(paths)


def _img_path(dataset, idx: int) -> str:
    info = dataset.get_data_info(idx)
    if 'img_path' not in info:
        raise KeyError(f'{type(dataset).__name__}.get_data_info({idx}) has no "img_path" '
                       f'(keys: {sorted(info)}); CropVoteHypothesisHook needs image paths.')
    return info['img_path']


def read_image(path: str, backend_args: Optional[dict] = None) -> np.ndarray:
    """Read an image as ``LoadImageFromFile`` does (cv2, colour, BGR ``uint8 [H, W, 3]``)."""
    try:
        img_bytes = fileio.get(path, backend_args=backend_args)
        img = mmcv.imfrombytes(img_bytes, flag='color', backend='cv2')
    except Exception as e:
        raise OSError(f'CropVoteHypothesisHook could not read the image {path!r}: {e}') from e
    if img is None:
        raise OSError(f'CropVoteHypothesisHook could not decode the image {path!r} '
                      '(corrupt or not an image)')
    return img


def file_signature(path: str) -> Tuple[int, int]:
    """``(size, mtime_ns)`` of a local file (clear error when it is missing)."""
    try:
        st = os.stat(path)
    except OSError as e:
        raise OSError(f'CropVoteHypothesisHook could not read the image {path!r}: {e}') from e
    return st.st_size, st.st_mtime_ns


@HOOKS.register_module()
class CropVoteHypothesisHook(Hook):
    """Attach multi-label crop-vote hypotheses to the training samples (method §5).

    In ``before_train`` (also on resume) every image of ``runner.train_dataloader``'s
    dataset is read from disk (as ``LoadImageFromFile`` does: cv2, BGR, converted to
    RGB when the model's data preprocessor has ``bgr_to_rgb``), optionally rescaled to
    a short side of ``img_scale``, cut into square windows (:func:`window_boxes`), each
    crop resized to ``input_size²`` (``torch`` bilinear, ``align_corners=False``,
    ``antialias=False``), normalised with the data preprocessor's mean/std and scored
    by ``model.global_class_scores`` (``[N, C]`` cosines of CLIP's global embedding
    against ``Q``). The top-1 class of a crop is a vote; the hypothesis keeps the
    classes whose vote frequency is ``> min_frequency`` (:func:`votes_to_hypothesis`).
    ``mode='global'`` instead squashes the whole image to ``input_size²`` and keeps
    the classes with ``score_scale·cos >= score_threshold``, or the ``top_k`` best when
    fewer pass (:func:`global_hypothesis`). No ground truth is ever read.

    The result is cached in ``cache_dir`` as
    ``reclip_hypotheses_<first 16 hex digits of the key>.pth`` where the key is a
    SHA-256 over the sorted image paths with each file's size and mtime, the query
    embeddings ``Q`` (weights, class names, templates) and class mapping, every vote
    setting, the input size and the normalisation. A cache with the same key is
    reused (a corrupt one is recomputed and replaced); writes are atomic.

    In ``before_train_iter`` each data sample gets
    ``metainfo['hypothesis'] = [class indices]`` (looked up by ``img_path``).

    Args:
        window (int | float): window side in pixels (``int``) or as a ratio of the
            image's shorter side (``float`` in (0, 1]). Released: crop_size / 6
            (VOC 56, Context 80, others 85).
        stride (int | float, optional): window step, pixels or ratio like ``window``;
            ``None``: half the window (released).
        min_frequency (float): ``θ``; keep classes with ``votes / crops > θ``
            (released 0: any vote).
        mode (str): ``'crop_vote'`` (ReCLIP++) or ``'global'`` (conference ReCLIP).
        score_threshold (float, optional): ``'global'`` mode threshold on
            ``score_scale·cos`` (VOC 23, Context 20, ADE 21, Cityscapes 21.5,
            COCO-27 20). Required in ``'global'`` mode.
        top_k (int, optional): ``'global'`` mode fallback K (VOC 2, Context 6, ADE 5,
            Cityscapes 2, COCO-27 8); ``0`` disables it. Required in ``'global'`` mode.
        score_scale (float): multiplier of the cosines in ``'global'`` mode (100).
        input_size (int): CLIP's input size ``S`` each crop is resized to (224).
        batch_size (int): crops per forward pass (crops of several images are batched).
        num_workers (int): ``DataLoader`` worker processes that read, decode and cut the
            images (:class:`~mmseg_reclip.datasets.crop_vote_crops.CropVoteCrops`) while
            CLIP runs; ``0`` reads them in the main process. Default 2.
        precision (str): CLIP's precision for the votes: ``'fp32'``, ``'bf16'``,
            ``'fp16'`` (GPU only) or ``'auto'`` (default): the training's mixed
            precision when the optim wrapper is an ``AmpOptimWrapper`` (its ``dtype``;
            mmengine's default when unset: fp16 on GPU, bf16 on CPU), else fp32. Any
            precision other than fp32 is part of the cache key (votes may differ).
        cache_dir (str, optional): where the cache lives; default ``runner.work_dir``.
        img_scale (int, optional): rescale each image to this shorter side (keeping the
            aspect ratio, cv2 bilinear like mmseg's ``Resize``) before voting; ``None``
            (default): the original image. Windows given as ratios apply after it.
        backend_args (dict, optional): mmengine fileio backend for reading images. The
            cache key uses ``os.stat``, so the images must be local files.
        log_interval (int): log progress every this many images.
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
                 input_size: int = 224,
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
        else:
            if score_threshold is None or top_k is None:
                raise ValueError(
                    "mode='global' needs score_threshold and top_k (conference ReCLIP: "
                    'VOC 23/2, Context 20/6, ADE 21/5, Cityscapes 21.5/2, COCO-27 20/8)')
            if top_k < 0:
                raise ValueError(f'top_k must be >= 0, got {top_k}')
        if int(input_size) < 1 or int(batch_size) < 1:
            raise ValueError('input_size and batch_size must be >= 1')
        if img_scale is not None and int(img_scale) < 1:
            raise ValueError(f'img_scale must be None or >= 1, got {img_scale}')
        if int(num_workers) < 0:
            raise ValueError(f'num_workers must be >= 0, got {num_workers}')
        if precision != 'auto':
            resolve_precision(precision)  # clear error for an unknown name
        self.window = window
        self.stride = stride
        self.min_frequency = float(min_frequency)
        self.mode = mode
        self.score_threshold = None if score_threshold is None else float(score_threshold)
        self.top_k = None if top_k is None else int(top_k)
        self.score_scale = float(score_scale)
        self.input_size = int(input_size)
        self.batch_size = int(batch_size)
        self.cache_dir = cache_dir
        self.img_scale = None if img_scale is None else int(img_scale)
        self.backend_args = backend_args
        self.log_interval = max(1, int(log_interval))
        self.num_workers = int(num_workers)
        self.precision = precision
        # Resolved in before_train ('auto' looks at the runner's optim wrapper).
        self.cast_dtype: Optional[torch.dtype] = None
        self.hypotheses: Dict[str, List[int]] = {}
        self.cache_path: Optional[str] = None
        self.cache_key: Optional[str] = None
        self.cache_reused = False

    # ------------------------------------------------------------------ settings / key
    def settings(self, model=None) -> dict:
        """Every setting that affects the hypotheses (stored in the cache and hashed)."""
        s = dict(version=CACHE_VERSION, mode=self.mode, input_size=self.input_size,
                 img_scale=self.img_scale, resize='torch-bilinear-noantialias',
                 decode='cv2-color')
        if self.mode == 'crop_vote':
            s.update(window=self.window, stride=self.stride, min_frequency=self.min_frequency)
        else:
            s.update(score_threshold=self.score_threshold, top_k=self.top_k,
                     score_scale=self.score_scale)
        if self.cast_dtype is not None:  # fp32 keeps the keys of existing caches
            s['precision'] = str(self.cast_dtype)
        if model is not None:
            pre = model.data_preprocessor
            s['bgr_to_rgb'] = bool(getattr(pre, 'channel_conversion', False))
            mean, std = _norm_params(pre)
            s['mean'] = None if mean is None else [float(v) for v in mean.flatten()]
            s['std'] = None if std is None else [float(v) for v in std.flatten()]
        return s

    def compute_key(self, model, img_paths: Sequence[str]) -> str:
        """SHA-256 over images (path, size, mtime_ns), ``Q`` and every setting."""
        h = hashlib.sha256()
        h.update(repr(sorted(self.settings(model).items())).encode())
        for path in sorted(img_paths):
            size, mtime = file_signature(path)
            h.update(f'{path}\0{size}\0{mtime}\n'.encode())
        for name, tensor in _model_fingerprint(model, self.input_size):
            t = tensor.detach().cpu().contiguous()
            h.update(f'{name}:{t.dtype}:{tuple(t.shape)}'.encode())
            h.update(t.numpy().tobytes())
        return h.hexdigest()

    # ------------------------------------------------------------------ hook API
    def before_train(self, runner) -> None:
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        for attr in ('global_class_scores', 'data_preprocessor'):
            if not hasattr(model, attr):
                raise TypeError(f'CropVoteHypothesisHook needs a model with `{attr}` '
                                f'(ReCLIP and its distiller); got {type(model).__name__}')
        self.cast_dtype = self._resolve_cast_dtype(runner)
        dataset = runner.train_dataloader.dataset
        img_paths = collect_img_paths(dataset)
        if not img_paths:
            raise ValueError('CropVoteHypothesisHook: the training dataset has no image')
        cache_dir = self.cache_dir or runner.work_dir
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                key = self.compute_key(model, img_paths)
            self.cache_key = key
            self.cache_path = osp.join(cache_dir, f'{CACHE_PREFIX}{key[:16]}.pth')
            num_classes = getattr(getattr(model, 'decode_head', None), 'num_classes', None)
            loaded = [
                self._load_cache(self.cache_path, key, img_paths, num_classes)
                if is_main_process() else None
            ]
            broadcast_object_list(loaded, src=0)
            if loaded[0] is not None:
                self.hypotheses = loaded[0]
                self.cache_reused = True
                print_log(f'Crop-vote hypotheses: reused the cache {self.cache_path} '
                          f'({len(self.hypotheses)} images)', logger='current')
            else:
                self.cache_reused = False
                self.hypotheses = self._compute_all(model, img_paths)
                if is_main_process():
                    os.makedirs(cache_dir, exist_ok=True)
                    save_cache_atomic(self.cache_path,
                                      dict(key=key, settings=self.settings(model),
                                           hypotheses=self.hypotheses))
                    print_log(f'Crop-vote hypotheses written to {self.cache_path}',
                              logger='current')
                barrier()
        finally:
            model.train(was_training)
        self._log_summary()

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

    # ------------------------------------------------------------------ computation
    def _compute_all(self, model, img_paths: List[str]) -> Dict[str, List[int]]:
        rank, world_size = get_dist_info()
        mine = img_paths[rank::world_size]
        print_log(f'Computing {self.mode} hypotheses for {len(img_paths)} images '
                  f'(rank {rank}: {len(mine)}) ...', logger='current')
        result = self._compute(model, mine)
        if world_size > 1:
            merged: Dict[str, List[int]] = {}
            for part in all_gather_object(result):
                merged.update(part)
            result = merged
        return {p: result[p] for p in sorted(result)}

    def _resolve_cast_dtype(self, runner) -> Optional[torch.dtype]:
        """The autocast dtype of the votes (``None``: fp32), see ``precision``."""
        if self.precision != 'auto':
            return resolve_precision(self.precision)
        wrapper = getattr(runner, 'optim_wrapper', None)
        if wrapper is None or not hasattr(wrapper, 'loss_scaler'):  # not an AMP wrapper
            return None
        dtype = getattr(wrapper, 'cast_dtype', None)
        if dtype is None:  # mmengine's autocast default
            dtype = torch.float16 if torch.cuda.is_available() else torch.bfloat16
        return resolve_precision(dtype)

    def _crop_dataset(self, model, paths: List[str]) -> CropVoteCrops:
        return CropVoteCrops(
            paths, mode=self.mode, window=self.window, stride=self.stride,
            img_scale=self.img_scale,
            bgr_to_rgb=bool(getattr(model.data_preprocessor, 'channel_conversion', False)),
            backend_args=self.backend_args)

    def _image_crops(self, model, path: str) -> torch.Tensor:
        """The raw crops of one image, ``[n, 3, h, w]`` float (RGB if the preprocessor
        converts), on the model's device (one crop: the whole image in ``'global'``)."""
        crops = self._crop_dataset(model, [path])[0]['crops']
        return crops.to(self._device(model)).float()

    def _prepare(self, model, crops: torch.Tensor) -> torch.Tensor:
        """Resize raw crops to ``input_size²`` (bilinear, no antialias) and normalise."""
        mean, std = _norm_params(model.data_preprocessor)
        return prepare_crops(crops, self.input_size, mean, std)

    @staticmethod
    def _device(model) -> torch.device:
        mean, _ = _norm_params(model.data_preprocessor)
        return mean.device if mean is not None else _model_device(model)

    def _iter_batches(self, model,
                      paths: List[str]) -> Iterator[Tuple[torch.Tensor, list]]:
        """Batches of ≤ ``batch_size`` prepared crops (possibly from several images).

        Images are read and cut by ``num_workers`` ``DataLoader`` workers
        (:class:`CropVoteCrops`); crops are resized per image (windows of one image share
        a size) on the model's device, then batched (:func:`batch_crops`).

        Yields ``(crops, owners)`` with ``owners`` a list of ``(path, n_crops_of_path,
        count_in_this_batch)``.
        """
        device = self._device(model)
        loader = build_crop_loader(self._crop_dataset(model, paths), self.num_workers,
                                   pin_memory=device.type == 'cuda')
        mean, std = _norm_params(model.data_preprocessor)
        yield from batch_crops(iter(loader), self.batch_size, self.input_size, mean, std,
                               device)

    def _scores(self, model, crops: torch.Tensor) -> torch.Tensor:
        """``[N, C]`` fp32 crop scores, CLIP at the vote precision."""
        with precision_context(self.cast_dtype, crops.device):
            return model.global_class_scores(crops).float()

    def _announce(self, model, paths: List[str]) -> int:
        """Log the number of images and crops and an ETA from a timed probe batch."""
        dataset = self._crop_dataset(model, paths)
        total = sum(dataset.num_crops(i) for i in range(len(paths)))
        # Two probe passes cost at most ~10 % of the pre-pass (small runs, CPU demos).
        probe_n = max(1, min(self.batch_size, total // 20))
        probe = torch.zeros(probe_n, 3, self.input_size, self.input_size,
                            device=self._device(model))
        self._scores(model, probe)  # warm-up (kernels, allocator, lazy Q)
        _sync(probe.device)
        start = time.perf_counter()
        self._scores(model, probe)
        _sync(probe.device)
        rate = probe_n / max(time.perf_counter() - start, 1e-9)
        dtype = 'fp32' if self.cast_dtype is None else str(self.cast_dtype).split('.')[-1]
        print_log(f'Crop-vote pre-pass: {len(paths)} images, {total} crops, batch '
                  f'{self.batch_size}, {self.num_workers} reader workers, CLIP in {dtype}; '
                  f'~{rate:.0f} crops/s measured on a probe batch, ETA '
                  f'{_fmt_seconds(total / rate)}', logger='current')
        return total

    @torch.no_grad()
    def _compute(self, model, paths: List[str]) -> Dict[str, List[int]]:
        result: Dict[str, List[int]] = {}
        partial: Dict[str, List[torch.Tensor]] = {}
        total_crops = self._announce(model, paths)
        done_crops, start = 0, time.perf_counter()
        pending = None  # the previous batch: read back after the next one is queued
        for batch in _with_end(self._iter_batches(model, paths)):
            if batch is not None:
                crops, owners = batch
                scores = self._scores(model, crops)
                num_classes = scores.shape[1]
                rows_dev = scores.argmax(dim=1) if self.mode == 'crop_vote' else scores
                batch, pending = pending, (rows_dev, owners, crops.shape[0])
            else:
                batch, pending = pending, None
            if batch is None:
                continue
            # On GPUs this .cpu() waits for the previous batch only, while the current
            # one is already queued: reading, resizing and bookkeeping overlap CLIP.
            rows, owners, n_rows = batch[0].cpu(), batch[1], batch[2]
            done_crops += n_rows
            offset = 0
            for path, total, take in owners:
                partial.setdefault(path, []).append(rows[offset:offset + take])
                offset += take
                got = sum(r.shape[0] for r in partial[path])
                if got == total:
                    out = torch.cat(partial.pop(path))
                    if self.mode == 'crop_vote':
                        result[path] = votes_to_hypothesis(out, num_classes, self.min_frequency)
                    else:
                        result[path] = global_hypothesis(self.score_scale * out[0],
                                                         self.score_threshold, self.top_k)
                    if len(result) % self.log_interval == 0 or len(result) == len(paths):
                        elapsed = time.perf_counter() - start
                        rate = done_crops / max(elapsed, 1e-9)
                        left = max(total_crops - done_crops, 0) / max(rate, 1e-9)
                        print_log(f'Crop-vote hypotheses: {len(result)}/{len(paths)} images, '
                                  f'{rate:.0f} crops/s, ETA {_fmt_seconds(left)}',
                                  logger='current')
        return result

    # ------------------------------------------------------------------ cache
    @staticmethod
    def _load_cache(path: str,
                    key: str,
                    img_paths: Sequence[str] = (),
                    num_classes: Optional[int] = None) -> Optional[Dict[str, List[int]]]:
        """The cached hypotheses, or None (recompute) when the file is missing, unreadable,
        for another key, or its content is invalid: every image of ``img_paths`` must
        have a list of int class ids in ``[0, num_classes)``.

        Loaded with ``weights_only=True`` (plain dict of lists and strings), so a crafted
        file cannot run code.
        """
        if not osp.exists(path):
            return None
        try:
            data = torch.load(path, map_location='cpu', weights_only=True)
            if not isinstance(data, dict) or not isinstance(data.get('hypotheses'), dict):
                raise ValueError('not a hypothesis cache')
        except Exception as e:  # corrupt / truncated / foreign / unsafe file
            print_log(f'Crop-vote cache {path} is unreadable ({type(e).__name__}: '
                      f'{str(e).splitlines()[0] if str(e) else ""}); recomputing and '
                      'replacing it.', logger='current', level=logging.WARNING)
            return None
        if data.get('key') != key:
            print_log(f'Crop-vote cache {path} was written with other settings or data '
                      '(key mismatch); recomputing and replacing it.', logger='current',
                      level=logging.WARNING)
            return None
        problem = _hypotheses_problem(data['hypotheses'], img_paths, num_classes)
        if problem is not None:
            print_log(f'Crop-vote cache {path} has the right key but invalid content '
                      f'({problem}); recomputing and replacing it.', logger='current',
                      level=logging.WARNING)
            return None
        return {k: list(v) for k, v in data['hypotheses'].items()}

    def _log_summary(self) -> None:
        n = len(self.hypotheses)
        sizes = [len(v) for v in self.hypotheses.values()]
        mean = sum(sizes) / max(n, 1)
        empty = sum(1 for s in sizes if s == 0)
        print_log(f'Crop-vote hypotheses ({self.mode}): {n} images, {mean:.2f} classes per '
                  f'image on average, {empty} empty', logger='current')
        if n and empty * 2 > n:
            # an empty hypothesis masks every class out of the loss of that image
            print_log(f'{empty} of {n} training images have an EMPTY hypothesis: their '
                      'loss is zero and nothing learns from them. Check the class names, '
                      'the CLIP weights and min_frequency / score_threshold.',
                      logger='current', level=logging.WARNING)


def _hypotheses_problem(hypotheses: dict, img_paths: Sequence[str],
                        num_classes: Optional[int]) -> Optional[str]:
    """What is wrong with cached hypotheses (None when valid)."""
    for path, classes in hypotheses.items():
        if not isinstance(path, str) or not isinstance(classes, (list, tuple)):
            return f'entry {path!r} is not a list of class ids'
        for c in classes:
            if type(c) is not int:
                return f'{path}: class id {c!r} is not an int'
            if c < 0 or (num_classes is not None and c >= num_classes):
                return f'{path}: class id {c} outside [0, {num_classes})'
    missing = [p for p in img_paths if p not in hypotheses]
    if missing:
        return f'lacks {len(missing)} of {len(img_paths)} images, e.g. {missing[0]}'
    return None


def save_cache_atomic(path: str, obj) -> None:
    """Write the cache with :func:`atomic_torch_save` (temp file + ``os.replace``)."""
    atomic_torch_save(obj, path)


def _norm_params(pre) -> Tuple[Optional[torch.Tensor], Optional[torch.Tensor]]:
    """Mean/std ``[3, 1, 1]`` of a data preprocessor, or ``(None, None)`` when off."""
    if not getattr(pre, '_enable_normalize', hasattr(pre, 'mean')):
        return None, None
    return pre.mean.reshape(-1, 1, 1), pre.std.reshape(-1, 1, 1)


def _with_end(iterator):
    """The items of ``iterator``, then one ``None``."""
    yield from iterator
    yield None


def _sync(device: torch.device) -> None:
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def _fmt_seconds(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f'{h}h{m:02d}m{s:02d}s' if h else f'{m}m{s:02d}s'


def _model_device(model) -> torch.device:
    for p in model.parameters():
        return p.device
    return torch.device('cpu')


def _model_fingerprint(model, input_size: int) -> List[Tuple[str, torch.Tensor]]:
    """Tensors that identify what the model votes with.

    ``Q`` (``decode_head.queries()``) covers the CLIP weights, the class names and the
    templates; ``name_to_class`` covers the synonym mapping. A model without a query
    head is fingerprinted by its scores on a fixed probe image instead (rounded, so
    that tiny numeric differences between devices do not change it).
    """
    head = getattr(model, 'decode_head', None)
    if head is not None and hasattr(head, 'queries'):
        out = [('queries', head.queries())]
        if hasattr(head, 'name_to_class'):
            out.append(('name_to_class', head.name_to_class))
        return out
    gen = torch.Generator().manual_seed(0)
    probe = torch.randn(2, 3, input_size, input_size, generator=gen)
    scores = model.global_class_scores(probe.to(_model_device(model))).float()
    return [('probe_scores', torch.round(scores * 1e3).to(torch.int64))]
