"""`rlvr train [OVERRIDES...]`: one GRPO run."""

from __future__ import annotations

from typing import Any

import typer
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from rlvr_cli.cli.options import JSON, OVERRIDES
from rlvr_cli.cli.output import (
    bad_input_exits,
    err_console,
    print_json,
    print_table,
    status_colour,
    stdout_to_stderr,
)
from rlvr_cli.core.run_dir import FAILED
from rlvr_cli.core.units import human_bytes


def train(overrides: list[str] = OVERRIDES, as_json: bool = JSON) -> None:
    """Run one GRPO training run. Exit codes: 0 completed, 1 failed, 2 bad input, 3 diverged, 4 pruned (a
    search trial), 5 paused (a trial of a `pruner: sha` search at its rung, with a checkpoint), 130 interrupted.

    Under `torchrun`, `accelerate launch` or `srun` every rank ends with the same exit code; rank 0 alone prints
    the summary. With `distributed=ddp|fsdp|zero2|zero3 distributed.num_processes=N` outside such a launcher, the
    run starts its N processes itself (`rlvr_cli.training.launcher`)."""
    import warnings

    from rlvr_cli.core.compose import compose_run
    from rlvr_cli.training.distributed import end_with_launcher, launch_env, linger

    warnings.filterwarnings("ignore", category=FutureWarning, module=r"(transformers|trl)\.")  # upstream renames
    overrides = overrides or []
    # Bad input under torchrun: every rank refuses it; each lingers so that none is killed before it exits 2.
    refuse = {"then": lambda: linger(2, all_ranks=True), "quiet": not launch_env().is_main}
    with bad_input_exits(**refuse), stdout_to_stderr(as_json):
        cfg = compose_run(overrides)  # typed and validated once: every bad value refused before torch is imported
        from rlvr_cli.training import launcher

        start = launcher.needs_launch(cfg)
        path = launcher.prepare(cfg) if start else None
    if start:  # distributed.num_processes > 1: start the processes through torchrun; rank 0 prints the summary
        raise typer.Exit(code=launcher.launch(cfg, overrides, path, as_json))
    end_with_launcher()  # a rank of rlvr's own launch ends when the launcher dies, even by SIGKILL
    with bad_input_exits(**refuse), stdout_to_stderr(as_json):
        from rlvr_cli.training.recipe import EXIT_CODES
        from rlvr_cli.training.recipe import train as run_train

        summary = run_train(cfg, overrides, progress=not as_json)
    main = launch_env().is_main  # under torchrun, accelerate launch or srun: rank 0 alone reports
    if main and as_json:
        print_json(summary)
    elif main:
        print_table(summary_table(summary))
    if main and summary["status"] == FAILED:  # one line; the traceback is in the run directory
        where = f" (traceback: {summary['traceback']})" if summary.get("traceback") else ""
        err_console.print(f"[bold red]error:[/] run failed: {escape(str(summary['reason']))}{escape(where)}",
                          highlight=False,
                          soft_wrap=True)
    linger(EXIT_CODES[summary["status"]])  # the other ranks exit after rank 0, with the same code
    raise typer.Exit(code=EXIT_CODES[summary["status"]])


def summary_table(summary: dict[str, Any]) -> Table:
    """A two-column Rich table of a run's summary (summary.json), with units: bytes in decimal units
    (`human_bytes`, 1 GB = 1e9 bytes), fractions as percentages, wall time in seconds. Figures never wrap;
    only the status reason and paths may."""
    status = summary["status"]
    table = Table(title=escape(f"run {summary['run_dir']}"), show_header=False)
    table.add_column(style="bold", no_wrap=True)
    table.add_column()

    def figure(label: str, value: str) -> None:
        table.add_row(label, Text(value, no_wrap=True))

    table.add_row("status", Text.assemble((status, status_colour(status)),
                                          f" ({summary['reason']})" if summary.get("reason") else ""))
    figure("optimizer / lr", f"{summary['optimizer']} / {summary['lr']:g}")
    figure("adapter", summary["adapter"] + (f" r={summary['r']}" if summary.get("r") else ""))
    if summary.get("precision"):
        figure("precision", f"{summary['precision']} (weights {summary['weights_dtype']}, compute "
                            f"{summary['compute_dtype']})")
    figure("optimizer steps", str(summary["global_step"]))
    for key in ("reward_mean_first_quarter", "reward_mean_last_quarter"):
        v = summary.get(key)
        figure(key.replace("_", " "), "-" if v is None else f"{v:.3f}")
    if summary.get("frac_reward_zero_std_mean") is not None:
        figure("groups with equal rewards", f"{summary['frac_reward_zero_std_mean']:.0%} (mean over steps)")
    if summary.get("zero_grad_steps") is not None:
        first = summary.get("first_nonzero_grad_step")
        figure("zero-gradient steps", f"{summary['zero_grad_steps']} of {summary['global_step']} (first gradient: "
                                      + (f"step {first})" if first else "none)"))
    if summary.get("trainable_params") is not None:
        share = summary["trainable_params"] / summary["total_params"]
        figure("trainable params", f"{summary['trainable_params']:,} of {summary['total_params']:,} ({share:.2%})")
    sparsity = summary.get("update_sparsity")
    if sparsity:
        figure(f"changed > {sparsity['tolerance']:g}", f"{100 * sparsity['changed_frac_tol']:.4f}% "
                                                      f"(step {sparsity['step']})")
        figure("changed exactly", f"{100 * sparsity['changed_frac_exact']:.4f}%")
        figure(f"changed bf16 > {sparsity['tolerance']:g}", f"{100 * sparsity['changed_frac_bf16_tol']:.4f}%")
    figure("optimizer state", human_bytes(summary.get("optimizer_state_bytes")))
    figure("peak memory", human_bytes(summary.get("peak_memory_bytes")))
    figure("wall time", f"{summary['wall_time_s']:.1f} s")
    table.add_row("weights", Text(summary.get("weights_dir") or "not saved"))
    if summary.get("weights_bytes"):
        figure("weights size", f"{human_bytes(summary['weights_bytes'])} "
                               f"({summary.get('weights_format', 'full')}; full model "
                               f"{human_bytes(summary['full_weights_bytes'])})")
    if summary.get("wandb_run_id"):
        table.add_row("W&B run", Text(summary["wandb_run_id"]))
    return table
