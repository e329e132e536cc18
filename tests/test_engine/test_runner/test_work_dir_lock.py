"""ReCLIPRunner: one training run per work dir, no leftovers, resume past a truncated
latest checkpoint. Unit tests of the lock plus real ``tools/train.py`` runs on the toy
config of ``tests/test_compat.py`` with ``runner_type = 'ReCLIPRunner'`` (what
``configs/_base_/default_runtime.py`` sets for every config of this repository)."""
import json
import multiprocessing
import os
import socket
import subprocess
import sys
import time

import pytest
import torch
from mmengine.runner.checkpoint import CheckpointLoader

from mmseg_reclip.engine.runner import (WorkDirLock, WorkDirLockedError, checkpoint_is_intact,
                                        latest_intact_checkpoint, remove_stale_tmp_files)
from mmseg_reclip.engine.runner.work_dir import LOCK_FILE
from mmseg_reclip.utils.io import TMP_PREFIX, atomic_torch_save
from tests.tool_utils import run_tool
from tests.toy_utils import _TOY_CONFIG, IMG_SIZE, NUM_CLASSES, _make_toy_dataset


@pytest.fixture
def sleeper():
    """A live process that is not us (its PID stands for another training run)."""
    proc = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)'])
    yield proc
    proc.kill()
    proc.wait()


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, '-c', 'pass'])
    proc.wait()
    return proc.pid


def write_lock(work_dir, **owner):
    os.makedirs(work_dir, exist_ok=True)
    with open(os.path.join(work_dir, LOCK_FILE), 'w') as f:
        json.dump(owner, f)


def test_lock_refuses_a_live_holder_and_takes_over_dead_ones(tmp_path, sleeper):
    wd = str(tmp_path / 'wd')
    lock = WorkDirLock(wd)
    lock.acquire()
    assert json.load(open(lock.path))['pid'] == os.getpid()
    lock.release()
    assert not os.path.exists(lock.path)

    host = socket.gethostname()
    write_lock(wd, pid=sleeper.pid, host=host, started='t0')
    with pytest.raises(WorkDirLockedError, match=f'PID {sleeper.pid} on host {host}'):
        WorkDirLock(wd).acquire()
    # another host: its PID cannot be checked from here, so the lock is respected
    write_lock(wd, pid=dead_pid(), host=host + '-other', started='t0')
    with pytest.raises(WorkDirLockedError, match='-other'):
        WorkDirLock(wd).acquire()
    # a dead process on this host: stale, taken over
    for stale in (dict(pid=dead_pid(), host=host), dict(pid=dead_pid(), host=host)):
        write_lock(wd, **stale)
        lock = WorkDirLock(wd)
        lock.acquire()
        assert json.load(open(lock.path))['pid'] == os.getpid()
        lock.release()
    # a reused PID (live process started after the lock was written) is stale too
    write_lock(wd, pid=sleeper.pid, host=host, proc_start='1')
    WorkDirLock(wd).acquire()


def _contend(work_dir, start_at, all_tried, queue):
    """One of several processes taking the same lock at the same moment: reports
    whether it got it, and holds it until every taker has tried."""
    while time.time() < start_at:
        pass
    lock = WorkDirLock(work_dir)
    try:
        lock.acquire()
    except WorkDirLockedError:
        queue.put(False)
        return
    queue.put(True)
    all_tried.wait(60)
    lock.release()


def test_concurrent_takers_never_share_the_lock(tmp_path):
    """6 real processes start acquiring at the same instant, over several trials (a
    fresh work dir, then one left with a stale lock of a dead process): exactly one
    holds it each time; a lock that another taker is still writing is never stale."""
    ctx = multiprocessing.get_context('fork')
    for trial in range(8):
        wd = str(tmp_path / f'trial{trial}')
        if trial % 2:  # a dead run's lock: every taker sees it stale at once
            write_lock(wd, pid=dead_pid(), host=socket.gethostname(), started='t0')
        queue, all_tried = ctx.Queue(), ctx.Event()
        start_at = time.time() + 0.5
        procs = [
            ctx.Process(target=_contend, args=(wd, start_at, all_tried, queue)) for _ in range(6)
        ]
        for p in procs:
            p.start()
        got = [queue.get(timeout=60) for _ in procs]
        all_tried.set()
        for p in procs:
            p.join(timeout=60)
        assert sum(got) == 1, f'trial {trial}: {sum(got)} of 6 processes held the lock'
        assert not os.path.exists(os.path.join(wd, LOCK_FILE))
        assert [f for f in os.listdir(wd) if f.startswith(LOCK_FILE)] == [], os.listdir(wd)


