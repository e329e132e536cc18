"""One-line errors for the command-line tools.

A tool's ``main`` raises the project's errors (and ``ValueError`` /
``FileNotFoundError`` / ... whose messages say what is wrong and how to fix it);
:func:`run_main` prints them as ``<tool>: error: <message>`` on stderr and exits with
status 2, as ``argparse`` does for a bad command line. The traceback, for a bug report,
is printed with ``--debug`` on the tool's command line or ``MMSEG_RECLIP_DEBUG=1``.
Any other exception (a bug) keeps its traceback.
"""
import argparse
import os
import sys
import traceback
from typing import Callable, Optional, Sequence, Tuple, Type

__all__ = ['DEBUG_ENV', 'add_debug_argument', 'debug_requested', 'run_main']

#: environment variable that keeps the traceback of a user error
DEBUG_ENV = 'MMSEG_RECLIP_DEBUG'


def _user_errors() -> Tuple[Type[BaseException], ...]:
    """The exception types printed as one line (subclasses included, e.g.
    ``ClassSetMismatchError``, a ``ValueError``)."""
    # imported here: the tools import this module before the registries are filled
    from mmseg_reclip.compat import CorruptCheckpointError, UnsafeCheckpointError
    from mmseg_reclip.engine.runner.work_dir import WorkDirLockedError
    return (ValueError, FileNotFoundError, NotADirectoryError, IsADirectoryError, FileExistsError,
            PermissionError, WorkDirLockedError, UnsafeCheckpointError, CorruptCheckpointError)


def add_debug_argument(parser: argparse.ArgumentParser) -> None:
    """Add ``--debug`` (print the traceback of an error) to a tool's parser."""
    parser.add_argument(
        '--debug',
        action='store_true',
        help=f'print the full traceback of an error (also: {DEBUG_ENV}=1)')


def debug_requested(argv: Optional[Sequence[str]] = None) -> bool:
    """``--debug`` among the arguments, or ``MMSEG_RECLIP_DEBUG`` set (not ``0``)."""
    argv = sys.argv[1:] if argv is None else argv
    return '--debug' in argv or os.environ.get(DEBUG_ENV, '0') not in ('', '0')


def run_main(main: Callable[[], Optional[int]], prog: str) -> None:
    """Run a tool's ``main()`` and exit with its status; a user error is one line.

    Args:
        main (callable): the tool's entry point, returning an exit status or None.
        prog (str): the tool's name in the message, e.g. ``'tools/train.py'``.
    """
    try:
        status = main()
    except _user_errors() as err:
        if debug_requested():
            traceback.print_exc()
        message = str(err) or type(err).__name__
        if isinstance(err, OSError) and err.filename is not None and err.strerror:
            message = f'{err.strerror}: {err.filename!r}'
        print(f'{prog}: error: {message} (run with --debug for the traceback)', file=sys.stderr)
        sys.exit(2)
    sys.exit(status or 0)
