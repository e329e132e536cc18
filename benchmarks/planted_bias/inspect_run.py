"""What a trained planted-bias model did with the planted biases (docs/learning_check.md).

    python -m benchmarks.planted_bias.inspect_run WORLD WORK_DIR [WORK_DIR ...]

For each work dir (a ``tools/train.py`` run: its config dump and last checkpoint, or a
``tools/test.py`` run of a training-free config), prints one JSON line:

- ``acc_space``: pixel accuracy on the pixels the space bias acts on (the planted pair's
  first class where the profile is ≥ 0.5), ``acc_lean_<c>`` on each leaning class,
  ``acc_all`` on every pixel; ``acc_twins``: :func:`twin_accuracy`, on the cue-free
  cells where only absolute position tells the planted twins apart. These read the
  validation labels: evaluation only;
- ``bias_moves``: :func:`bias_effect`; ``bias_map_corr``: the correlation of the learned
  ``B_b − B_a`` with the planted shift (``bias_figure``). Both absent without a bias.
"""
import argparse
import glob
import json
import os.path as osp
from typing import Dict, List, Optional

import numpy as np
import torch


def val_inputs(world_root: str, count: Optional[int] = None) -> torch.Tensor:
    """The world's validation images ``[N, 3, H, W]`` (RGB, 0-255, float)."""
    from PIL import Image
    paths = sorted(glob.glob(osp.join(world_root, 'img_dir', 'val', '*.png')))[:count]
    if not paths:
        raise FileNotFoundError(f'No validation image under {world_root}/img_dir/val: '
                                'generate the world first (python -m '
                                'benchmarks.planted_bias.generate --out <folder>).')
    arrays = [np.asarray(Image.open(p).convert('RGB')) for p in paths]
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float()


def val_labels(world_root: str, count: Optional[int] = None) -> torch.Tensor:
    """The world's validation labels ``[N, H, W]`` (int64), in :func:`val_inputs` order."""
    from PIL import Image
    paths = sorted(glob.glob(osp.join(world_root, 'ann_dir', 'val', '*.png')))[:count]
    return torch.from_numpy(np.stack([np.asarray(Image.open(p)) for p in paths]).astype(np.int64))


@torch.no_grad()
def bias_effect(model, inputs: torch.Tensor) -> float:
    """Share (%) of the grid cells whose prediction ``argmax O`` changes when the model's
    own rectification is undone (its decoder fed ``Lq`` instead of ``Lr``). Zero when
    ``B = 0`` or when the bias is not subtracted (``bias_mode='none'``): a live bias
    branch moves some predictions."""
    feats = model.backbone(inputs)[0]
    parts = model.decode_head.classifier.intermediates(feats)
    without = model.decode_head.classifier.mask_decoder(feats, parts['Lq'])
    return float((parts['O'].argmax(1) != without.argmax(1)).float().mean() * 100)


def _profile_cells(world: dict) -> torch.Tensor:
    """The world's planted profile on the 14 × 14 patch grid (``world.json``)."""
    from . import world as W
    prof = world['profile']
    return W.profile_grid((14, 14), prof.get('kind', 'border'), prof['r0'], prof['r1'])


def _cells_to_pixels(cells: torch.Tensor, size: int) -> torch.Tensor:
    """``[h, w]`` → ``[size, size]``, nearest: each patch carries its cell's value."""
    return torch.nn.functional.interpolate(cells[None, None], size=(size, size))[0, 0]


def world_profile(world: dict, size: int) -> torch.Tensor:
    """The planted profile ``ρ`` at pixel level ``[size, size]``."""
    return _cells_to_pixels(_profile_cells(world), size)


def cue_free_pixels(world: dict, size: int) -> torch.Tensor:
    """``[size, size]`` bool: the pixels of the cells where a 5 × 5 decoder sees neither
    padding nor a change of the profile (``soundness.cue_free_cells``)."""
    from .soundness import cue_free_cells
    return _cells_to_pixels(cue_free_cells(_profile_cells(world)).float(), size) > 0.5


