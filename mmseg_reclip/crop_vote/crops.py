"""The crops of the crop-vote pre-pass (docs/method.md §5) as a torch ``Dataset``.

:class:`CropVoteHypothesisHook` scores every square window of every training image with
CLIP. Reading and decoding the images (and the optional ``img_scale`` rescale) is the
CPU-heavy part: this dataset does it in ``DataLoader`` worker processes, one item per
image, while the main process runs CLIP. An item holds the image's raw ``uint8`` crops
(``[n, 3, win, win]``, ~9 KB per 56-pixel crop): the resize to CLIP's input size and the
normalisation run batched on the model's device, where they are cheap, so the workers
ship 60× fewer bytes than 224² float crops and the crops are bit-identical to the ones
the hook made before it had workers (the resize runs on the same device as before).

Nothing here reads a label: only the image files the training dataset lists.
"""
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import mmcv
import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from ..datasets.image_listing import read_image
from .vote import window_boxes

__all__ = ['CropVoteCrops', 'build_crop_loader', 'batch_crops', 'prepare_crops']


class CropVoteCrops(Dataset):
    """One item per image: its voting crops, raw.

    Args:
        img_paths (list[str]): the images, in the order items are returned.
        mode (str): ``'crop_vote'`` (square windows) or ``'global'`` (the whole image
            as one crop).
        window (int | float): window side, pixels or ratio of the shorter side.
        stride (int | float, optional): window step (``None``: half the window).
        img_scale (int, optional): rescale each image to this shorter side first
            (cv2 bilinear, like mmseg's ``Resize``).
        bgr_to_rgb (bool): convert the cv2 BGR image to RGB (the model's data
            preprocessor ``bgr_to_rgb``).
        backend_args (dict, optional): mmengine fileio backend.

    Item:
        dict with ``'path'`` (str) and ``'crops'`` (``uint8`` Tensor ``[n, 3, h, w]``;
        the windows of one image share a size; ``n = 1`` in ``'global'`` mode).
    """

    def __init__(self,
                 img_paths: Sequence[str],
                 mode: str = 'crop_vote',
                 window=56,
                 stride=None,
                 img_scale: Optional[int] = None,
                 bgr_to_rgb: bool = True,
                 backend_args: Optional[dict] = None) -> None:
        self.img_paths = list(img_paths)
        self.mode = mode
        self.window = window
        self.stride = stride
        self.img_scale = img_scale
        self.bgr_to_rgb = bgr_to_rgb
        self.backend_args = backend_args

    def __len__(self) -> int:
        return len(self.img_paths)

    def scaled_size(self, h: int, w: int) -> Tuple[int, int]:
        """Image size after the optional ``img_scale`` rescale."""
        if self.img_scale is None:
            return h, w
        scale = self.img_scale / min(h, w)
        return max(1, int(round(h * scale))), max(1, int(round(w * scale)))

    def __getitem__(self, idx: int) -> Dict[str, object]:
        path = self.img_paths[idx]
        img = read_image(path, self.backend_args)
        if self.img_scale is not None:
            new_h, new_w = self.scaled_size(*img.shape[:2])
            img = mmcv.imresize(img, (new_w, new_h), interpolation='bilinear')
        if self.bgr_to_rgb:
            img = img[..., ::-1]
        t = torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)
        if self.mode == 'global':
            return dict(path=path, crops=t[None].contiguous())
        boxes = window_boxes(t.shape[1], t.shape[2], self.window, self.stride)
        crops = torch.stack([t[:, y0:y1, x0:x1] for y0, x0, y1, x1 in boxes])
        return dict(path=path, crops=crops)

    def num_crops(self, idx: int) -> int:
        """Crops of image ``idx`` from its header only (no decoding).

        The count is the same whether or not EXIF orientation swaps height and width
        (the window grid is ``rows(h)·cols(w)`` with one function for both axes).
        """
        if self.mode == 'global':
            return 1
        from PIL import Image

        from ..datasets.image_listing import UNREADABLE_IMAGE_FIX
        path = self.img_paths[idx]
        try:
            with Image.open(path) as im:
                w, h = im.size
        except Exception as e:  # PIL's errors name no fix
            raise OSError(f'Could not read the image {path!r} (corrupt or not an image: '
                          f'{type(e).__name__}); {UNREADABLE_IMAGE_FIX}') from e
        return len(window_boxes(*self.scaled_size(h, w), self.window, self.stride))


def build_crop_loader(dataset: CropVoteCrops,
                      num_workers: int = 2,
                      pin_memory: bool = False,
                      prefetch_factor: int = 4) -> DataLoader:
    """A ``DataLoader`` yielding one image's item at a time, read by ``num_workers``
    processes (``0``: in the main process), in the dataset's order."""
    kwargs = dict(
        num_workers=num_workers,
        pin_memory=pin_memory,
        batch_size=None,
        shuffle=False,
        collate_fn=_identity)
    if num_workers > 0:
        kwargs.update(prefetch_factor=prefetch_factor, persistent_workers=False)
    return DataLoader(dataset, **kwargs)


def _identity(item):
    return item


def prepare_crops(crops: torch.Tensor, input_size: int, mean: Optional[torch.Tensor],
                  std: Optional[torch.Tensor]) -> torch.Tensor:
    """Resize raw crops ``[n, 3, h, w]`` to ``input_size²`` (torch bilinear, no
    antialias, ``align_corners=False``) in float32 and normalise with ``mean``/``std``
    (``[3, 1, 1]`` or ``None``). Returns ``[n, 3, S, S]`` float32."""
    crops = F.interpolate(
        crops.float(),
        size=(input_size, input_size),
        mode='bilinear',
        align_corners=False,
        antialias=False)
    if mean is not None:
        crops = (crops - mean) / std
    return crops


def batch_crops(items: Iterator[dict], batch_size: int, input_size: int,
                mean: Optional[torch.Tensor], std: Optional[torch.Tensor],
                device: torch.device) -> Iterator[Tuple[torch.Tensor, list]]:
    """Batches of ``batch_size`` prepared crops across images (the last may be smaller).

    Each image's raw crops are moved to ``device`` (``non_blocking``: the loader pins
    them on GPUs) and resized/normalised there, in chunks that fill the batch.

    Yields:
        ``(crops [b, 3, S, S], owners)``, ``owners`` a list of
        ``(path, n_crops_of_path, count_in_this_batch)`` in batch order.
    """
    buf: List[torch.Tensor] = []
    owners: list = []
    n_buf = 0
    for item in items:
        path, crops = item['path'], item['crops'].to(device, non_blocking=True)
        total, start = crops.shape[0], 0
        while start < total:
            take = min(batch_size - n_buf, total - start)
            buf.append(prepare_crops(crops[start:start + take], input_size, mean, std))
            owners.append((path, total, take))
            n_buf += take
            start += take
            if n_buf == batch_size:
                yield torch.cat(buf), owners
                buf, owners, n_buf = [], [], 0
    if buf:
        yield torch.cat(buf), owners
