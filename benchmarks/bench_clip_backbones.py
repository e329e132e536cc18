#!/usr/bin/env python
"""Cost of each CLIP model and dense-feature recipe (``dense_mode``) of CLIPViTBackbone.

For each ``--models`` entry (random weights: only the architecture matters here) builds
the backbone once and times its frozen dense forward at ``--size`` for every
``--dense-modes`` entry; reports the parameters and fp32 weight memory of the image
tower (what the backbone keeps) and, on a GPU, the peak memory of a forward.

    python benchmarks/bench_clip_backbones.py --models ViT-B-16 ViT-L-14 --size 448
"""
import argparse
import json
import os.path as osp
import statistics
import sys
import time

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

import torch  # noqa: E402

import mmseg_reclip  # noqa: E402,F401  # isort: skip
from mmseg_reclip.models.backbones.clip_vit import DENSE_MODES, CLIPViTBackbone  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--models', nargs='+', default=['ViT-B-32', 'ViT-B-16', 'ViT-L-14'])
    parser.add_argument('--dense-modes', nargs='+', default=sorted(DENSE_MODES))
    parser.add_argument('--size', type=int, default=448, help='square input side (pixels)')
    parser.add_argument('--repeats', type=int, default=3)
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--json')
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    rows = []
    for name in args.models:
        backbone = CLIPViTBackbone(name, pretrained=None).to(device)
        tensors = list(backbone.visual.parameters()) + list(backbone.visual.buffers())
        params = sum(t.numel() for t in tensors) / 1e6
        weights_mib = sum(t.numel() * t.element_size() for t in tensors) / 2**20
        img = torch.randn(1, 3, args.size, args.size, device=device)
        times = {mode: [] for mode in args.dense_modes}
        peaks = {}
        # Recipes interleaved round by round: load changes on a shared machine hit all.
        for round_ in range(args.repeats + 1):  # round 0 warms up
            for mode in args.dense_modes:
                backbone.dense_mode = mode
                if device.type == 'cuda':
                    torch.cuda.synchronize()
                    torch.cuda.reset_peak_memory_stats()
                start = time.perf_counter()
                backbone(img)
                if device.type == 'cuda':
                    torch.cuda.synchronize()
                    peaks[mode] = torch.cuda.max_memory_allocated() / 2**20
                if round_:
                    times[mode].append(time.perf_counter() - start)
        for mode in args.dense_modes:
            row = dict(
                model=name,
                dense_mode=mode,
                size=args.size,
                patch=backbone.dims.patch_size[0],
                image_params_m=round(params, 1),
                weights_mib=round(weights_mib),
                forward_ms_median=round(1000 * statistics.median(times[mode]), 1),
                gpu_peak_mib=peaks.get(mode))
            rows.append(row)
            print(json.dumps(row), flush=True)
        del backbone
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(rows, f, indent=1)
    return 0


if __name__ == '__main__':
    sys.exit(main())
