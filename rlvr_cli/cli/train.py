"""`rlvr train [OVERRIDES...]`: one GRPO run."""

from __future__ import annotations

from typing import Any

import typer
from rich.table import Table

from rlvr_cli.cli.options import OVERRIDES
from rlvr_cli.cli.output import bad_input_exits, console
from rlvr_cli.core.units import human_bytes
from rlvr_cli.sweeps.report import STATUS_COLOURS


def train(overrides: list[str] = OVERRIDES) -> None:
    """Run one GRPO training run. Exit codes: 0 completed, 1 failed, 2 bad input, 3 diverged, 130 interrupted."""
    import warnings

    from rlvr_cli.core.config import compose

    warnings.filterwarnings("ignore", category=FutureWarning, module=r"(transformers|trl)\.")  # upstream renames
    overrides = overrides or []
    with bad_input_exits():
        cfg = compose(overrides)
        from rlvr_cli.training.recipe import EXIT_CODES
        from rlvr_cli.training.recipe import train as run_train

        summary = run_train(cfg, overrides)
    console.print(summary_table(summary))
    raise typer.Exit(code=EXIT_CODES[summary["status"]])


def summary_table(summary: dict[str, Any]) -> Table:
    """A two-column Rich table of a run's summary, with units."""
    status = summary["status"]
    colour = STATUS_COLOURS.get(status, "yellow")
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
    sparsity = summary.get("update_sparsity")
    if sparsity:
        table.add_row(f"weights changed (step {sparsity['step']})",
                      f"{100 * sparsity['changed_frac_tol']:.4f}% > {sparsity['tolerance']:g}, "
                      f"{100 * sparsity['changed_frac_exact']:.4f}% exactly, "
                      f"{100 * sparsity['changed_frac_bf16_tol']:.4f}% after a bf16 cast")
    table.add_row("optimizer state", human_bytes(summary["optimizer_state_bytes"]))
    table.add_row("peak memory", human_bytes(summary["peak_memory_bytes"]))
    table.add_row("wall time", f"{summary['wall_time_s']:.1f} s")
    weights = summary.get("weights_dir") or "not saved"
    if summary.get("weights_bytes"):
        weights += (f" ({summary.get('weights_format', 'full')}: {human_bytes(summary['weights_bytes'])}; full model "
                    f"{human_bytes(summary['full_weights_bytes'])})")
    table.add_row("weights", weights)
    if summary.get("wandb_run_id"):
        table.add_row("W&B run", summary["wandb_run_id"])
    return table

