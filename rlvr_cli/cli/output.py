"""What every command shares, the one output sink of rlvr: the consoles, how tables are printed (`print_table`:
no figure split), the status colours, a transient progress bar on stderr, how `--json` documents are printed, the
one handler that turns a `BadInput` into one line and exit code 2, and default output directories. The library
layers below `cli/` print nothing: they return data, which the commands render here."""

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
from rich.table import Table

from rlvr_cli.core.errors import BadInput
from rlvr_cli.core.run_dir import COMPLETED, DEAD, DIVERGED, FAILED, PAUSED, PRUNED, UNKNOWN

#: The width of stdout when it is not a terminal (a pipe, a file): wide enough that every table keeps whole
#: rows and long lines (paths) stay on one line, whatever COLUMNS says.
PIPE_WIDTH = 1000
#: Rich styles of run statuses (`rlvr train`'s summary, `rlvr report`'s cells); any other status is yellow.
STATUS_COLOURS = {COMPLETED: "green", PRUNED: "cyan", PAUSED: "blue", DIVERGED: "red", FAILED: "red", DEAD: "red",
                  UNKNOWN: "magenta"}


def status_colour(status: str) -> str:
    """The Rich colour of a run status (`STATUS_COLOURS`; yellow for running, interrupted, pending, ...)."""
    return STATUS_COLOURS.get(status, "yellow")


def stdout_console() -> Console:
    """A Rich console on stdout: as wide as the terminal (or COLUMNS), `PIPE_WIDTH` wide when stdout is not a
    terminal, so that piped tables keep whole rows."""
    return Console(width=None if sys.stdout.isatty() else PIPE_WIDTH)


#: The stdout console: as wide as the terminal, or `PIPE_WIDTH` when stdout is a pipe or a file.
console = stdout_console()
err_console = Console(stderr=True)


def fit_table(table: Table, console: Console | None = None) -> int:
    """Give every column of `table` the width it needs so that no figure is split or cut, and return the
    width of the whole table (characters) at those column widths.

    A column with `no_wrap=True` (the figures: a number and its unit stay together) needs its widest cell,
    header included, on one line; so does a cell that is a `rich.text.Text` with `no_wrap=True`. Any other
    column may wrap at spaces, so it needs its longest word (headers are never cut to `optimiz…`). The
    needs become the columns' `min_width`, which Rich keeps when it narrows a table. `console`: the one it
    will print on (default `stdout_console()`).
    """
    from rich.measure import Measurement
    from rich.text import Text

    console = console or stdout_console()
    options = console.options.update_width(PIPE_WIDTH * 10)
    for column in table.columns:
        cells = [*([column.header] if table.show_header else []), *column.cells]
        need = 0
        for cell in cells:
            whole = column.no_wrap or (isinstance(cell, Text) and cell.no_wrap)
            measured = Measurement.get(console, options, cell)
            need = max(need, measured.maximum if whole else measured.minimum)
        column.min_width = max(column.min_width or 0, need)
    return Measurement.get(console, options, table).minimum


def print_table(table: Table, console: Console | None = None) -> None:
    """Print a Rich table with every figure whole: at the console's width when the table fits in it (text
    columns wrap at spaces), else at the least width that keeps figures and words whole (`fit_table`), the
    terminal wrapping those longer lines. Piped stdout is `PIPE_WIDTH` wide, so rows stay whole there.
    `console`: default `stdout_console()`."""
    console = console or stdout_console()
    need = fit_table(table, console)
    if need <= console.width:
        console.print(table, crop=False)
        return
    width = console.width
    console.width = need
    try:
        console.print(table, crop=False)
    finally:
        console.width = width


@contextmanager
def progress_bar(description: str) -> Iterator[Callable[[int, int], None]]:
    """A transient Rich progress bar on stderr (`err_console`) for a library call that reports its progress.

    Yields `report(done, total)`, the callback to hand to the library (e.g.
    `rlvr_cli.analysis.sparsity.measure_sparsity`: tensors compared, tensors in all). The bar appears at the first
    report, labelled `description`, and goes away once `done >= total` or when the block ends (an error); nothing
    is shown when nothing is reported.
    """
    from rich.progress import Progress

    bar = Progress(console=err_console, transient=True)
    task: Any = None
    running = False

    def stop() -> None:
        nonlocal running
        if running:  # Progress.stop prints a newline on a console that is not a terminal: once only
            running = False
            bar.stop()

    def report(done: int, total: int) -> None:
        nonlocal task, running
        if task is None:
            bar.start()
            running = True
            task = bar.add_task(description, total=total)
        bar.update(task, completed=done, total=total)
        if done >= total:
            stop()

    try:
        yield report
    finally:
        stop()


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
