"""Generic pytest fixtures shared by the test suite."""
import sys
from pathlib import Path

import pytest

_TESTS_DIR = Path(__file__).resolve().parent
# `from tool_utils import run_tool` works whatever pytest's import mode is.
if str(_TESTS_DIR) not in sys.path:
    sys.path.insert(0, str(_TESTS_DIR))

from tool_utils import REPO_ROOT, run_tool  # noqa: E402


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
    import mmseg_reclip  # noqa: F401  (compat glue + registries)
    from mmengine.registry import init_default_scope
    init_default_scope('mmseg')
