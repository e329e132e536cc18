"""Drop-in use without a GPU: install ranges, import order, one CLIP switch, offline
error, quiet optimizer construction."""
import glob
import json
import logging
import os
import os.path as osp
import shutil
import site
import subprocess
import sys
from typing import Tuple

import open_clip
import pytest
from mmengine.config import Config
from packaging.requirements import Requirement

from tests.clip_utils import TINY, save_random_clip
from tests.tool_utils import REPO_ROOT

CONFIGS = sorted(
    glob.glob(str(REPO_ROOT / 'configs' / 'maskclip' / '*.py')) +
    glob.glob(str(REPO_ROOT / 'configs' / 'reclip' / '*.py')))


def _source_copy(tmp_path):
    src = tmp_path / 'src'
    shutil.copytree(
        REPO_ROOT / 'mmseg_reclip',
        src / 'mmseg_reclip',
        ignore=shutil.ignore_patterns('__pycache__'))
    for name in ('setup.py', '_mmseg_reclip_hook.py', 'mmseg_reclip_hook.pth'):
        shutil.copy(REPO_ROOT / name, src / name)
    return src


def _pip(*args):
    subprocess.run([sys.executable, '-m', 'pip', *args],
                   check=True,
                   timeout=300,
                   env={
                       **os.environ, 'PIP_DISABLE_PIP_VERSION_CHECK': '1'
                   })


def test_install_keeps_the_users_stack(tmp_path):
    """`pip install .` resolves against the installed env without replacing anything,
    and its requirements are ranges admitting other torch / mmengine versions."""
    src = _source_copy(tmp_path)
    report = tmp_path / 'report.json'
    _pip('install', '--dry-run', '--no-index', '--no-build-isolation', '--quiet', '--report',
         str(report), str(src))
    installs = json.loads(report.read_text())['install']
    # only this package: torch, mmcv, mmengine, mmseg... of the env are kept
    assert [i['metadata']['name'] for i in installs] == ['mmseg-reclip']
    reqs = [Requirement(r) for r in installs[0]['metadata']['requires_dist'] if 'extra ==' not in r]
    by_name = {r.name: r.specifier for r in reqs}
    assert not [r for r in reqs if '==' in str(r.specifier)]
    for name, other in (('torch', '2.1.2'), ('torch', '2.5.1'), ('mmengine', '0.10.3'),
                        ('mmsegmentation', '1.2.0'), ('open-clip-torch', '2.24.0')):
        spec = by_name.get(name) or by_name.get(name.replace('-', '_'))
        assert spec is not None and spec.contains(other), (name, spec)


def _pip_show(name: str) -> dict:
    """``pip show NAME`` of the running environment as a dict (empty: not installed)."""
    proc = subprocess.run([sys.executable, '-m', 'pip', 'show', name],
                          capture_output=True,
                          text=True,
                          timeout=120,
                          env={
                              **os.environ, 'PIP_DISABLE_PIP_VERSION_CHECK': '1'
                          })
    return dict(line.split(': ', 1) for line in proc.stdout.splitlines() if ': ' in line)


def _throwaway_venv(tmp_path) -> Tuple[str, str]:
    """A new venv (no pip of its own) that sees the running environment's packages
    (torch, mmcv, mmseg...) read-only, through a path line in a ``.pth`` file: the
    ``.pth`` files of that environment (its editable installs, its start-up hook) are
    not run there. Returns its python and its site-packages."""
    venv = tmp_path / 'venv'
    subprocess.run([sys.executable, '-m', 'venv', '--without-pip',
                    str(venv)],
                   check=True,
                   timeout=120)
    python = str(venv / 'bin' / 'python')
    site_dir = subprocess.run(
        [python, '-c', 'import sysconfig; print(sysconfig.get_path("purelib"))'],
        check=True,
        capture_output=True,
        text=True).stdout.strip()
    with open(osp.join(site_dir, '_running_env.pth'), 'w') as f:
        f.write('\n'.join(site.getsitepackages()) + '\n')
    return python, site_dir


