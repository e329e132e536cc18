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


#: Columns read from the trained model with ``--world`` (inspect_run.inspect).
INSPECT_KEYS = ('acc_space', 'acc_twins', 'acc_lean_2', 'bias_moves')


def _cell(vals: List[float], fmt: str) -> str:
    """``mean (max − min)``; a dash when no run has the value."""
    if not vals:
        return '–'
    cell = fmt.format(sum(vals) / len(vals))
    if len(vals) > 1:
        cell += ' (' + fmt.format(max(vals) - min(vals)).lstrip('+') + ')'
    return cell


def summarize(root: str, rows: Dict[str, List[str]], world: Optional[str] = None) -> str:
    """A markdown table: ``mean (spread)`` of each metric over each row's work dirs;
    with ``world``, also the accuracy on the cells each planted bias acts on and the
    share of predictions the bias moves (:mod:`.inspect_run`; reads validation labels)."""
    head = '| run | seeds | mIoU | car IoU | class pref. ↑ | space slope ↑ |'
    if world:
        head += ' biased cars acc. | twins acc. | water acc. | bias moves (%) |'
    lines = [head, '|' + '---|' * (head.count('|') - 1)]
    for label, dirs in rows.items():
        found = [(d, m) for d, m in ((d, last_metrics(osp.join(root, d))) for d in dirs)
                 if m is not None]
        if not found:
            lines.append(f'| {label} | 0 | not run |' + ' |' * (head.count('|') - 4))
            continue
        cells = [
            _cell([m[key] for _, m in found], '{:.1f}' if key in ('mIoU', 'IoU_car') else '{:+.3f}')
            for key in KEYS
        ]
        if world:
            from .inspect_run import inspect
            seen = [inspect(world, osp.join(root, d)) for d, _ in found]
            cells += [_cell([r[k] for r in seen if k in r], '{:.1f}') for k in INSPECT_KEYS]
        lines.append(f'| {label} | {len(found)} | ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('root')
    parser.add_argument('--rows', nargs='+', required=True, help='"label=dir1,dir2"')
    parser.add_argument(
        '--world', default=None, help='the world folder: add the biased-cell columns (inspect_run)')
    args = parser.parse_args(argv)
    rows = {}
    for spec in args.rows:
        label, dirs = spec.rsplit('=', 1)  # a label may hold '='
        rows[label] = dirs.split(',')
    if args.world:
        import benchmarks.planted_bias  # noqa: F401  (registers the toy tower)
    print(summarize(args.root, rows, args.world))


if __name__ == '__main__':
    main()
