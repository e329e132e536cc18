"""tools/generate_pseudo_labels.py keys a label set by the teacher checkpoint's content:
another teacher re-saved at the same path (same size, same mtime) makes every label
stale; the same teacher copied elsewhere does not."""
import importlib.util
import os
import shutil

import torch

from tests.tool_utils import REPO_ROOT


def load_tool():
    spec = importlib.util.spec_from_file_location('_reclip_generate_pseudo_labels',
                                                  REPO_ROOT / 'tools/generate_pseudo_labels.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_teacher_identity_follows_the_content(tmp_path):
    tool = load_tool()
    path = tmp_path / 'teacher.pth'
    torch.save(dict(state_dict={'w': torch.zeros(64)}), path)
    first = tool.teacher_identity(str(path))
    stat = os.stat(path)
    # another teacher (same shapes: same size) re-saved at the same path, mtime kept
    torch.save(dict(state_dict={'w': torch.ones(64)}), path)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert os.stat(path).st_size == stat.st_size
    assert tool.teacher_identity(str(path)) != first
    # the same file elsewhere (moved, copied): the labels stay valid
    copy = tmp_path / 'moved' / 'teacher.pth'
    copy.parent.mkdir()
    shutil.copy(path, copy)
    assert tool.teacher_identity(str(copy)) == tool.teacher_identity(str(path))
