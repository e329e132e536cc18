"""Work-dir safety for training: one run per work dir, no leftovers, a resume that
survives a truncated latest checkpoint. Used by :class:`ReCLIPRunner`."""
import errno
import fcntl
import glob
import json
import logging
import os
import os.path as osp
import re
import socket
import time
import uuid
import zipfile
from typing import List, Optional, Tuple

from mmengine.logging import print_log
from mmengine.runner.checkpoint import find_latest_checkpoint

from mmseg_reclip.utils.io import TMP_PREFIX

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


def make_work_dir(work_dir: str) -> None:
    """``os.makedirs`` with a clear error when a parent is a regular file."""
    try:
        os.makedirs(work_dir, exist_ok=True)
    except (NotADirectoryError, FileExistsError) as err:
        parent = osp.abspath(work_dir)
        while parent != osp.dirname(parent) and not osp.isfile(parent):
            parent = osp.dirname(parent)
        blocker = parent if osp.isfile(parent) else osp.abspath(work_dir)
        raise NotADirectoryError(
            f'cannot create the work dir {osp.abspath(work_dir)!r}: {blocker!r} is a file, '
            'not a folder. Give another --work-dir (or move that file away).') from err


def _flock(fd: int) -> None:
    """Non-blocking exclusive ``flock`` (raises ``BlockingIOError`` when held). On a
    file system without it (some network mounts) it does nothing: the lock then rests on
    the atomic link and the owner record alone."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise
    except OSError as err:
        if err.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
            raise


class WorkDirLock:
    """An exclusive lock file ``<work_dir>/.reclip_train.lock`` (pid, host, start).

    Taking it is atomic: the owner record is written completely to a private temp file
    which is then hard-linked to the lock name (``os.link`` never replaces an existing
    file), so a lock file is never seen empty or half written. The holder also keeps an
    ``fcntl.flock`` on it for as long as it holds it; the kernel drops that lock when the
    process dies, and a taker must get it before it may judge the file stale, so two
    processes can never both take over one stale lock.

    A lock whose process is dead (same host: no such PID, or the PID was reused by a
    process started later) is stale and taken over with a warning. A lock held by a
    live process, or by a process on another host (its liveness cannot be checked),
    raises :class:`WorkDirLockedError` naming the PID and host; so does a lock file with
    content this class did not write (naming the file and how to clear it).

    Args:
        work_dir (str): the run's work dir (created if missing).
    """

    def __init__(self, work_dir: str):
        self.work_dir = work_dir
        self.path = osp.join(work_dir, LOCK_FILE)
        self.held = False
        self._fd: Optional[int] = None

    @staticmethod
    def _me() -> dict:
        pid = os.getpid()
        return dict(
            pid=pid,
            host=socket.gethostname(),
            proc_start=_proc_start_time(pid),
            started=time.strftime('%Y-%m-%d %H:%M:%S'))

    def _read(self) -> dict:
        """The owner record of the current lock file (``{}`` if it vanished).

        Raises:
            WorkDirLockedError: the file is not a lock record of ours.
        """
        try:
            with open(self.path) as f:
                text = f.read()
        except FileNotFoundError:
            return {}
        try:
            owner = json.loads(text)
        except ValueError:
            owner = None
        if not (isinstance(owner, dict) and isinstance(owner.get('pid'), int)
                and isinstance(owner.get('host'), str)):
            raise WorkDirLockedError(
                f'The lock file {self.path} is not a training lock of mmseg-reclip (expected '
                f'JSON with an integer "pid" and a "host"; found {text[:80]!r}). If no '
                f'training run uses {self.work_dir}, delete {self.path} and start again.')
        return owner

    def _is_stale(self, owner: dict) -> bool:
        if owner.get('host') != socket.gethostname():
            return False
        pid = owner['pid']
        if pid == os.getpid():
            return True  # our own (e.g. a second train() in this process)
        if not _pid_alive(pid):
            return True
        start = owner.get('proc_start')
        return start is not None and _proc_start_time(pid) not in (None, start)

    def _locked_by_other(self, owner: dict) -> WorkDirLockedError:
        return WorkDirLockedError(
            f'{self.work_dir} is in use by another training run (PID '
            f'{owner.get("pid")} on host {owner.get("host")}, started '
            f'{owner.get("started")}). Use another --work-dir; if that run is '
            f'dead, delete {self.path}.')

    def _write_candidate(self) -> Tuple[int, str]:
        """A complete owner record in a private temp file, flock-ed: ``(fd, path)``."""
        tmp = f'{self.path}.{socket.gethostname()}.{os.getpid()}.{uuid.uuid4().hex}'
        fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o644)
        _flock(fd)  # ours alone: cannot block
        os.write(fd, json.dumps(self._me()).encode())
        os.fsync(fd)
        return fd, tmp

    def acquire(self) -> None:
        make_work_dir(self.work_dir)
        fd, tmp = self._write_candidate()
        try:
            for _ in range(100):
                try:
                    os.link(tmp, self.path)  # atomic; fails if a lock exists
                    self._hold(fd)
                    fd = None
                    return
                except FileExistsError:
                    pass
                if self._take_over_if_stale(tmp):
                    self._hold(fd)
                    fd = None
                    return
            raise WorkDirLockedError(f'Could not take the lock {self.path}; retry.')
        finally:
            if osp.lexists(tmp):  # a take-over renamed it to the lock name
                os.remove(tmp)
            if fd is not None:
                os.close(fd)

    def _remove_dead_candidates(self) -> None:
        """Remove the temp records of takers killed before they cleaned up (their
        name says host and PID; only this host's dead PIDs are judged)."""
        for path in glob.glob(glob.escape(self.path) + '.*'):
            host_pid = osp.basename(path)[len(LOCK_FILE) + 1:].rsplit('.', 2)
            if len(host_pid) != 3 or host_pid[0] != socket.gethostname():
                continue
            if host_pid[1].isdigit() and not _pid_alive(int(host_pid[1])):
                try:
                    os.remove(path)
                except FileNotFoundError:
                    pass

    def _hold(self, fd: int) -> None:
        self._fd = fd
        self.held = True
        self._remove_dead_candidates()

    def _take_over_if_stale(self, candidate: str) -> bool:
        """Replace the existing lock by ``candidate`` if it is stale.

        Returns False when the lock file changed meanwhile (try again); raises
        :class:`WorkDirLockedError` when it is held.
        """
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except FileNotFoundError:
            return False  # released meanwhile
        try:
            try:
                _flock(fd)
            except BlockingIOError:  # a live holder on this machine
                owner = self._read()
                if not owner:
                    return False  # released meanwhile
                raise self._locked_by_other(owner) from None
            if not self._same_file(fd):
                return False  # replaced or released while we opened it
            owner = self._read()
            if not self._is_stale(owner):
                raise self._locked_by_other(owner)
            print_log(
                f'Taking over the stale lock {self.path} of a dead run ({owner}).',
                logger='current',
                level=logging.WARNING)
            # we hold the old file's flock, so no other taker is between our check
            # and this replace
            os.rename(candidate, self.path)
            return True
        finally:
            os.close(fd)

    def _same_file(self, fd: int) -> bool:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return False
        own = os.fstat(fd)
        return (st.st_dev, st.st_ino) == (own.st_dev, own.st_ino)

    def release(self) -> None:
        if not self.held:
            return
        try:
            if self._fd is not None and self._same_file(self._fd):
                os.remove(self.path)  # still flock-ed: no taker judges it meanwhile
        finally:
            if self._fd is not None:
                os.close(self._fd)
            self._fd = None
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
