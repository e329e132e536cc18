"""Helpers of the distributed tests: small configs, launch scripts, state comparison."""
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence

import torch

from tests.tool_utils import REPO_ROOT

BASE_CONFIG = REPO_ROOT / 'configs' / 'reclip' / 'reclip_vit-b16_voc.py'
TINY = 'ViT-Tiny-16-test'
_TAIL = 6000

# Per-rank randomness (Gumbel noise, random resize/crop/flip/photometric) and batch
# statistics (BN; SyncBN in the real config, BN on CPU): the real ReCLIP training.
STOCHASTIC_PIPELINE = """[
    dict(type='LoadImageFromFile'),
    dict(type='RandomResize', scale=(128, 64), ratio_range=(0.5, 2.0), keep_ratio=True),
    dict(type='RandomCrop', crop_size=(64, 64), cat_max_ratio=1.0),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PhotoMetricDistortion'),
    dict(type='PackSegInputs')
]"""
# No randomness at all, and a per-sample norm: N ranks x B images == 1 rank x N*B.
DETERMINISTIC_PIPELINE = """[
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(64, 64), keep_ratio=False),
    dict(type='PackSegInputs')
]"""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def write_config(path: Path,
                 clip: str,
                 data_root: str,
                 kind: str = 'stochastic',
                 batch_size: int = 2,
                 max_iters: int = 4,
                 checkpoint_interval: int = 2,
                 extra_hooks: Sequence[str] = (),
                 extra: str = '') -> str:
    """A small ReCLIP config that ``_base_``s the real VOC config.

    ``kind='stochastic'``: the real head (Gumbel noise), SyncBN (BN on CPU) and random
    augmentation; ``'deterministic'``: noise-free masks, GroupNorm, fixed resize.
    """
    assert kind in ('stochastic', 'deterministic')
    det = kind == 'deterministic'
    head_extra = ("type='NoiseFreeReCLIPHead', norm_cfg=dict(type='GN', num_groups=4, "
                  "requires_grad=True),") if det else ''
    pipeline = DETERMINISTIC_PIPELINE if det else STOCHASTIC_PIPELINE
    hooks = [
        "dict(type='CropVoteHypothesisHook', window=32, stride=None, "
        "min_frequency=0.0)", "dict(type='DumpParamsHook')"
    ] + list(extra_hooks)
    text = f"""_base_ = [{str(BASE_CONFIG)!r}]
custom_imports = dict(imports=['mmseg_reclip', 'tests.test_dist.dist_helpers'],
                      allow_failed_imports=False)
clip = {clip!r}
data_root = {data_root!r}
model = dict(
    backbone=dict(model_name={TINY!r}, pretrained=clip),
    decode_head=dict({head_extra}
        in_channels=64, templates='single', bias_extractor=dict(num_context=4),
        text_encoder=dict(model_name={TINY!r}, pretrained=clip)))
train_pipeline = {pipeline}
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(128, 64), keep_ratio=True),
    dict(type='LoadAnnotations'),
    dict(type='PackSegInputs')
]
# the train dataset is wrapped by StepSeededDataset in the dataset base config
train_dataloader = dict(batch_size={batch_size}, num_workers=0, persistent_workers=False,
                        dataset=dict(dataset=dict(data_root=data_root,
                                                  pipeline=train_pipeline)))
test_dataloader = dict(num_workers=0, persistent_workers=False,
                       dataset=dict(data_root=data_root, pipeline=test_pipeline))
val_dataloader = None
val_cfg = None
val_evaluator = None
max_iters = {max_iters}
train_cfg = dict(max_iters=max_iters, val_interval=max_iters)
param_scheduler = [dict(type='PolyLR', eta_min=0.0, power=0.9, begin=0, end=max_iters,
                        by_epoch=False)]
default_hooks = dict(logger=dict(interval=1),
                     checkpoint=dict(interval={checkpoint_interval}, max_keep_ckpts=10))
custom_hooks = [{', '.join(hooks)}]
{extra}
"""
    path.write_text(text)
    return str(path)