def test_import_order_does_not_matter_after_install(tmp_path):
    """`pip install -e .` installs the start-up hook; with it, `from mmseg.apis import
    init_model` as a script's first line works on mmcv-lite (without it, it fails:
    mmcv._ext is missing).

    The install goes into a throwaway venv (pip runs with its interpreter and
    ``--ignore-installed``, so it neither sees nor uninstalls the running environment's
    mmseg-reclip); the running environment's install is checked unchanged after."""
    before = _pip_show('mmseg-reclip')
    src = _source_copy(tmp_path)
    python, site_dir = _throwaway_venv(tmp_path)
    script = tmp_path / 'first.py'
    script.write_text('from mmseg.apis import init_model\nimport mmcv.ops\n'
                      'print("SHIM", getattr(mmcv.ops, "__reclip_shim__", False))\n')
    env = {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}
    env['PYTHONNOUSERSITE'] = '1'

    def run_script():
        return subprocess.run([python, str(script)],
                              env=env,
                              capture_output=True,
                              text=True,
                              timeout=300,
                              cwd=tmp_path)

    compiled = subprocess.run([python, '-c', 'import mmcv._ext'], env=env,
                              capture_output=True).returncode == 0
    if not compiled:  # before the install: mmseg's first import fails on mmcv-lite
        without = run_script()
        assert without.returncode != 0 and 'mmcv._ext' in without.stderr, without.stderr[-3000:]
    _pip('--python', python, 'install', '--quiet', '--no-deps', '--no-build-isolation',
         '--ignore-installed', '-e', str(src))
    assert osp.isfile(osp.join(site_dir, 'mmseg_reclip_hook.pth'))
    with_hook = run_script()
    assert with_hook.returncode == 0, with_hook.stderr[-3000:]
    assert f'SHIM {not compiled}' in with_hook.stdout
    # the environment running the tests is as it was (issue 18: it lost the package)
    after = _pip_show('mmseg-reclip')
    assert {
        k: after.get(k)
        for k in ('Version', 'Location', 'Editable project location')
    } == {
        k: before.get(k)
        for k in ('Version', 'Location', 'Editable project location')
    }


@pytest.mark.parametrize('path', CONFIGS, ids=lambda p: osp.basename(p))
def test_one_clip_key_in_every_config(path):
    """`model.clip.pretrained` reaches every CLIP part: no per-part key overrides it."""
    cfg = Config.fromfile(path)
    cfg.merge_from_dict({'model.clip.pretrained': '/data/vitb16.bin'})
    model = cfg.model
    assert model.clip.pretrained == '/data/vitb16.bin'
    stage1 = model.get('teacher', model)
    for part in (stage1.backbone, stage1.decode_head.text_encoder):
        assert 'pretrained' not in part and 'model_name' not in part


def _count_create_model(monkeypatch):
    calls = []
    real = open_clip.create_model

    def counting(*args, **kwargs):
        calls.append(args[0])
        return real(*args, **kwargs)

    monkeypatch.setattr(open_clip, 'create_model', counting)
    return calls


@pytest.mark.parametrize('config', [
    'configs/maskclip/maskclip_vit-b16_voc.py', 'configs/reclip/reclip_vit-b16_voc.py',
    'configs/reclip/reclip_vit-b16_released_voc.py'
])
def test_clip_switch_builds_one_shared_clip(config, tmp_path, monkeypatch, mmseg_default_scope):
    from mmseg.registry import MODELS
    clip = save_random_clip(str(tmp_path / 'tiny.pt'))
    cfg = Config.fromfile(REPO_ROOT / config)
    cfg.merge_from_dict({
        'model.clip.model_name': TINY,
        'model.clip.pretrained': clip,
        'model.decode_head.in_channels': 64,
        'model.decode_head.templates': 'single'
    })
    if 'norm_cfg' in cfg.model.decode_head:
        cfg.model.decode_head.norm_cfg = dict(type='BN', requires_grad=True)
    calls = _count_create_model(monkeypatch)
    model = MODELS.build(cfg.model)
    assert calls == [TINY]  # one CLIP for the backbone and the text encoder
    assert model.decode_head.text_encoder.model_name == TINY
    assert model.backbone.width == 64
    # The released eps quirk stays on the image tower of the shared CLIP (docs/method.md §1).
    image_eps = 1e-6 if 'released' in config else 1e-5
    visual_eps = {
        m.eps
        for n, m in model.backbone.visual.named_modules() if n.endswith(('ln_1', 'ln_2'))
    }
    text_eps = {
        m.eps
        for n, m in model.decode_head.text_encoder.tower.named_modules()
        if n.endswith(('ln_1', 'ln_2'))
    }
    assert visual_eps == {image_eps} and text_eps == {1e-5}


