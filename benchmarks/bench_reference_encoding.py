#!/usr/bin/env python
"""Benchmark the Reference-prompt text encoding: shared-prefix vs naive C prompts.

Times one training step's text side (forward + backward into the context vectors) for
``C`` classes with ``M`` shared context vectors on the real ViT-B-16 text tower (random
weights unless ``--pretrained`` is given), and checks both agree.

    python benchmarks/bench_reference_encoding.py --classes 150 --context 73
"""
import argparse
import json
import os.path as osp
import sys
import time

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

import torch  # noqa: E402

import mmseg_reclip  # noqa: E402,F401  # isort: skip
from mmseg_reclip.models.text_encoders import OpenCLIPTextEncoder  # noqa: E402


def timed(fn, repeats: int, device: torch.device) -> float:
    fn()  # warm-up
    if device.type == 'cuda':
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    if device.type == 'cuda':
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / repeats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--model', default='ViT-B-16')
    parser.add_argument('--pretrained', default=None)
    parser.add_argument('--classes', type=int, default=150)
    parser.add_argument('--context', type=int, default=73)
    parser.add_argument('--repeats', type=int, default=3)
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--json', help='also write the results to this file')
    args = parser.parse_args()

    device = torch.device(args.device)
    enc = OpenCLIPTextEncoder(args.model, args.pretrained).to(device)
    names = [f'class number {i}' for i in range(args.classes)]
    tokens, eot = enc.name_tokens(names, args.context, 'eot')
    ctx = torch.nn.Parameter(torch.randn(args.context, enc.width, device=device) * 0.02)

    def step(fn):

        def run():
            ctx.grad = None
            fn(ctx, tokens, eot).sum().backward()

        return run

    with torch.no_grad():
        diff = (enc.encode_context_prompts(ctx, tokens, eot) -
                enc.encode_context_prompts_naive(ctx, tokens, eot)).abs().max().item()
    naive = timed(step(enc.encode_context_prompts_naive), args.repeats, device)
    shared = timed(step(enc.encode_context_prompts), args.repeats, device)
    result = dict(
        model=args.model,
        device=str(device),
        classes=args.classes,
        context=args.context,
        naive_s=round(naive, 4),
        shared_prefix_s=round(shared, 4),
        speedup=round(naive / shared, 2),
        max_abs_diff=diff)
    print(json.dumps(result, indent=2))
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(result, f, indent=2)


if __name__ == '__main__':
    main()
