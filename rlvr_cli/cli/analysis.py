"""`rlvr sparsity BASE TARGET` and `rlvr memory MODEL`."""

from __future__ import annotations

from pathlib import Path

import typer

from rlvr_cli.cli.output import bad_input_exits, console, default_output_dir


def sparsity(
    base: str = typer.Argument(..., help="the initial weights: hub id, model directory, run directory, sparse-delta "
                                         "checkpoint, or smollm2-135m / tiny-random"),
    target: str = typer.Argument(..., help="the trained weights (same kinds; adapter runs are merged into their "
                                           "base)"),
    tolerance: float = typer.Option(1e-5, help="absolute difference at or below which a weight is unchanged"),
    rank: bool = typer.Option(False, "--rank", help="also the matrix rank and 99%-energy rank of each 2-D update"),
    output_dir: Path | None = typer.Option(None, "--output-dir", help="default: TARGET/sparsity for a run "
                                           "directory, else sparsity/<target>-<time>"),
) -> None:
    """Update sparsity between two sets of weights (arXiv 2505.11711): % of entries changed, exactly and beyond
    the tolerance, as stored and after a bf16 cast; per module type, layer (heat map) and tensor."""
    from rlvr_cli.analysis.sparsity import sparsity_command

    output_dir = output_dir or default_output_dir(target, "sparsity", "sparsity")
    with bad_input_exits():
        sparsity_command(base, target, tolerance, rank, output_dir, console)


def memory(
    model: str = typer.Argument(..., help="a parameter count (70e9, 1.7e9, 135e6), smollm2-135m / tiny-random, "
                                          "a model directory or a hub id"),
    optimizer: list[str] = typer.Option(None, "--optimizer", help="repeatable; default: every optimizer option"),
    adapter: str = typer.Option("full", "--adapter", help="full | lora | dora | rslora | vera (needs a model)"),
    r: int | None = typer.Option(None, "--r", help="adapter rank; default: the adapter config's"),
    precision: str = typer.Option("fp32", "--precision", help="fp32 | mixed | bf16"),
) -> None:
    """Training memory per optimizer: weights, gradients, optimizer states, master weights (no activations)."""
    from rlvr_cli.analysis.memory import estimate, memory_table

    with bad_input_exits():
        table = memory_table(estimate(model, optimizer or None, precision, adapter, r))
    console.print(table)