def test_lock_with_unexpected_content_is_refused_with_the_fix(tmp_path):
    """Empty, garbled or foreign JSON is no lock of ours: never taken over as stale (a
    taker may be writing it), refused with an error naming the file and the fix."""
    wd = tmp_path / 'wd'
    for content in ('', '{', '[1, 2]', '{"pid": "abc", "host": "h"}', '{"owner": 1}'):
        write_lock(str(wd))
        (wd / LOCK_FILE).write_text(content)
        with pytest.raises(WorkDirLockedError) as err:
            WorkDirLock(str(wd)).acquire()
        msg = str(err.value)
        assert str(wd / LOCK_FILE) in msg and 'delete' in msg, (content, msg)
        assert (wd / LOCK_FILE).read_text() == content  # left alone


def test_leftover_record_of_a_killed_taker_is_removed(tmp_path):
    wd = tmp_path / 'wd'
    wd.mkdir()
    host = socket.gethostname()
    dead = wd / f'{LOCK_FILE}.{host}.{dead_pid()}.abc'
    live = wd / f'{LOCK_FILE}.{host}.{os.getppid()}.abc'  # a taker still at work
    for f in (dead, live):
        f.write_text('{}')
    lock = WorkDirLock(str(wd))
    lock.acquire()
    assert not dead.exists() and live.exists()
    lock.release()
    assert sorted(os.listdir(wd)) == [live.name]


def test_work_dir_below_a_regular_file_is_a_clear_error(tmp_path):
    (tmp_path / 'afile').write_text('x')
    with pytest.raises(NotADirectoryError, match='afile.*is a file, not a folder'):
        WorkDirLock(str(tmp_path / 'afile' / 'wd')).acquire()


