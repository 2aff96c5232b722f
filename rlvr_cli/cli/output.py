"""What every command shares: the consoles, the one handler that turns a `BadInput` into one line and exit
code 2, and default output directories."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import typer
from rich.console import Console

from rlvr_cli.core.errors import BadInput

console = Console()
err_console = Console(stderr=True)


@contextmanager
def bad_input_exits() -> Iterator[None]:
    """Turn a `BadInput` raised inside into a one-line red `error: ...` on stderr and exit code 2."""
    try:
        yield
    except BadInput as e:
        err_console.print(f"[bold red]error:[/] {e}", highlight=False, soft_wrap=True)
        raise typer.Exit(code=2) from None


def default_output_dir(spec: str, in_run: str, elsewhere: str) -> Path:
    """Where a command's results go by default: `RUN_DIR/<in_run>` when `spec` is a run directory, else
    `<elsewhere>/<name>-<YYYYmmdd-HHMMSS>`."""
    run = Path(spec)
    if (run / "summary.json").is_file():
        return run / in_run
    return Path(elsewhere) / f"{run.name or spec.replace('/', '_')}-{time.strftime('%Y%m%d-%H%M%S')}"

