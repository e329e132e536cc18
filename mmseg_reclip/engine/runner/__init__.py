from .reclip_runner import ReCLIPRunner
from .work_dir import (WorkDirLock, WorkDirLockedError, checkpoint_is_intact,
                       latest_intact_checkpoint, remove_stale_tmp_files)

__all__ = [
    'ReCLIPRunner', 'WorkDirLock', 'WorkDirLockedError', 'checkpoint_is_intact',
    'latest_intact_checkpoint', 'remove_stale_tmp_files'
]