def twin_accuracy(preds: torch.Tensor, gt: torch.Tensor, profile: torch.Tensor, free: torch.Tensor,
                  pair: tuple) -> float:
    """Mean of the pixel accuracies (%) on the two planted twins in the cue-free pixels
    ``free`` ``[H, W]``: class ``pair[0]`` where the profile is ≥ 0.5 and class
    ``pair[1]`` where it is < 0.5. The space bias gives the two the same features, and
    a cue-free view holds nothing else that tells them apart, so a decoder blind to
    absolute position trades one for the other (about 50; a little more through the
    upsampling from neighbouring cells); well above that, the model uses position.
    ``preds``, ``gt``: ``[N, H, W]``; ``profile``: ``[H, W]``. NaN when one twin has no
    pixel."""
    right = preds == gt
    upper = (gt == pair[0]) & (profile[None] >= 0.5) & free[None]
    lower = (gt == pair[1]) & (profile[None] < 0.5) & free[None]
    return float((right[upper].float().mean() + right[lower].float().mean()) * 50)


@torch.no_grad()
def biased_cell_accuracy(model, world_root: str) -> Dict[str, float]:
    """Pixel accuracy (%) of the model's prediction (mmseg's ``inference_model``, any
    segmentor: training-free, stage 1 or a distilled student) on the pixels each planted
    bias acts on (``soundness.biased_cells``), on all pixels, and on the planted twins
    (:func:`twin_accuracy`)."""
    from mmseg.apis import inference_model

    from .soundness import biased_cells
    with open(osp.join(world_root, 'world.json')) as f:
        world = json.load(f)
    paths = sorted(glob.glob(osp.join(world_root, 'img_dir', 'val', '*.png')))
    preds = torch.stack([inference_model(model, p).pred_sem_seg.data[0].cpu() for p in paths])
    gt = val_labels(world_root)
    profile = world_profile(world, gt.shape[-1])
    pair = tuple(int(i) for i in world['space'][:2])
    out = dict(acc_all=float((preds == gt).float().mean() * 100))
    for key, sel in biased_cells(gt, profile, pair, world['lean']).items():
        out['acc_' + key] = float((preds == gt)[sel].float().mean() * 100)
    free = cue_free_pixels(world, gt.shape[-1])
    out['acc_twins'] = twin_accuracy(preds, gt, profile, free, pair)
    return out


@torch.no_grad()
def bias_contribution(model, size: tuple, feats: Optional[torch.Tensor] = None) -> torch.Tensor:
    """The learned bias's own contribution to the decoder output ``O`` ``[C, h, w]``: the
    decoder's ``Lr`` weights applied to ``−B`` (zero padding, as the decoder), scaled by
    its BN (eval statistics). ``B`` need not differ between classes to matter: the
    decoder weighs each class's ``B`` channel differently for each output class. An
    extractor whose ``B`` depends on the image (the conference ``CoupledBiasExtractor``)
    needs ``feats`` ``[N, D, h, w]``; the map is then the mean over the images."""
    clf = model.decode_head.classifier
    dec = clf.mask_decoder
    bias = clf.bias_extractor(tuple(size), feats=feats).float()
    bias = bias if bias.dim() == 4 else bias[None]
    dim = dec.conv.in_channels - bias.shape[1]
    out = torch.nn.functional.conv2d(-bias, dec.conv.weight[:, dim:], padding=dec.conv.padding)
    scale = dec.norm.weight / torch.sqrt(dec.norm.running_var + dec.norm.eps)
    return (out * scale[None, :, None, None]).mean(0)


