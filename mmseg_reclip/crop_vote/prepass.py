"""The crop-vote pre-pass (docs/method.md §5): every training image's crops through CLIP, batched.

:class:`CropVoteHypothesisHook` wires this into training; the work is here. Images are
read and cut by ``DataLoader`` workers (:class:`CropVoteCrops`), resized and normalised
on the model's device in batches that span images (:func:`batch_crops`), scored by a
``score_fn`` (CLIP's global scores, :func:`global_class_scores`) and reduced to one
hypothesis per image by a ``vote`` function (:func:`votes_to_hypothesis` or
:func:`global_hypothesis`). Ranks share the images and gather the result. Progress and
an ETA are logged. Nothing here reads a label.
"""
import logging
import time
from typing import Callable, Dict, List, Optional, Tuple

import torch
from mmengine.dist import all_gather_object, get_dist_info
from mmengine.logging import print_log

from ..utils.amp import resolve_precision
from .crops import CropVoteCrops, batch_crops, build_crop_loader

__all__ = [
    'compute_hypotheses', 'norm_params', 'vote_dtype', 'model_fingerprint', 'model_device',
    'log_summary'
]

ScoreFn = Callable[[torch.Tensor], torch.Tensor]
VoteFn = Callable[[torch.Tensor, int], List[int]]


def norm_params(pre) -> Tuple[Optional[torch.Tensor], Optional[torch.Tensor]]:
    """Mean/std ``[3, 1, 1]`` of a data preprocessor, or ``(None, None)`` when off."""
    if not getattr(pre, '_enable_normalize', hasattr(pre, 'mean')):
        return None, None
    return pre.mean.reshape(-1, 1, 1), pre.std.reshape(-1, 1, 1)


