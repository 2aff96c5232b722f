"""The last line of defence: an exception no command expected ends in one line, its traceback kept in a file.

Known bad input is a `BadInput` (one line, exit 2) and a run's own failure is recorded in its run directory; this is
for the rest, so that a user sees `error: TYPE: MESSAGE (traceback: PATH)` and exit code 1 instead of a screen of
Python. The file goes into the directory the command works in (`keep_tracebacks_in`: a sweep directory once it
exists) or else `$RLVR_CACHE/tracebacks/` (default `~/.cache/rlvr/tracebacks/`), named by time and process id.
"""

from __future__ import annotations

import os
import sys
import time
import traceback
from pathlib import Path

from rlvr_cli.core.errors import one_line
from rlvr_cli.models.embedded import cache_dir

#: The directory the running command works in, once known (`keep_tracebacks_in`); None: `$RLVR_CACHE/tracebacks`.
_HOME: list[Path] = []


def keep_tracebacks_in(path: Path) -> None:
    """Write an unexpected exception's traceback into `path` (a run or sweep directory), while it exists."""
    _HOME[:] = [Path(path)]


def tracebacks_dir() -> Path:
    """Where `write_traceback` writes: the command's directory (`keep_tracebacks_in`) when it exists, else
    `$RLVR_CACHE/tracebacks` (default `$XDG_CACHE_HOME/rlvr/tracebacks`, `~/.cache/rlvr/tracebacks`)."""
    if _HOME and _HOME[0].is_dir():
        return _HOME[0]
    return cache_dir() / "tracebacks"


def write_traceback(e: BaseException) -> Path | None:
    """Write `e`'s traceback to `tracebacks_dir()/traceback-<UTC time>-<pid>.txt`; its path, or None when it
    could not be written (a full disk, no permission)."""
    path = tracebacks_dir() / f"traceback-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-{os.getpid()}.txt"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(traceback.format_exception(e)) + f"\ncommand: {' '.join(sys.argv)}\n")
    except OSError:
        return None
    return path


def report_unexpected(e: Exception) -> int:
    """Print one line for an exception no command expected, keep its traceback (`write_traceback`); exit code 1.

    The line: `error: TYPE: MESSAGE (traceback: PATH)`, the message cut at 300 characters (`one_line`); when the
    file cannot be written the line says so and the traceback goes to stderr after it, so nothing is lost, except
    for an `OSError` (a fault of the environment, e.g. `No space left on device`: the line is the whole story)."""
    path = write_traceback(e)
    environment = isinstance(e, OSError)  # a full disk, a lost mount: the line says it all
    where = (f"traceback: {path}" if path else "no traceback file: it could not be written" if environment
             else "the traceback could not be written to a file; it follows")
    print(f"error: {type(e).__name__}: {one_line(e, 300)} ({where})", file=sys.stderr)
    if path is None and not environment:
        traceback.print_exception(e, file=sys.stderr)
    return 1
