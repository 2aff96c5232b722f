"""The `rlvr` command line (Typer). Imports nothing heavy: torch loads only inside commands that train.

    rlvr train  [OVERRIDES...]        one GRPO run; Hydra override syntax
    rlvr config show [OVERRIDES...]   the composed config, resolved
    rlvr --version
"""

from __future__ import annotations

from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from rlvr_cli import __version__
from rlvr_cli.errors import BadInput

app = typer.Typer(help="Experiment runner for reinforcement learning with verifiable rewards (GRPO) on LLMs.",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
config_app = typer.Typer(help="Inspect the composed configuration.", no_args_is_help=True)
app.add_typer(config_app, name="config")
console = Console()
err_console = Console(stderr=True)
OVERRIDES = typer.Argument(None, help="Hydra overrides, e.g. optimizer=adamw optimizer.lr=1e-5 adapter=lora")


def _version(value: bool) -> None:
    if value:
        console.print(f"rlvr {__version__}")
        raise typer.Exit()


@app.callback()
def main(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                      help="Print the version and exit.")) -> None:
    """rlvr: compose configs, run GRPO with TRL, track with W&B."""


def _bad_input(e: BadInput) -> typer.Exit:
    err_console.print(f"[bold red]error:[/] {e}", highlight=False, soft_wrap=True)
    return typer.Exit(code=2)


@app.command()
def train(overrides: list[str] = OVERRIDES) -> None:
    """Run one GRPO training run. Exit codes: 0 completed, 1 failed, 2 bad input, 3 diverged, 130 interrupted."""
    from rlvr_cli.config import compose

    overrides = overrides or []
    try:
        cfg = compose(overrides)
        from rlvr_cli.train import EXIT_CODES
        from rlvr_cli.train import train as run_train

        summary = run_train(cfg, overrides)
    except BadInput as e:
        raise _bad_input(e) from None
    console.print(summary_table(summary))
    raise typer.Exit(code=EXIT_CODES[summary["status"]])


@config_app.command("show")
def config_show(overrides: list[str] = OVERRIDES) -> None:
    """Print the composed, resolved config of a run."""
    from omegaconf import OmegaConf

    from rlvr_cli.config import compose

    try:
        cfg = compose(overrides or [])
    except BadInput as e:
        raise _bad_input(e) from None
    console.print(OmegaConf.to_yaml(cfg), highlight=False, markup=False, end="")


def summary_table(summary: dict[str, Any]) -> Table:
    """A two-column Rich table of a run's summary, with units."""
    status = summary["status"]
    colour = {"completed": "green", "diverged": "red", "failed": "red"}.get(status, "yellow")
    table = Table(title=f"run {summary['run_dir']}", show_header=False)
    table.add_column(style="bold")
    table.add_column()
    table.add_row("status", f"[{colour}]{status}[/]" + (f" ({summary['reason']})" if summary.get("reason") else ""))
    table.add_row("optimizer / lr", f"{summary['optimizer']} / {summary['lr']:g}")
    table.add_row("adapter", summary["adapter"] + (f" r={summary['r']}" if summary.get("r") else ""))
    table.add_row("optimizer steps", str(summary["global_step"]))
    for key in ("reward_mean_first_quarter", "reward_mean_last_quarter"):
        v = summary.get(key)
        table.add_row(key.replace("_", " "), "-" if v is None else f"{v:.3f}")
    if summary.get("trainable_params") is not None:
        share = summary["trainable_params"] / summary["total_params"]
        table.add_row("trainable params", f"{summary['trainable_params']:,} of {summary['total_params']:,} "
                                          f"({share:.2%})")
    table.add_row("optimizer state", _bytes(summary["optimizer_state_bytes"]))
    table.add_row("peak memory", _bytes(summary["peak_memory_bytes"]))
    table.add_row("wall time", f"{summary['wall_time_s']:.1f} s")
    table.add_row("weights", summary.get("weights_dir") or "not saved")
    if summary.get("wandb_run_id"):
        table.add_row("W&B run", summary["wandb_run_id"])
    return table


def _bytes(n: int | None) -> str:
    if n is None:
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


if __name__ == "__main__":
    app()
