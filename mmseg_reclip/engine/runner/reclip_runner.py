"""mmengine's Runner with a work-dir lock, start-up cleanup and a robust resume."""
import os.path as osp

from mmengine.dist import broadcast_object_list, get_rank, get_world_size
from mmengine.runner import Runner
from mmseg.registry import RUNNERS

from .work_dir import (WorkDirLock, WorkDirLockedError, latest_intact_checkpoint, make_work_dir,
                       remove_stale_tmp_files)


@RUNNERS.register_module()
class ReCLIPRunner(Runner):
    """``Runner`` that (set by ``runner_type = 'ReCLIPRunner'`` in
    ``configs/_base_/default_runtime.py``, so mmseg's stock ``tools/train.py`` gets it
    too):

    - holds a lock in ``work_dir`` for the whole of :meth:`train`: a second run in the
      same work dir fails at once naming the other run's PID and host (a stale lock of
      a dead process is taken over with a warning); the config is dumped only once the
      lock is held, so a refused run does not overwrite the running one's dump;
    - deletes temporary files left by an interrupted atomic write at start-up;
    - on ``--resume`` without ``load_from``, resumes from the newest *intact*
      checkpoint when the one ``last_checkpoint`` names is truncated (warning).

    Same arguments as :class:`mmengine.runner.Runner`.
    """

    def __init__(self, *args, **kwargs):
        work_dir = kwargs.get('work_dir', args[1] if len(args) > 1 else None)
        if isinstance(work_dir, str):
            make_work_dir(osp.abspath(work_dir))  # a clear error below a regular file
        self._defer_dump = True
        super().__init__(*args, **kwargs)
        self._defer_dump = False
        self._work_dir_lock = None

    def dump_config(self) -> None:
        # Runner.__init__ dumps before we know whether this run may use the work dir.
        if not getattr(self, '_defer_dump', False):
            super().dump_config()

    def _acquire_work_dir(self) -> None:
        """Rank 0 takes the lock and cleans up; every rank learns the outcome."""
        error = None
        if get_rank() == 0:
            lock = WorkDirLock(self.work_dir)
            try:
                lock.acquire()
                self._work_dir_lock = lock
                remove_stale_tmp_files(self.work_dir)
            except Exception as exc:  # every rank must learn it, or the others hang
                error = str(exc)
        if get_world_size() > 1:
            box = [error]
            broadcast_object_list(box, src=0)
            error = box[0]
        if error is not None:
            raise WorkDirLockedError(error)

    def train(self):
        self._acquire_work_dir()
        try:
            super().dump_config()
            return super().train()
        finally:
            if self._work_dir_lock is not None:
                self._work_dir_lock.release()
                self._work_dir_lock = None

    def val(self):
        super().dump_config()
        return super().val()

    def test(self):
        super().dump_config()
        return super().test()

    def load_or_resume(self) -> None:
        if not self._has_loaded and self._resume and self._load_from is None:
            path = latest_intact_checkpoint(self.work_dir)
            if path is not None:
                self._load_from = path  # Runner resumes from an explicit load_from
        super().load_or_resume()
