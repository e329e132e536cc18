#!/usr/bin/env python
"""Cost of each CLIP model and dense-feature recipe (``dense_mode``) of CLIPViTBackbone.

For each ``--models`` entry (random weights: only the architecture matters here) builds
the backbone once and times its frozen dense forward at ``--size`` for every
``--dense-modes`` entry, side by side; reports parameters of the image tower, the
resident memory added by building the model (CPU) or the peak GPU memory of a forward.

    python benchmarks/bench_clip_backbones.py --models ViT-B-16 ViT-L-14 --size 448
"""
import argparse
import json
import os.path as osp
import resource
import sys
import time

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

import torch  # noqa: E402

import mmseg_reclip  # noqa: E402,F401  # isort: skip
from mmseg_reclip.models.backbones.clip_vit import DENSE_MODES, CLIPViTBackbone  # noqa: E402


def rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


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
        before = rss_mib()
        backbone = CLIPViTBackbone(name, pretrained=None).to(device)
        built = rss_mib() - before
        params = sum(p.numel() for p in backbone.visual.parameters()) / 1e6
        img = torch.randn(1, 3, args.size, args.size, device=device)
        for mode in args.dense_modes:
            backbone.dense_mode = mode
            backbone(img)  # warm-up
            if device.type == 'cuda':
                torch.cuda.synchronize()
                torch.cuda.reset_peak_memory_stats()
            times = []
            for _ in range(args.repeats):
                start = time.perf_counter()
                backbone(img)
                if device.type == 'cuda':
                    torch.cuda.synchronize()
                times.append(time.perf_counter() - start)
            peak = (torch.cuda.max_memory_allocated() / 2**20 if device.type == 'cuda' else None)
            row = dict(
                model=name,
                dense_mode=mode,
                size=args.size,
                patch=backbone.dims.patch_size[0],
                image_params_m=round(params, 1),
                build_rss_mib=round(built),
                forward_ms_median=round(1000 * sorted(times)[len(times) // 2], 1),
                gpu_peak_mib=peak)
            rows.append(row)
            print(json.dumps(row), flush=True)
        del backbone
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(rows, f, indent=1)
    return 0


if __name__ == '__main__':
    sys.exit(main())
