"""`rlvr sparsity BASE TARGET` and `rlvr memory MODEL`."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.table import Table

from rlvr_cli.cli.options import JSON
from rlvr_cli.cli.output import (
    bad_input_exits,
    console,
    default_output_dir,
    print_json,
    print_table,
    stdout_to_stderr,
)
from rlvr_cli.core.units import human_bytes

if TYPE_CHECKING:
    from rlvr_cli.analysis.memory import MemoryEstimate

#: Click settings of `rlvr memory` (`app.command(context_settings=MEMORY_CONTEXT)`): an argument that looks like an
#: option, e.g. `-5`, reaches MODEL, so that `parse_model_arg` refuses it in one line ("parameter count must be a
#: whole number >= 1") instead of Click's "No such option" usage box. Any other unknown option then ends as an
#: unexpected extra argument (still exit code 2). See https://click.palletsprojects.com/en/stable/advanced/
#: ("Forwarding Unknown Options") and https://typer.tiangolo.com/tutorial/commands/context/.
MEMORY_CONTEXT = {"ignore_unknown_options": True}


def sparsity(
    base: str = typer.Argument(..., help="the initial weights: hub id, model directory, run directory, sparse-delta "
                                         "checkpoint, or smollm2-135m / tiny-random"),
    target: str = typer.Argument(..., help="the trained weights (same kinds; adapter runs are merged into their "
                                           "base)"),
    tolerance: float = typer.Option(1e-5, help="absolute difference at or below which a weight is unchanged"),
    rank: bool = typer.Option(False, "--rank", help="also the matrix rank and 99%-energy rank of each 2-D update"),
    output_dir: Path | None = typer.Option(None, "--output-dir", help="default: TARGET/sparsity for a run "
                                           "directory, else sparsity/<target>-<time>"),
    as_json: bool = JSON,
) -> None:
    """Update sparsity between two sets of weights (arXiv 2505.11711): % of entries changed, exactly and beyond
    the tolerance, as stored and after a bf16 cast; per module type, layer (heat map) and tensor."""
    from rlvr_cli.analysis.sparsity import sparsity_command

    output_dir = output_dir or default_output_dir(target, "sparsity", "sparsity")
    with bad_input_exits(), stdout_to_stderr(as_json):
        result = sparsity_command(base, target, tolerance, rank, output_dir, None if as_json else console)
    if as_json:
        print_json(result)


def memory(
    model: str = typer.Argument(..., help="a parameter count (70e9, 1.7e9, 135e6), smollm2-135m / tiny-random, "
                                          "a model directory or a hub id"),
    optimizer: list[str] = typer.Option(None, "--optimizer", help="repeatable; default: every optimizer option"),
    adapter: str = typer.Option("full", "--adapter", help="full | lora | dora | rslora | vera (needs a model)"),
    r: int | None = typer.Option(None, "--r", help="adapter rank; default: the adapter config's"),
    precision: str = typer.Option("fp32", "--precision", help="fp32 | mixed | bf16"),
    as_json: bool = JSON,
) -> None:
    """Training memory per optimizer: weights, gradients, optimizer states, master weights (no activations).
    Bytes in decimal units: 1 GB = 1e9 bytes."""
    from rlvr_cli.analysis.memory import estimate

    with bad_input_exits(), stdout_to_stderr(as_json):
        est = estimate(model, optimizer or None, precision, adapter, r)
    if as_json:
        print_json(asdict(est))
    else:
        print_table(memory_table(est))


def memory_table(est: MemoryEstimate) -> Table:
    """A Rich table of a `rlvr_cli.analysis.memory.estimate`: one row per optimizer with weights, gradients,
    optimizer states, master weights and their total (decimal units, `human_bytes`: 1 GB = 1e9 bytes), and
    the total bytes per parameter. Figures never wrap; the caption names the precision, the sources, and
    says that activations are not included. A lower bound (Adafactor from a bare count) reads `>=`."""
    from rlvr_cli.analysis.memory import PRECISION_HELP, SOURCE

    what = f"{est.n_params:,} parameters" + ("" if est.from_shapes else " (a bare count)")
    if est.adapter != "full":
        what += (f", adapter {est.adapter} r={est.r}: {est.n_trainable:,} trainable "
                 f"({est.n_trainable / est.n_params:.2%})")
    table = Table(title=f"training memory of {est.model}: {what}, {est.precision}", caption_justify="left")
    table.add_column("optimizer", no_wrap=True)
    for col in ("weights", "gradients", "states", "master", "total", "B/param"):
        table.add_column(col, justify="right", no_wrap=True)
    notes = []
    for name, b in est.rows.items():
        states, total, per = human_bytes(b.optimizer_states), human_bytes(b.total), f"{b.bytes_per_param:.2f}"
        if not b.exact:
            states, total, per = f"~{states} *", f">= {total}", f">= {per}"
            notes.append(f"* {name}: {b.note}.")
        table.add_row(name, human_bytes(b.weights), human_bytes(b.gradients), states,
                      human_bytes(b.master_weights), total, per)
    counts = ("Exact for these parameter shapes (per-tensor step counters included)." if est.from_shapes else
              "From a bare parameter count: per-element state only (per-tensor step counters need the shapes).")
    table.caption = "\n".join(["states: optimizer states; master: master weights (fp32 copy); B/param: total "
                               "bytes per parameter.", PRECISION_HELP[est.precision] + ". " + counts, *notes,
                               SOURCE])
    return table
