"""Helpers for tests that run the repository's command-line tools in a subprocess.

Import from a test module as ``from tests.tool_utils import run_tool, REPO_ROOT``.
"""
import os
import subprocess
import sys
from pathlib import Path
from typing import Mapping, Optional, Sequence, Union

REPO_ROOT = Path(__file__).resolve().parent.parent

# Every tool run gets these unless the caller's env says otherwise: the machines
# running the tests are small and shared, so one BLAS/OpenMP thread per process.
_DEFAULT_ENV = {
    'OMP_NUM_THREADS': '1',
    'MKL_NUM_THREADS': '1',
    'PYTHONUNBUFFERED': '1',
}

_TAIL_CHARS = 6000


def _tail(text: Optional[Union[str, bytes]]) -> str:
    if text is None:
        return ''
    if isinstance(text, bytes):
        text = text.decode('utf-8', 'replace')
    return text if len(text) <= _TAIL_CHARS else '...' + text[-_TAIL_CHARS:]


def run_tool(args: Sequence[Union[str, os.PathLike]],
             cwd: Optional[Union[str, os.PathLike]] = None,
             env: Optional[Mapping[str, str]] = None,
             timeout: float = 600,
             check: bool = True) -> subprocess.CompletedProcess:
    """Run ``sys.executable <script> <args...>`` and return the CompletedProcess.

    Args:
        args: the script then its arguments, e.g. ``['tools/train.py', cfg,
            '--work-dir', wd]``. A relative script path is taken from the
            repository root; the other arguments are passed as they are.
        cwd: working directory of the tool (default: the repository root).
        env: variables added to (and overriding) ``os.environ``. The repository
            root is prepended to ``PYTHONPATH``; ``OMP_NUM_THREADS`` and
            ``MKL_NUM_THREADS`` default to 1.
        timeout: seconds before the tool is killed; that fails the test.
        check: if True (default), a non-zero exit status fails the test.

    ``stdout``/``stderr`` of the result are text. On failure (timeout, or a
    non-zero exit status with ``check``) both are printed (pytest shows them) and
    an ``AssertionError`` carrying their tails is raised.
    """
    args = [os.fspath(a) for a in args]
    if not args:
        raise ValueError('run_tool needs at least the script path')
    script = Path(args[0])
    if not script.is_absolute():
        script = REPO_ROOT / script
    cmd = [sys.executable, str(script)] + args[1:]

    full_env = dict(os.environ)
    for key, value in _DEFAULT_ENV.items():
        full_env.setdefault(key, value)
    pythonpath = full_env.get('PYTHONPATH')
    full_env['PYTHONPATH'] = (
        str(REPO_ROOT) + os.pathsep + pythonpath if pythonpath else str(REPO_ROOT))
    if env:
        full_env.update({k: str(v) for k, v in env.items()})

    cwd = os.fspath(cwd) if cwd is not None else str(REPO_ROOT)
    shown = ' '.join(cmd)
    try:
        proc = subprocess.run(
            cmd, cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        out, err = _tail(exc.stdout), _tail(exc.stderr)
        print(f'$ {shown}\n--- stdout ---\n{out}\n--- stderr ---\n{err}')
        raise AssertionError(f'{shown} timed out after {timeout} s\n--- stdout (tail) ---\n{out}'
                             f'\n--- stderr (tail) ---\n{err}') from None
    if check and proc.returncode != 0:
        print(f'$ {shown}\n--- stdout ---\n{proc.stdout}\n--- stderr ---\n{proc.stderr}')
        raise AssertionError(f'{shown} exited with {proc.returncode}\n--- stdout (tail) ---\n'
                             f'{_tail(proc.stdout)}\n--- stderr (tail) ---\n{_tail(proc.stderr)}')
    return proc