def launch_env(extra: Optional[Mapping[str, str]] = None) -> Dict[str, str]:
    env = dict(os.environ)
    env.setdefault('OMP_NUM_THREADS', '1')
    env.setdefault('MKL_NUM_THREADS', '1')
    env['PYTHONUNBUFFERED'] = '1'
    env['PYTHON'] = sys.executable  # the launch scripts' interpreter
    pythonpath = env.get('PYTHONPATH')
    env['PYTHONPATH'] = str(REPO_ROOT) + (os.pathsep + pythonpath if pythonpath else '')
    if extra:
        env.update({k: str(v) for k, v in extra.items()})
    return env


def _tail(text: str) -> str:
    return text if len(text) <= _TAIL else '...' + text[-_TAIL:]


def run_script(args: Sequence[str],
               env: Optional[Mapping[str, str]] = None,
               timeout: float = 600,
               check: bool = True) -> subprocess.CompletedProcess:
    """``bash tools/<script>.sh args...`` from the repository root, in its own process
    group (a timeout kills the launcher and every rank)."""
    cmd = ['bash'] + [os.fspath(a) for a in args]
    proc = subprocess.Popen(
        cmd,
        cwd=REPO_ROOT,
        env=launch_env(env),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        print(out)
        raise AssertionError(f'{" ".join(cmd)} timed out after {timeout} s\n{_tail(out)}')
    result = subprocess.CompletedProcess(cmd, proc.returncode, out, '')
    if check and proc.returncode != 0:
        print(out)
        raise AssertionError(f'{" ".join(cmd)} exited with {proc.returncode}\n{_tail(out)}')
    return result


def dist_train(config: str,
               nproc: int,
               work_dir: Path,
               *extra: str,
               check: bool = True,
               env: Optional[Mapping[str, str]] = None) -> subprocess.CompletedProcess:
    env = dict(env or {})
    env.setdefault('PORT', str(free_port()))
    return run_script(
        ['tools/dist_train.sh', config,
         str(nproc), '--work-dir',
         str(work_dir), *extra],
        env=env,
        check=check)


def load_states(work_dir: Path, world_size: int, prefix: str = 'final') -> List[dict]:
    states = []
    for rank in range(world_size):
        path = Path(work_dir) / f'{prefix}_state_rank{rank}.pth'
        assert path.exists(), f'rank {rank} wrote no state ({path})'
        states.append(torch.load(path, map_location='cpu', weights_only=True))
    return states


def max_param_diff(a: Dict[str, torch.Tensor], b: Dict[str, torch.Tensor]) -> Dict[str, float]:
    assert a.keys() == b.keys(), sorted(set(a) ^ set(b))
    return {k: float((a[k].double() - b[k].double()).abs().max()) for k in a}


def assert_ranks_identical(states: List[dict]) -> None:
    """Every rank ends with bit-identical trainable parameters."""
    assert len(states) >= 2
    for rank, state in enumerate(states[1:], start=1):
        diffs = {
            k: d
            for k, d in max_param_diff(states[0]['params'], state['params']).items() if d != 0.0
        }
        assert not diffs, (f'rank {rank} parameters differ from rank 0 (max |diff| per '
                           f'tensor): {diffs}')


def assert_params_close(a: dict, b: dict, atol: float) -> float:
    diffs = max_param_diff(a['params'], b['params'])
    worst = max(diffs.values())
    assert worst <= atol, f'max |diff| {worst:.3g} > {atol:g}: {diffs}'
    return worst


def assert_states_equal(a: dict, b: dict, skip_buffers: Sequence[str] = ()) -> None:
    """Parameters and buffers bit-identical (buffers whose name ends with one of
    ``skip_buffers`` excepted)."""
    for part in ('params', 'buffers'):
        assert a[part].keys() == b[part].keys()
        bad = [
            k for k in a[part] if not torch.equal(a[part][k], b[part][k])
            and not (part == 'buffers' and k.endswith(tuple(skip_buffers)))
        ]
        assert not bad, f'{part} differ: {bad}'


def hypothesis_cache(work_dir: Path) -> dict:
    files = sorted(Path(work_dir).glob('reclip_hypotheses_*.pth'))
    assert len(files) == 1, f'expected one crop-vote cache in {work_dir}, found {files}'
    return torch.load(files[0], map_location='cpu', weights_only=True)
