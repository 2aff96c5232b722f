"""What every command shares: the consoles, how `--json` documents are printed (tables: `print_table`, from
`rlvr_cli.core.units`, which the library layers use too), the one handler that turns a `BadInput` into one
line and exit code 2, and default output directories."""

from __future__ import annotations

import contextlib
import json
import math
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape

from rlvr_cli.core.errors import BadInput
from rlvr_cli.core.units import (  # noqa: F401  (re-exported: the commands print through these)
    PIPE_WIDTH,
    STATUS_COLOURS,
    fit_table,
    print_table,
    status_colour,
    stdout_console,
)

#: The stdout console: as wide as the terminal, or `PIPE_WIDTH` when stdout is a pipe or a file.
console = stdout_console()
err_console = Console(stderr=True)


@contextmanager
def bad_input_exits(then: Callable[[], None] | None = None, quiet: bool = False) -> Iterator[None]:
    """Turn a `BadInput` raised inside into a one-line red `error: ...` on stderr and exit code 2; `then` runs
    between the two (e.g. `rlvr train`'s ranks of a launch lingering so that every rank exits 2). `quiet`: exit 2
    without the line (the ranks of a launch other than rank 0, which all refuse the same input: one line in all)."""
    try:
        yield
    except BadInput as e:
        if not quiet:
            err_console.print(f"[bold red]error:[/] {escape(str(e))}", highlight=False, soft_wrap=True)
        if then is not None:
            then()
        raise typer.Exit(code=2) from None


def plain(data: Any) -> Any:
    """`data` as plain JSON values: non-finite floats become None (JSON has no NaN), paths and other objects
    their `str`, tuples lists; dicts and lists are copied recursively."""
    if isinstance(data, float):
        return data if math.isfinite(data) else None
    if isinstance(data, dict):
        return {str(k): plain(v) for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        return [plain(v) for v in data]
    if data is None or isinstance(data, (str, int, bool)):
        return data
    return str(data)


def print_json(data: Any) -> None:
    """Print `data` (`plain`ed) as one indented JSON document on stdout, and nothing else: what `--json` prints."""
    sys.stdout.write(json.dumps(plain(data), indent=2, allow_nan=False) + "\n")
    sys.stdout.flush()


@contextmanager
def stdout_to_stderr(enabled: bool = True) -> Iterator[None]:
    """While inside, send everything written to stdout to stderr instead: Python's `sys.stdout` (Rich
    consoles, `print`) and file descriptor 1 (child processes such as a sweep's `rlvr train` jobs, native
    libraries). `--json` uses it so that stdout carries the JSON document alone. Does nothing when
    `enabled` is False."""
    if not enabled:
        yield
        return
    sys.stdout.flush()
    try:
        saved = os.dup(1)
        os.dup2(2, 1)
    except OSError:  # no file descriptor 1 (an embedded interpreter): Python-level redirection only
        saved = None
    try:
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        sys.stderr.flush()
        if saved is not None:
            os.dup2(saved, 1)
            os.close(saved)


def default_output_dir(spec: str, in_run: str, elsewhere: str) -> Path:
    """Where a command's results go by default: `RUN_DIR/<in_run>` when `spec` is a run directory, else
    `<elsewhere>/<name>-<YYYYmmdd-HHMMSS>`."""
    run = Path(spec)
    if (run / "summary.json").is_file():
        return run / in_run
    return Path(elsewhere) / f"{run.name or spec.replace('/', '_')}-{time.strftime('%Y%m%d-%H%M%S')}"
