"""Generate the planted-bias world: a tiny CLIP file with a planted PE grid, images and
labels in mmseg's folder layout, ``world.json`` and the soundness evidence.

    python -m benchmarks.planted_bias.generate --out data/planted_bias

Layout under ``--out``::

    clip.pt  classes.txt  world.json  soundness.json
    img_dir/{train,val}/*.png   ann_dir/val/*.png

Training reads ``img_dir/train`` only (no label is written for it); ``ann_dir/val`` is
read by the metrics and, here, by the soundness checks. The generator exits with an
error when the world fails a check (docs/learning_check.md).
"""
import argparse
import io
import json
import os
import os.path as osp
from typing import List, Optional

import numpy as np
import open_clip
import torch
from PIL import Image

from mmseg_reclip.models.utils import register_model_configs
from mmseg_reclip.utils.io import atomic_torch_save, atomic_write
from . import world as W
from .soundness import patch_labels, run_checks

MODEL = 'ViT-Tiny-16-test'
CLASSES = ['sky', 'grass', 'water', 'tree', 'car', 'house']
BACKGROUNDS = [0, 1, 2]  # one per image
#: Two scene types: car and house never share an image.
SCENE_OBJECTS = [[3, 4], [3, 5]]
#: Class preference: water leans towards sky (0.52: just past the tie, so MaskCLIP
#: calls most water sky while the pooled water region still scores water above the
#: uniform, and the stage-1 loss keeps it); house leans towards car (0.4: MaskCLIP
#: still calls it house, but a house now looks like a car moved by the space bias).
LEAN = [[2, 0, 0.52], [5, 4, 0.4]]
#: Space preference: in the upper part of the input, car and house move by 0.6·(Q_house
#: − Q_car): an upper car looks exactly like a lower house (see docs/learning_check.md).
SPACE = [4, 5, 0.6]
SPACE_CLASSES = [4, 5]


def save_planted_clip(path: str, seed: int, r0: float, r1: float, kind: str = 'border') -> None:
    """A seeded random ``ViT-Tiny-16-test`` CLIP whose image PE grid is
    :func:`world.planted_pos_embed` (channel 0: the border profile)."""
    register_model_configs()
    torch.manual_seed(seed)
    model = open_clip.create_model(MODEL, pretrained=None)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.ndim >= 2:
                p.normal_(0, p.shape[-1]**-0.5)
            elif 'weight' in name:
                p.uniform_(0.5, 1.5)
            else:
                p.normal_(0, 0.02)
        visual = model.visual
        grid = tuple(visual.grid_size)
        pe = W.planted_pos_embed(visual.positional_embedding.shape[1], grid, r0, r1, seed, kind)
        visual.positional_embedding[1:] = pe.flatten(1).t()
    atomic_torch_save(model.state_dict(), path)


def _save_png(path: str, array: np.ndarray) -> None:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format='PNG')
    atomic_write(path, lambda f: f.write(buf.getvalue()))


