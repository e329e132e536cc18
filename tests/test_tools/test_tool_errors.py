"""tools/train.py, tools/test.py and tools/analysis_tools/bias_report.py print a user
error as one line ``<tool>: error: ...`` (exit status 2), its traceback only with
``--debug`` or ``MMSEG_RECLIP_DEBUG=1`` (:mod:`mmseg_reclip.utils.cli`); real runs on the
toy config of :mod:`tests.toy_utils` with bad inputs."""
import json
import os
import socket

import pytest

from mmseg_reclip.engine.runner.work_dir import LOCK_FILE
from mmseg_reclip.utils.cli import DEBUG_ENV, debug_requested
from tests.tool_utils import run_tool
from tests.toy_utils import _TOY_CONFIG, IMG_SIZE, NUM_CLASSES, _make_toy_dataset


@pytest.fixture(scope='module')
def toy(tmp_path_factory):
    base = tmp_path_factory.mktemp('tool_errors')
    _make_toy_dataset(base / 'data')
    cfg = base / 'toy_fcn.py'
    cfg.write_text(
        _TOY_CONFIG.format(
            size=IMG_SIZE, num_classes=NUM_CLASSES, data_root=str(base / 'data'), max_iters=1) +
        "runner_type = 'ReCLIPRunner'\n")
    (base / 'afile').write_text('not a folder')
    return base, cfg


def one_line_error(proc, tool: str) -> str:
    """The single error line of a failed run (no traceback above it)."""
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert 'Traceback' not in proc.stderr, proc.stderr[-3000:]
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith(f'{tool}: error: ')]
    assert len(errors) == 1, proc.stderr[-3000:]
    return errors[0]


def test_train_work_dir_below_a_file_is_one_line(toy):
    base, cfg = toy
    args = ['tools/train.py', cfg, '--work-dir', base / 'afile' / 'wd']
    line = one_line_error(run_tool(args, cwd=base, check=False), 'tools/train.py')
    assert f"{base / 'afile'}' is a file, not a folder" in line and '--work-dir' in line
    # the traceback on request
    proc = run_tool(args + ['--debug'], cwd=base, check=False)
    assert proc.returncode == 2 and 'Traceback' in proc.stderr, proc.stderr[-2000:]


def test_debug_switches(monkeypatch):
    monkeypatch.delenv(DEBUG_ENV, raising=False)
    assert not debug_requested(['cfg.py']) and debug_requested(['cfg.py', '--debug'])
    for value, on in (('1', True), ('0', False), ('', False)):
        monkeypatch.setenv(DEBUG_ENV, value)
        assert debug_requested(['cfg.py']) is on


def test_train_lock_with_foreign_content_is_one_line(toy):
    base, cfg = toy
    wd = base / 'foreign_lock'
    wd.mkdir()
    (wd / LOCK_FILE).write_text(json.dumps(dict(owner='someone')))
    proc = run_tool(['tools/train.py', cfg, '--work-dir', wd], cwd=base, check=False)
    line = one_line_error(proc, 'tools/train.py')
    assert str(wd / LOCK_FILE) in line and 'delete' in line
    # a live holder on this host: one line naming it
    (wd / LOCK_FILE).write_text(
        json.dumps(dict(pid=os.getppid(), host=socket.gethostname(), started='t0')))
    proc = run_tool(['tools/train.py', cfg, '--work-dir', wd], cwd=base, check=False)
    assert f'PID {os.getppid()} on host' in one_line_error(proc, 'tools/train.py')


def test_test_missing_checkpoint_is_one_line(toy):
    base, cfg = toy
    proc = run_tool(['tools/test.py', cfg, base / 'nope.pth', '--work-dir', base / 'wd_t'],
                    cwd=base,
                    check=False)
    assert 'nope.pth' in one_line_error(proc, 'tools/test.py')
