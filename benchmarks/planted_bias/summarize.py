"""Collect the metrics of planted-bias runs into one markdown table (docs/learning_check.md).

    python -m benchmarks.planted_bias.summarize work_dirs/planted \
        --rows "MaskCLIP=maskclip" "stage 1=s1_seed0,s1_seed1" ...

Each row names one or more work dirs (one per seed) under the root; a work dir holds a
``tools/train.py`` run (its final validation) or a ``tools/test.py`` run. The table
gives, per row, the mean over the seeds and the spread (max − min) of mIoU, the car
IoU (the class the planted space bias turns into house), the class-preference score
and the space-preference slope.
"""
import argparse
import glob
import json
import os.path as osp
import re
from typing import Dict, List, Optional

KEYS = ('mIoU', 'IoU_car', 'class_pref', 'space_pref')


def last_metrics(work_dir: str) -> Optional[Dict[str, float]]:
    """The metrics of the last evaluation in ``work_dir`` (newest run folder holding
    one; ``None`` while a run has not evaluated yet)."""
    record: Optional[dict] = None
    for run in sorted(glob.glob(osp.join(work_dir, '2*_*')), reverse=True):
        name = osp.basename(run)
        for path in (osp.join(run, 'vis_data', 'scalars.json'), osp.join(run, name + '.json')):
            if osp.isfile(path):
                for line in open(path):
                    line = line.strip()
                    if line.startswith('{') and '"mIoU"' in line:
                        record = json.loads(line)
        if record is not None:
            break
    if record is None:
        return None
    out = {k: float(record[k]) for k in ('mIoU', 'class_pref', 'space_pref')}
    log = open(osp.join(run, name + '.log')).read()
    rows = re.findall(r'^\|\s*car\s*\|\s*([\d.]+)\s*\|', log, flags=re.M)
    out['IoU_car'] = float(rows[-1]) if rows else float('nan')
    return out


def summarize(root: str, rows: Dict[str, List[str]]) -> str:
    """A markdown table: ``mean (spread)`` of each metric over each row's work dirs."""
    lines = [
        '| run | seeds | mIoU | car IoU | class pref. ↑ | space slope ↑ |',
        '|---|---|---|---|---|---|',
    ]
    for label, dirs in rows.items():
        found = [m for m in (last_metrics(osp.join(root, d)) for d in dirs) if m is not None]
        if not found:
            lines.append(f'| {label} | 0 | not run | | | |')
            continue
        cells = []
        for key in KEYS:
            vals = [m[key] for m in found]
            mean = sum(vals) / len(vals)
            fmt = '{:.1f}' if key in ('mIoU', 'IoU_car') else '{:+.3f}'
            cell = fmt.format(mean)
            if len(vals) > 1:
                cell += ' (' + fmt.format(max(vals) - min(vals)).lstrip('+') + ')'
            cells.append(cell)
        lines.append(f'| {label} | {len(found)} | ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('root')
    parser.add_argument('--rows', nargs='+', required=True, help='"label=dir1,dir2"')
    args = parser.parse_args(argv)
    rows = {}
    for spec in args.rows:
        label, dirs = spec.split('=', 1)
        rows[label] = dirs.split(',')
    print(summarize(args.root, rows))


if __name__ == '__main__':
    main()