def generate(out: str,
             num_train: int = 400,
             num_val: int = 100,
             seed: int = 0,
             clip_seed: int = 0,
             size: int = 224,
             noise: float = 0.1,
             r0: float = -0.1,
             r1: float = 0.1,
             profile: str = 'top',
             pixel_noise: float = 25.0,
             sharpness: float = 8.0,
             check: bool = True,
             lean: Optional[List[list]] = None,
             space: Optional[list] = None,
             space_classes: Optional[List[int]] = None,
             scenes: Optional[List[List[int]]] = None) -> dict:
    """Write the world under ``out`` and return its soundness report."""
    os.makedirs(out, exist_ok=True)
    scenes = scenes if scenes is not None else SCENE_OBJECTS
    save_planted_clip(osp.join(out, 'clip.pt'), clip_seed, r0, r1, profile)
    world = dict(
        classes=CLASSES,
        colours=W.default_colours(len(CLASSES)),
        lean=lean if lean is not None else LEAN,
        space=space if space is not None else SPACE,
        space_classes=space_classes if space_classes is not None else SPACE_CLASSES,
        noise=noise,
        pixel_noise=pixel_noise,
        sharpness=sharpness,
        texture_seed=clip_seed + 1,
        profile=dict(kind=profile, r0=r0, r1=r1),
        scenes=scenes,
        clip_file='clip.pt',
        seed=seed,
        size=size)
    atomic_write(
        osp.join(out, 'classes.txt'), lambda f: f.write(('\n'.join(CLASSES) + '\n').encode()))
    atomic_write(
        osp.join(out, 'world.json'), lambda f: f.write(json.dumps(world, indent=1).encode()))
    rng = np.random.default_rng(seed)
    colours = np.asarray(world['colours'])
    val_labels: List[np.ndarray] = []
    val_images: List[np.ndarray] = []
    for split, count in (('train', num_train), ('val', num_val)):
        for i in range(count):
            label = W.draw_scene(rng, size, BACKGROUNDS, scenes[i % len(scenes)], 3)
            img = W.render(rng, label, colours, pixel_noise)
            name = f'{split}_{i:05d}.png'
            _save_png(osp.join(out, 'img_dir', split, name), img)
            if split == 'val':
                _save_png(osp.join(out, 'ann_dir', split, name), label)
                val_labels.append(label)
                val_images.append(img)
    report = soundness(out, val_images, val_labels)
    atomic_write(osp.join(out, 'soundness.json'), lambda f: f.write(json.dumps(report).encode()))
    print('Planted-bias world soundness: ' + json.dumps(report, indent=1))
    if check and not all(report['sound'].values()):
        raise SystemExit(f'The world under {out} is NOT sound: {report["sound"]}. Change '
                         'the world parameters (see docs/learning_check.md).')
    return report


def soundness(out: str, images: List[np.ndarray], labels: List[np.ndarray]) -> dict:
    """The checks of :mod:`.soundness` on the validation images, with the toy tower."""
    from .planted_clip import PlantedBiasCLIP
    tower = PlantedBiasCLIP(osp.join(out, 'world.json'))
    img = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float()
    feats = tower(img)[0]
    gt = patch_labels(torch.from_numpy(np.stack(labels)), len(CLASSES))
    grid = tuple(feats.shape[-2:])
    a, b = tower.world['space'][:2]
    return run_checks(feats, tower.queries, gt, tower.pos_embed_grid(grid), tower.profile(grid),
                      (int(a), int(b)), tower.world['lean'])


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--out', required=True, help='folder to write the world to')
    parser.add_argument('--num-train', type=int, default=400)
    parser.add_argument('--num-val', type=int, default=100)
    parser.add_argument('--seed', type=int, default=0, help='seed of the scenes')
    parser.add_argument('--clip-seed', type=int, default=0, help='seed of the tiny CLIP')
    parser.add_argument('--noise', type=float, default=0.1, help='nuisance scale')
    parser.add_argument('--profile', default='top', choices=['border', 'top'])
    parser.add_argument(
        '--r0',
        type=float,
        default=-0.1,
        help='border: 0 inside this radius; top: 1 above this row coordinate')
    parser.add_argument(
        '--r1',
        type=float,
        default=0.1,
        help='border: 1 outside this radius; top: 0 below this row coordinate')
    parser.add_argument('--lean', default=None, help='class leans "c,d,g[/c,d,g]" (LEAN)')
    parser.add_argument('--space', default=None, help='space bias "a,b,beta" (SPACE)')
    parser.add_argument(
        '--space-classes', default=None, help='"a,b": the classes it acts on (SPACE_CLASSES)')
    parser.add_argument('--scenes', default=None, help='object classes per scene type "3,4/3,5"')
    parser.add_argument('--no-check', action='store_true', help='write an unsound world too')
    return parser.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> None:
    torch.set_num_threads(1)
    args = parse_args(argv)
    generate(
        args.out,
        args.num_train,
        args.num_val,
        args.seed,
        args.clip_seed,
        noise=args.noise,
        r0=args.r0,
        r1=args.r1,
        profile=args.profile,
        check=not args.no_check,
        lean=[[float(v) for v in x.split(',')]
              for x in args.lean.split('/')] if args.lean else None,
        space=[float(v) for v in args.space.split(',')] if args.space else None,
        space_classes=[int(v)
                       for v in args.space_classes.split(',')] if args.space_classes else None,
        scenes=[[int(v) for v in x.split(',')]
                for x in args.scenes.split('/')] if args.scenes else None)


if __name__ == '__main__':
    main()