def test_tmp_cleanup_and_intact_checks(tmp_path):
    (tmp_path / f'{TMP_PREFIX}abc.pth').write_bytes(b'half')
    (tmp_path / 'keep.pth').write_bytes(b'x')
    assert [os.path.basename(p)
            for p in remove_stale_tmp_files(str(tmp_path))] == [f'{TMP_PREFIX}abc.pth']
    assert sorted(os.listdir(tmp_path)) == ['keep.pth']

    for it in (2, 4):
        atomic_torch_save(
            dict(state_dict={'w': torch.full((3, ), float(it))}), str(tmp_path / f'iter_{it}.pth'))
    (tmp_path / 'last_checkpoint').write_text(str(tmp_path / 'iter_4.pth'))
    assert latest_intact_checkpoint(str(tmp_path)) == str(tmp_path / 'iter_4.pth')
    data = (tmp_path / 'iter_4.pth').read_bytes()
    (tmp_path / 'iter_4.pth').write_bytes(data[:len(data) // 2])
    assert not checkpoint_is_intact(str(tmp_path / 'iter_4.pth'))
    assert latest_intact_checkpoint(str(tmp_path)) == str(tmp_path / 'iter_2.pth')
    (tmp_path / 'iter_2.pth').write_bytes(b'')
    with pytest.raises(RuntimeError, match='iter_4.pth'):
        latest_intact_checkpoint(str(tmp_path))
    (tmp_path / 'last_checkpoint').unlink()  # nothing named: nothing resumed (mmengine)
    assert latest_intact_checkpoint(str(tmp_path)) is None


def test_resume_falls_back_to_the_newest_intact_checkpoint(tmp_path):
    """Several intact older checkpoints: the newest of them, not the oldest (nor the
    one with the latest mtime when iteration numbers say otherwise)."""
    for it in (4, 2, 10, 6):  # saved out of order: mtime order is not iteration order
        atomic_torch_save(dict(state_dict={}), str(tmp_path / f'iter_{it}.pth'))
        time.sleep(0.01)
    (tmp_path / 'iter_12.pth').write_bytes(b'PK\x03\x04 killed mid-write')
    (tmp_path / 'last_checkpoint').write_text(str(tmp_path / 'iter_12.pth'))
    assert latest_intact_checkpoint(str(tmp_path)) == str(tmp_path / 'iter_10.pth')
    (tmp_path / 'iter_10.pth').write_bytes(b'')
    assert latest_intact_checkpoint(str(tmp_path)) == str(tmp_path / 'iter_6.pth')


# ---------------------------------------------------------------------------- tools
@pytest.fixture(scope='module')
def toy(tmp_path_factory):
    base = tmp_path_factory.mktemp('lock_toy')
    _make_toy_dataset(base / 'data')
    cfg = base / 'toy_fcn.py'
    cfg.write_text(
        _TOY_CONFIG.format(
            size=IMG_SIZE, num_classes=NUM_CLASSES, data_root=str(base / 'data'), max_iters=4) +
        "runner_type = 'ReCLIPRunner'\n")
    return base, cfg


def _out(proc):
    return proc.stdout + proc.stderr


def test_second_run_is_refused_and_stale_lock_taken_over(toy, sleeper):
    base, cfg = toy
    wd = base / 'two_runs'
    write_lock(wd, pid=sleeper.pid, host=socket.gethostname(), started='earlier')
    (wd / 'toy_fcn.py').write_text('# the running job\'s config dump\n')
    (wd / f'{TMP_PREFIX}x.pth').write_bytes(b'left by a kill -9')
    proc = run_tool([
        'tools/train.py', cfg, '--work-dir', wd, '--cfg-options', 'train_cfg.max_iters=2',
        'optim_wrapper.optimizer.lr=0.5'
    ],
                    cwd=base,
                    check=False)
    assert proc.returncode != 0
    assert f'PID {sleeper.pid} on host {socket.gethostname()}' in _out(proc), _out(proc)
    # the refused run neither overwrote the config dump nor touched the files
    assert (wd / 'toy_fcn.py').read_text() == '# the running job\'s config dump\n'
    assert (wd / f'{TMP_PREFIX}x.pth').exists() and not (wd / 'iter_2.pth').exists()
    # mmseg's stock tools/train.py gets the same from the config alone
    import mmseg
    stock = os.path.join(os.path.dirname(mmseg.__file__), '.mim', 'tools', 'train.py')
    if os.path.isfile(stock):
        proc = run_tool([stock, cfg, '--work-dir', wd], cwd=base, check=False)
        assert proc.returncode != 0 and f'PID {sleeper.pid} on host' in _out(proc)
        assert (wd / 'toy_fcn.py').read_text() == '# the running job\'s config dump\n'

    sleeper.kill()
    sleeper.wait()
    proc = run_tool(
        ['tools/train.py', cfg, '--work-dir', wd, '--cfg-options', 'train_cfg.max_iters=2'],
        cwd=base)
    assert 'stale lock' in _out(proc)
    assert 'Removed 1 temporary file' in _out(proc)
    assert not (wd / f'{TMP_PREFIX}x.pth').exists() and (wd / 'iter_2.pth').is_file()
    assert 'max_iters=2' in (wd / 'toy_fcn.py').read_text()  # this run's dump
    assert not (wd / LOCK_FILE).exists()  # released at the end


def test_resume_falls_back_past_a_truncated_checkpoint(toy):
    """iter_4.pth killed mid-write: --resume warns, resumes from iter_2 and retrains
    iterations 3-4 to exactly the weights of the uninterrupted run."""
    base, cfg = toy
    wd = base / 'truncated'
    run_tool(['tools/train.py', cfg, '--work-dir', wd], cwd=base)
    straight = CheckpointLoader.load_checkpoint(str(wd / 'iter_4.pth'), 'cpu')['state_dict']
    data = (wd / 'iter_4.pth').read_bytes()
    (wd / 'iter_4.pth').write_bytes(data[:len(data) // 3])
    proc = run_tool(['tools/train.py', cfg, '--work-dir', wd, '--resume'], cwd=base)
    out = _out(proc)
    assert 'iter_4.pth' in out and 'truncated or missing; resuming from' in out, out[-3000:]
    assert 'resumed epoch: 0, iter: 2' in out
    again = CheckpointLoader.load_checkpoint(str(wd / 'iter_4.pth'), 'cpu')['state_dict']
    assert again.keys() == straight.keys()
    for k in straight:
        torch.testing.assert_close(again[k], straight[k], rtol=0, atol=0, msg=k)
