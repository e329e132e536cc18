"""Stage 1 rectifies a planted bias: a short, deterministic run of the planted-bias world
(benchmarks/planted_bias, docs/learning_check.md) through mmseg's own tools.

The world is generated (and its soundness checked) into a temporary folder; MaskCLIP is
tested, stage 1 and its bias-off ablation (``bias_mode='none'``) are trained and
evaluated. Stage 1 must beat both by more than the seed-to-seed spread measured in the
long runs of docs/learning_check.md.

Mutants (docs/learning_check.md §CI test): ``PLANTED_BIAS_MUTANT=bias_none`` trains
"stage 1" without subtracting the bias, ``PLANTED_BIAS_MUTANT=pe_zero`` with the PE
projection frozen at zero (tests/planted_bias_mutants.py); both must make this module
fail (the bias-branch test below, and the main claim once it holds).
"""
import json
import os

import pytest
import torch

from benchmarks.planted_bias.generate import generate
from benchmarks.planted_bias.inspect_run import bias_contribution, bias_effect, val_inputs
from benchmarks.planted_bias.summarize import last_metrics
from tests.numeric_utils import assert_close_to_scale
from tests.tool_utils import run_tool

CONFIGS = 'benchmarks/planted_bias/configs/'
MUTANTS = dict(
    bias_none='tests/planted_mutant_bias-none.py', pe_zero='tests/planted_mutant_pe-zero.py')
NUM_TRAIN = 64
NUM_VAL = 100  # the soundness decoders train on 50 labelled images, score the other 50
#: ``PLANTED_BIAS_LONG=1``: 10 000 iterations (~10 CPU minutes for the two trainings, not
#: run in CI), where stage 1 has learned the planted bias on some seeds
#: (docs/learning_check.md); by default the CI schedule, 300 iterations.
LONG = os.environ.get('PLANTED_BIAS_LONG', '') == '1'
ITERS = 10000 if LONG else 300
#: mIoU points stage 1 must win by: above the seed-to-seed spread of stage 1 in the long
#: runs at that schedule (docs/learning_check.md: 35.7 points at 1000 iterations, 18.1 at
#: 10 000 over four seeds), so a pass is not a lucky seed.
MARGIN = 18.2 if LONG else 36.0
#: Share (%) of validation cells whose prediction the trained bias moves (measured in
#: the CI run: 7.8 %). Zero with a broken bias branch (the mutants below).
MIN_BIAS_EFFECT = 1.0


class NotRectified(Exception):
    """Stage 1 did not beat MaskCLIP or the bias-off ablation by ``MARGIN``."""


def _run(script: str, config: str, work_dir, root: str) -> dict:
    args = [script, config if config.startswith('tests/') else CONFIGS + config]
    if script.endswith('test.py'):
        args.append('none')
    args += ['--work-dir', str(work_dir), '--cfg-options'] + _schedule()
    run_tool(args, env=dict(PLANTED_ROOT=root), timeout=3600 if LONG else 600)
    metrics = last_metrics(str(work_dir))
    assert metrics is not None, f'no evaluation in {work_dir}'
    return metrics


def _schedule() -> list:
    return [
        f'train_cfg.max_iters={ITERS}', f'train_cfg.val_interval={ITERS}',
        f'param_scheduler.0.end={ITERS}', f'default_hooks.checkpoint.interval={ITERS}'
    ]


def _stage1_config() -> str:
    """``planted_reclip.py``, or the mutant config ``PLANTED_BIAS_MUTANT`` names."""
    mutant = os.environ.get('PLANTED_BIAS_MUTANT', '')
    if mutant in MUTANTS:
        return MUTANTS[mutant]
    if mutant:
        raise ValueError(f'PLANTED_BIAS_MUTANT must be one of {sorted(MUTANTS)}, got {mutant!r}')
    return 'planted_reclip.py'


@pytest.fixture(scope='module')
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp('planted')
    folder = str(root / 'world')
    return dict(root=root, folder=folder, report=generate(folder, NUM_TRAIN, NUM_VAL))


def test_world_is_sound(world):
    report = world['report']
    assert all(report['sound'].values()), report
    loss = report['stage1_loss_at_masks']
    assert loss['gt'] < loss['maskclip']
    with open(os.path.join(world['folder'], 'soundness.json')) as f:
        assert json.load(f) == json.loads(json.dumps(report))


