"""How figures are printed: bytes and fractions, one convention everywhere.

Bytes are in decimal SI units (1 kB = 1e3, 1 MB = 1e6, 1 GB = 1e9, 1 TB = 1e12 bytes), as the standard
training-memory figures are quoted (70B parameters with AdamW in fp32: 16 B/param = 1,120 GB).
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from rlvr_cli.core.run_dir import COMPLETED, DEAD, DIVERGED, FAILED, UNKNOWN

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

#: The width of stdout when it is not a terminal (a pipe, a file): wide enough that every table keeps whole
#: rows and long lines (paths) stay on one line, whatever COLUMNS says.
PIPE_WIDTH = 1000
#: Rich styles of run statuses (`rlvr train`'s summary, `rlvr report`'s cells); any other status is yellow.
STATUS_COLOURS = {COMPLETED: "green", DIVERGED: "red", FAILED: "red", DEAD: "red", UNKNOWN: "magenta"}

#: Decimal units above bytes, with the size of one. GB runs up to 9,999 GB so the standard figures read as
#: published (1,120 GB, not 1.12 TB); TB starts at 10 TB.
_UNITS = (("TB", 1e12, 1e13), ("GB", 1e9, 1e9), ("MB", 1e6, 1e6), ("kB", 1e3, 1e3))


def human_bytes(n: float | None) -> str:
    """A byte count in decimal SI units with three significant figures and the unit after one space:
    `0 B`, `512 B`, `3.20 MB`, `13.6 GB`, `1,120 GB`, `12.0 TB`; `-` for None.

    Args:
        n: bytes (int or float; negative counts keep their sign), or None when unknown.

    Returns:
        The figure: bytes below 1 kB as a whole number; otherwise kB, MB, GB (up to 9,999 GB) or TB (from
        10 TB), with 2 decimals below 10, 1 below 100, none (thousands separated by commas) from 100.
    """
    if n is None:
        return "-"
    for unit, scale, start in _UNITS:
        if abs(n) >= start:
            value = n / scale
            digits = 0 if abs(round(value, 1)) >= 100 else 1 if abs(round(value, 2)) >= 10 else 2
            return f"{value:,.{digits}f} {unit}"
    return f"{n:.0f} B"


def percent(fraction: float | None) -> str:
    """A fraction in [0, 1] as a percentage with enough digits for tiny ones: `0%`, `20.0%`, `0.25%`,
    `0.0012%`; `-` for None."""
    if fraction is None:
        return "-"
    pct = 100 * fraction
    if pct == 0:
        return "0%"
    return f"{pct:.1f}%" if abs(pct) >= 1 else f"{pct:.2f}%" if abs(pct) >= 0.01 else f"{pct:.2g}%"


def status_colour(status: str) -> str:
    """The Rich colour of a run status (`STATUS_COLOURS`; yellow for running, interrupted, pending, ...)."""
    return STATUS_COLOURS.get(status, "yellow")


def stdout_console() -> Console:
    """A Rich console on stdout: as wide as the terminal (or COLUMNS), `PIPE_WIDTH` wide when stdout is not a
    terminal, so that piped tables keep whole rows."""
    from rich.console import Console

    return Console(width=None if sys.stdout.isatty() else PIPE_WIDTH)


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
