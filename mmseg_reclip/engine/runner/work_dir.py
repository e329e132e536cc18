"""Work-dir safety for training: one run per work dir, no leftovers, a resume that
survives a truncated latest checkpoint. Used by :class:`ReCLIPRunner`."""
import glob
import json
import logging
import os
import os.path as osp
import re
import socket
import time
import zipfile
from typing import List, Optional

from mmengine.logging import print_log
from mmengine.runner.checkpoint import find_latest_checkpoint

from mmseg_reclip.models.utils.io import TMP_PREFIX

LOCK_FILE = '.reclip_train.lock'


class WorkDirLockedError(RuntimeError):
    """Another live training run holds the work dir."""


def _proc_start_time(pid: int) -> Optional[str]:
    """Start time of ``pid`` (Linux ``/proc``), to tell a reused PID from the owner."""
    try:
        with open(f'/proc/{pid}/stat') as f:
            return f.read().rsplit(')', 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by another user
        return True
    return True


class WorkDirLock:
    """An exclusive lock file ``<work_dir>/.reclip_train.lock`` (pid, host, start).

    A lock whose process is dead (same host: no such PID, or the PID was reused by a
    process started later) is stale and taken over with a warning. A lock held by a
    live process, or by a process on another host (its liveness cannot be checked),
    raises :class:`WorkDirLockedError` naming the PID and host.

    Args:
        work_dir (str): the run's work dir (created if missing).
    """

    def __init__(self, work_dir: str):
        self.path = osp.join(work_dir, LOCK_FILE)
        self.held = False

    @staticmethod
    def _me() -> dict:
        pid = os.getpid()
        return dict(
            pid=pid,
            host=socket.gethostname(),
            proc_start=_proc_start_time(pid),
            started=time.strftime('%Y-%m-%d %H:%M:%S'))

    def _read(self) -> Optional[dict]:
        try:
            with open(self.path) as f:
                return json.load(f)
        except (OSError, ValueError):
            return None

    def _is_stale(self, owner: Optional[dict]) -> bool:
        if owner is None:  # empty/garbled: the writer died between create and write
            return True
        if owner.get('host') != socket.gethostname():
            return False
        pid = int(owner.get('pid', -1))
        if pid == os.getpid():
            return True  # our own (e.g. a second train() in this process)
        if not _pid_alive(pid):
            return True
        start = owner.get('proc_start')
        return start is not None and _proc_start_time(pid) not in (None, start)

    def acquire(self) -> None:
        os.makedirs(osp.dirname(self.path), exist_ok=True)
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                owner = self._read()
                if not self._is_stale(owner):
                    raise WorkDirLockedError(
                        f'{osp.dirname(self.path)} is in use by another training run (PID '
                        f'{owner.get("pid")} on host {owner.get("host")}, started '
                        f'{owner.get("started")}). Use another --work-dir; if that run is '
                        f'dead, delete {self.path}.') from None
                print_log(f'Taking over the stale lock {self.path} of a dead run '
                          f'({owner}).',
                          logger='current',
                          level=logging.WARNING)
                try:
                    os.remove(self.path)
                except FileNotFoundError:
                    pass
                continue
            with os.fdopen(fd, 'w') as f:
                json.dump(self._me(), f)
            self.held = True
            return
        raise WorkDirLockedError(f'Could not take the lock {self.path}; retry.')

    def release(self) -> None:
        if not self.held:
            return
        owner = self._read()
        if owner is not None and owner.get('pid') == os.getpid():
            try:
                os.remove(self.path)
            except FileNotFoundError:
                pass
        self.held = False


def remove_stale_tmp_files(folder: str) -> List[str]:
    """Delete the temporary files (``TMP_PREFIX*``) that a process killed during an
    atomic write left in ``folder``; call it while holding the work-dir lock.

    Returns:
        list[str]: the removed paths.
    """
    removed = []
    for path in sorted(glob.glob(osp.join(glob.escape(folder), TMP_PREFIX + '*'))):
        if osp.isfile(path):
            os.remove(path)
            removed.append(path)
    if removed:
        print_log(
            f'Removed {len(removed)} temporary file(s) left by an interrupted write: '
            f'{[osp.basename(p) for p in removed]}',
            logger='current',
            level=logging.WARNING)
    return removed


def checkpoint_is_intact(path: str) -> bool:
    """Cheap integrity check: the file exists and its zip directory (written last by
    ``torch.save``) is readable, so a save killed midway is detected without loading."""
    if not osp.isfile(path):
        return False
    try:
        with zipfile.ZipFile(path) as zf:
            return len(zf.namelist()) > 0
    except (zipfile.BadZipFile, OSError, ValueError):
        return False


_CKPT_RE = re.compile(r'^(?:iter|epoch)_(\d+)\.pth$')


def latest_intact_checkpoint(work_dir: str) -> Optional[str]:
    """The checkpoint to resume from: the one ``last_checkpoint`` names if it is intact,
    else the newest intact ``iter_N.pth``/``epoch_N.pth`` of ``work_dir`` (warning that
    names the broken one). None when there is no ``last_checkpoint`` (as mmengine).

    Raises:
        RuntimeError: the named checkpoint is broken and no other one is intact.
    """
    named = find_latest_checkpoint(work_dir)
    if named is None or checkpoint_is_intact(named):
        return named  # as mmengine: nothing named, nothing resumed
    found = []
    for path in glob.glob(osp.join(glob.escape(work_dir), '*.pth')):
        m = _CKPT_RE.match(osp.basename(path))
        if m:
            found.append((int(m.group(1)), osp.getmtime(path), path))
    candidates = [
        p for _, _, p in sorted(found, reverse=True) if osp.abspath(p) != osp.abspath(named)
    ]
    for path in candidates:
        if checkpoint_is_intact(path):
            print_log(
                f'The latest checkpoint {named} (named by '
                f'{osp.join(work_dir, "last_checkpoint")}) is truncated or missing; '
                f'resuming from {path} instead.',
                logger='current',
                level=logging.WARNING)
            return path
    raise RuntimeError(
        f'Cannot resume in {work_dir}: {named} (named by last_checkpoint) is truncated or '
        'missing and no other checkpoint is intact. Delete the broken files or train '
        'without --resume.')