@pytest.fixture(scope='module')
def runs(world):
    """MaskCLIP (tools/test.py), stage 1 and its bias-off ablation (tools/train.py)."""
    root, folder = world['root'], world['folder']
    return dict(
        maskclip=_run('tools/test.py', 'planted_maskclip.py', root / 'maskclip', folder),
        stage1=_run('tools/train.py', _stage1_config(), root / 'stage1', folder),
        bias_none=_run('tools/train.py', 'planted_reclip_bias-none.py', root / 'none', folder))


@pytest.fixture(scope='module')
def stage1(world, runs):
    """The trained stage-1 run: its config dump, checkpoint, model and the share of
    validation predictions its bias moves (:func:`bias_effect`)."""
    from mmseg.apis import init_model
    work_dir = world['root'] / 'stage1'
    config = str(work_dir / os.path.basename(_stage1_config()))
    checkpoint = str(work_dir / f'iter_{ITERS}.pth')
    model = init_model(config, checkpoint, device='cpu')
    moved = bias_effect(model, val_inputs(world['folder']))
    return dict(config=config, checkpoint=checkpoint, model=model, moved=moved)


def test_stage1_bias_branch_is_trained_and_used(world, stage1):
    """The trained ``B`` moves some predictions (a precondition of rectifying, not the
    claim itself): fails when the bias is not subtracted or ``B`` is frozen at zero."""
    model, moved = stage1['model'], stage1['moved']
    assert moved >= MIN_BIAS_EFFECT, f'the bias moves {moved:.2f} % of the predictions'
    # the bias's contribution to O (the report's effect map) is what removing it removes
    inputs = val_inputs(world['folder'], count=4)
    with torch.no_grad():
        feats = model.backbone(inputs)[0]
        parts = model.decode_head.classifier.intermediates(feats)
        without = model.decode_head.classifier.mask_decoder(feats, parts['Lq'])
        contrib = bias_contribution(model, tuple(feats.shape[-2:]))
    assert_close_to_scale(parts['O'] - without, contrib.expand_as(without), rtol=1e-4)


def test_bias_figure_draws_the_run(world, stage1, capsys):
    """``bias_figure`` (the report's pictures) reads the trained run: both figures are
    written at their size, and the share it prints is :func:`bias_effect`'s."""
    from PIL import Image

    from benchmarks.planted_bias import bias_figure
    out, examples = str(world['root'] / 'map.png'), str(world['root'] / 'examples.png')
    bias_figure.main([
        stage1['config'], stage1['checkpoint'], '--out', out, '--examples', examples, '--world',
        world['folder']
    ])
    printed = capsys.readouterr().out
    assert Image.open(out).size[0] > 0
    assert Image.open(examples).size == (640, 640)  # 4 rows of 4 panels, 8 x 8 in at 80 dpi
    assert f'predictions moved by the bias: {stage1["moved"]:.2f} %' in printed


# Measured (docs/learning_check.md): at the CI schedule stage 1 beats neither MaskCLIP nor
# bias-off by the margin (the bias branch has not learned the planted shape yet); at
# 10 000 iterations it has learned it on some seeds but not robustly (CI world: stage 1
# 66.6, MaskCLIP 66.2). strict: a change that makes stage 1 win turns this into a
# failure, and the mark is then to be removed.
@pytest.mark.xfail(
    strict=True,
    raises=NotRectified,  # a tool failure still fails the test
    reason='docs/learning_check.md: stage 1 does not beat MaskCLIP and bias off by the seed '
    'spread')
def test_stage1_beats_maskclip_and_the_bias_off_ablation(runs):
    s1, mc, none = runs['stage1']['mIoU'], runs['maskclip']['mIoU'], runs['bias_none']['mIoU']
    print(f'planted-bias world, {ITERS} iterations: mIoU stage 1 {s1:.2f}, MaskCLIP {mc:.2f}, '
          f'bias off {none:.2f}')
    if not (s1 > mc + MARGIN and s1 > none + MARGIN):
        raise NotRectified(f'mIoU: stage 1 {s1:.2f}, MaskCLIP {mc:.2f}, bias off {none:.2f}; '
                           f'margin {MARGIN}')