def compute_hypotheses(score_fn: ScoreFn,
                       crops: CropVoteCrops,
                       vote: VoteFn,
                       reduce: Optional[ScoreFn] = None,
                       *,
                       input_size: int,
                       mean: Optional[torch.Tensor],
                       std: Optional[torch.Tensor],
                       device: torch.device,
                       batch_size: int = 256,
                       num_workers: int = 2,
                       log_interval: int = 100,
                       precision_name: str = 'fp32') -> Dict[str, List[int]]:
    """Hypotheses of all images of ``crops``, each rank computing its share.

    Args:
        score_fn (callable): ``[b, 3, S, S]`` prepared crops → ``[b, C]`` fp32 scores.
        crops (CropVoteCrops): every image (all ranks list the same, in the same order);
            rank ``r`` of ``W`` computes images ``r, r + W, …``.
        vote (callable): ``vote(rows [n, ·], C)`` → the image's sorted class ids, from
            the rows of its ``n`` crops (after ``reduce``).
        reduce (callable, optional): applied to the scores on the device before they
            are read back (e.g. ``argmax``: ``[b, C]`` → ``[b]``); ``None``: keep them.
        input_size (int): ``S``, CLIP's input size.
        mean (Tensor, optional): ``[3, 1, 1]`` normalisation mean (``None``: off).
        std (Tensor, optional): ``[3, 1, 1]`` normalisation std.
        device (torch.device): where crops are prepared and scored.
        batch_size (int): crops per ``score_fn`` call.
        num_workers (int): image reader processes (``0``: the main process).
        log_interval (int): log progress every this many images.
        precision_name (str): CLIP's precision, for the log only.

    Returns:
        Dict[str, List[int]]: ``{img_path: class ids}`` for every image, path-sorted.
    """
    rank, world_size = get_dist_info()
    paths = crops.img_paths
    mine = CropVoteCrops(paths[rank::world_size], crops.mode, crops.window, crops.stride,
                         crops.img_scale, crops.bgr_to_rgb, crops.backend_args)
    print_log(
        f'Computing {crops.mode} hypotheses for {len(paths)} images '
        f'(rank {rank}: {len(mine)}) ...',
        logger='current')
    total = sum(mine.num_crops(i) for i in range(len(mine)))
    rate = _probe_rate(score_fn, min(batch_size, max(1, total // 20)), input_size, device)
    print_log(
        f'Crop-vote pre-pass: {len(mine)} images, {total} crops, batch '
        f'{batch_size}, {num_workers} reader workers, CLIP in {precision_name}; '
        f'~{rate:.0f} crops/s measured on a probe batch, ETA '
        f'{_fmt_seconds(total / rate)}',
        logger='current')
    loader = build_crop_loader(mine, num_workers, pin_memory=device.type == 'cuda')
    batches = batch_crops(iter(loader), batch_size, input_size, mean, std, device)
    result = _vote_all(batches, score_fn, vote, reduce, total, len(mine), log_interval)
    if world_size > 1:
        merged: Dict[str, List[int]] = {}
        for part in all_gather_object(result):
            merged.update(part)
        result = merged
    return {p: result[p] for p in sorted(result)}


@torch.no_grad()
def _vote_all(batches, score_fn: ScoreFn, vote: VoteFn, reduce: Optional[ScoreFn], total_crops: int,
              num_images: int, log_interval: int) -> Dict[str, List[int]]:
    """Score the batches and vote per image as soon as all its crops are scored."""
    result: Dict[str, List[int]] = {}
    partial: Dict[str, List[torch.Tensor]] = {}
    done_crops, start, num_classes = 0, time.perf_counter(), 0
    pending = None  # the previous batch: read back after the next one is queued
    for batch in _with_end(batches):
        if batch is not None:
            crops, owners = batch
            scores = score_fn(crops)
            num_classes = scores.shape[1]
            rows_dev = reduce(scores) if reduce is not None else scores
            batch, pending = pending, (rows_dev, owners, crops.shape[0])
        else:
            batch, pending = pending, None
        if batch is None:
            continue
        # On GPUs this .cpu() waits for the previous batch only, while the current one
        # is already queued: reading, resizing and bookkeeping overlap CLIP.
        rows, owners, n_rows = batch[0].cpu(), batch[1], batch[2]
        done_crops += n_rows
        offset = 0
        for path, total, take in owners:
            partial.setdefault(path, []).append(rows[offset:offset + take])
            offset += take
            if sum(r.shape[0] for r in partial[path]) < total:
                continue
            result[path] = vote(torch.cat(partial.pop(path)), num_classes)
            if len(result) % log_interval == 0 or len(result) == num_images:
                rate = done_crops / max(time.perf_counter() - start, 1e-9)
                left = max(total_crops - done_crops, 0) / max(rate, 1e-9)
                print_log(
                    f'Crop-vote hypotheses: {len(result)}/{num_images} images, '
                    f'{rate:.0f} crops/s, ETA {_fmt_seconds(left)}',
                    logger='current')
    return result


def _probe_rate(score_fn: ScoreFn, n: int, input_size: int, device: torch.device) -> float:
    """Crops per second of ``score_fn`` on a zero batch of ``n`` (after a warm-up).

    Two probe passes cost at most ~10 % of the pre-pass (small runs, CPU demos).
    """
    probe = torch.zeros(n, 3, input_size, input_size, device=device)
    with torch.no_grad():
        score_fn(probe)  # warm-up (kernels, allocator, lazy Q)
        _sync(device)
        start = time.perf_counter()
        score_fn(probe)
        _sync(device)
    return n / max(time.perf_counter() - start, 1e-9)


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


def vote_dtype(precision: str, optim_wrapper=None) -> Optional[torch.dtype]:
    """CLIP's autocast dtype for the votes (``None``: fp32).

    Args:
        precision (str): ``'fp32'``, ``'bf16'``, ``'fp16'`` or ``'auto'``: the dtype of
            an ``AmpOptimWrapper`` (mmengine's default when unset: fp16 on GPU, bf16 on
            CPU), fp32 with any other wrapper.
        optim_wrapper: the runner's optim wrapper (``'auto'`` only).
    """
    if precision != 'auto':
        return resolve_precision(precision)
    if optim_wrapper is None or not hasattr(optim_wrapper, 'loss_scaler'):  # not AMP
        return None
    dtype = getattr(optim_wrapper, 'cast_dtype', None)
    if dtype is None:  # mmengine's autocast default
        dtype = torch.float16 if torch.cuda.is_available() else torch.bfloat16
    return resolve_precision(dtype)


def log_summary(hypotheses: Dict[str, List[int]], mode: str) -> None:
    """Log the mean hypothesis size; warn loudly when most hypotheses are empty."""
    n = len(hypotheses)
    sizes = [len(v) for v in hypotheses.values()]
    empty = sum(1 for s in sizes if s == 0)
    print_log(
        f'Crop-vote hypotheses ({mode}): {n} images, {sum(sizes) / max(n, 1):.2f} '
        f'classes per image on average, {empty} empty',
        logger='current')
    if n and empty * 2 > n:
        # an empty hypothesis masks every class out of the loss of that image
        print_log(
            f'{empty} of {n} training images have an EMPTY hypothesis: their loss '
            'is zero and nothing learns from them. Check the class names, the CLIP '
            'weights and min_frequency / score_threshold.',
            logger='current',
            level=logging.WARNING)


def model_device(model) -> torch.device:
    """The device of the model's first parameter (CPU without parameters)."""
    for p in model.parameters():
        return p.device
    return torch.device('cpu')


def model_fingerprint(model, input_size: int) -> list:
    """``(name, tensor)`` pairs that identify what the model votes with.

    ``Q`` (``decode_head.queries()``) covers the CLIP weights, the class names and the
    templates; ``name_to_class`` the synonym mapping. A model without a query head is
    fingerprinted by its scores on a fixed probe image (rounded: device noise must not
    change the key).
    """
    head = getattr(model, 'decode_head', None)
    if head is not None and hasattr(head, 'queries'):
        out = [('queries', head.queries())]
        if hasattr(head, 'name_to_class'):
            out.append(('name_to_class', head.name_to_class))
        return out
    probe = torch.randn(2, 3, input_size, input_size, generator=torch.Generator().manual_seed(0))
    scores = model.global_class_scores(probe.to(model_device(model))).float()
    return [('probe_scores', torch.round(scores * 1e3).to(torch.int64))]