@torch.no_grad()
def bias_offset(model, inputs: torch.Tensor, labels: torch.Tensor) -> Dict[str, float]:
    """What the learned bias does to the planted pair ``(a, b)`` (car, house), in units of
    the decoder output ``O`` (after BN, eval statistics):

    - ``bias_step``: the bias's own contribution to ``O_a − O_b`` (the decoder's ``Lr``
      weights applied to ``−B``), mean over the upper interior cells (``ρ = 1``) minus the
      lower ones (``ρ = 0``). Rectifying the planted shift needs it *positive* (car
      favoured back where house is favoured);
    - ``biased_car_margin``: ``O_b − O_a`` on the validation cells of class ``a`` with
      ``ρ ≥ 0.5``, bias included: positive while they are still called ``b``.

    ``inputs`` and ``labels``: the validation images and labels (:func:`val_inputs`,
    :func:`val_labels`).
    """
    from .soundness import patch_labels
    tower, clf = model.backbone, model.decode_head.classifier
    feats = tower(inputs)[0]
    parts = clf.intermediates(feats)
    a, b = (int(i) for i in tower.world['space'][:2])
    contrib = bias_contribution(model, tuple(feats.shape[-2:]), feats)
    offset = contrib[a] - contrib[b]
    h, w = offset.shape
    prof = tower.profile((h, w))
    interior = torch.zeros(h, w, dtype=torch.bool)
    interior[2:h - 2, 2:w - 2] = True
    step = offset[interior & (prof >= 0.99)].mean() - offset[interior & (prof <= 0.01)].mean()
    gt = patch_labels(labels, len(tower.world['classes']))
    cells = (gt == a) & (prof[None] >= 0.5)
    margin = (parts['O'][:, b] - parts['O'][:, a])[cells].mean()
    return dict(bias_step=float(step), biased_car_margin=float(margin))


def inspect(world_root: str, work_dir: str) -> Dict[str, float]:
    """:func:`biased_cell_accuracy`, :func:`bias_effect` and the bias-map correlation of
    the run in ``work_dir`` (its config dump and its last checkpoint, if any)."""
    from mmseg.apis import init_model

    from .bias_figure import bias_maps, correlation
    configs = [p for p in glob.glob(osp.join(work_dir, '*.py'))]
    if len(configs) != 1:
        raise FileNotFoundError(f'Expected one config dump in {work_dir}, found {configs}.')
    ckpts = sorted(
        glob.glob(osp.join(work_dir, 'iter_*.pth')), key=lambda p: int(osp.basename(p)[5:-4]))
    model = init_model(configs[0], ckpts[-1] if ckpts else None, device='cpu')
    if not ckpts and hasattr(model.decode_head, 'classifier'):
        raise FileNotFoundError(f'No checkpoint (iter_*.pth) in {work_dir}: the run has not '
                                'finished, or its checkpoints were removed.')
    out = biased_cell_accuracy(model, world_root)
    # the bias's own effect needs the toy tower's features (not a distilled student's)
    if hasattr(model.decode_head, 'classifier') and hasattr(model.backbone, 'world'):
        inputs = val_inputs(world_root)
        out['bias_moves'] = bias_effect(model, inputs)
        if type(model.decode_head.classifier.mask_decoder).__name__ == 'RectifiedMaskDecoder':
            out.update(bias_offset(model, inputs, val_labels(world_root)))
        if type(model.decode_head.classifier.bias_extractor).__name__ == 'ReferenceBiasExtractor':
            maps = bias_maps(model)
            out['bias_map_corr'] = correlation(maps['learned'], maps['planted'])
    return out


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('world', help='the world folder (PLANTED_ROOT)')
    parser.add_argument('work_dirs', nargs='+')
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    import benchmarks.planted_bias  # noqa: F401  (registers the toy tower)
    for work_dir in args.work_dirs:
        row = {k: round(v, 2) for k, v in inspect(args.world, work_dir).items()}
        print(json.dumps(dict(run=osp.basename(osp.normpath(work_dir)), **row)), flush=True)


if __name__ == '__main__':
    main()
