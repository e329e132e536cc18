"""Generic pytest fixtures shared by the test suite."""
from pathlib import Path

import pytest

from tests.tool_utils import REPO_ROOT, run_tool


@pytest.fixture(scope='session')
def repo_root() -> Path:
    """Absolute path of the repository root."""
    return REPO_ROOT


@pytest.fixture
def tool_runner():
    """The :func:`tool_utils.run_tool` helper, as a fixture."""
    return run_tool


@pytest.fixture(autouse=True, scope='session')
def mmseg_default_scope():
    """Configs built in-process resolve types in mmseg's scope, as the tools do."""
    from mmengine.registry import init_default_scope

    import mmseg_reclip  # noqa: F401  (compat glue + registries)
    init_default_scope('mmseg')


@pytest.fixture(scope='session')
def clip_file(tmp_path_factory) -> str:
    """A randomly initialised tiny open_clip model (``ViT-Tiny-16-test``, seed 0) saved
    as a local weights file, shared by the whole session."""
    from tests.clip_utils import TINY, save_random_clip
    return save_random_clip(str(tmp_path_factory.mktemp('clip') / 'tiny.pt'), TINY)


@pytest.fixture(scope='module')
def toy(tmp_path_factory) -> dict:
    """The toy segmentor of :mod:`tests.toy_utils`, trained 2 + 2 (resumed) iterations
    with the real ``tools/train.py``."""
    from tests.toy_utils import make_toy_run
    return make_toy_run(tmp_path_factory.mktemp('toy'))