def test_distiller_teacher_reads_the_clip_switch(mmseg_default_scope):
    from mmseg.registry import MODELS
    cfg = Config.fromfile(REPO_ROOT / 'configs/reclip/reclip-distill_deeplabv2-r101_voc.py')
    cfg.merge_from_dict({
        'model.clip.pretrained': '/data/vitb16.bin',
        'model.backbone.depth': 18,
        'model.backbone.init_cfg': None,
        'model.backbone.norm_cfg.type': 'BN',
        'model.decode_head.in_channels': 512
    })
    model = MODELS.build(cfg.model)
    assert model.distill_teacher.cfg['clip']['pretrained'] == '/data/vitb16.bin'
    assert model.distill_teacher.cfg['clip']['model_name'] == 'ViT-B-16'


def test_offline_download_error_says_what_to_do(tmp_path):
    code = ('from mmseg_reclip.models.utils import create_clip\n'
            'create_clip("ViT-B-16", "openai")\n')
    env = {
        **os.environ, 'PYTHONPATH': str(REPO_ROOT),
        'HF_HUB_OFFLINE': '1',
        'HF_HOME': str(tmp_path / 'hf'),
        'XDG_CACHE_HOME': str(tmp_path / 'cache')
    }
    proc = subprocess.run([sys.executable, '-c', code],
                          env=env,
                          capture_output=True,
                          text=True,
                          timeout=300)
    assert proc.returncode != 0
    last = proc.stderr.strip().splitlines()[-1]
    assert "open_clip tag 'openai'" in last and "'ViT-B-16'" in last
    assert '--cfg-options model.clip.pretrained=' in last


def test_frozen_clip_never_reaches_paramwise_rules(tmp_path, mmseg_default_scope):
    from mmengine.logging import MMLogger
    from mmseg.registry import MODELS, OPTIM_WRAPPER_CONSTRUCTORS
    clip = save_random_clip(str(tmp_path / 'tiny.pt'))
    cfg = Config.fromfile(REPO_ROOT / 'configs/reclip/reclip_vit-b16_voc.py')
    cfg.merge_from_dict({
        'model.clip.model_name': TINY,
        'model.clip.pretrained': clip,
        'model.decode_head.in_channels': 64,
        'model.decode_head.templates': 'single',
        'model.decode_head.norm_cfg.type': 'BN'
    })
    model = MODELS.build(cfg.model)
    records = []

    class Grab(logging.Handler):

        def emit(self, record):
            records.append(record.getMessage())

    logger = MMLogger.get_current_instance()
    handler = Grab()
    logger.addHandler(handler)
    try:
        optim_cfg = dict(cfg.optim_wrapper)
        constructor = OPTIM_WRAPPER_CONSTRUCTORS.build(
            dict(
                type=optim_cfg.pop('constructor'),
                optim_wrapper_cfg=optim_cfg,
                paramwise_cfg=dict(norm_decay_mult=0.0)))
        wrapper = constructor(model)
    finally:
        logger.removeHandler(handler)
    assert not [m for m in records if 'requires_grad=False' in m]
    optimised = {id(p) for g in wrapper.optimizer.param_groups for p in g['params']}
    assert optimised == {id(p) for p in model.parameters() if p.requires_grad}


def test_tensorboard_backend_works(tmp_path):
    from mmengine.visualization import TensorboardVisBackend
    backend = TensorboardVisBackend(save_dir=str(tmp_path))
    backend.add_scalar('loss', 1.0, step=1)
    backend.close()
    assert glob.glob(str(tmp_path / '**' / 'events.out.tfevents.*'), recursive=True)
