"""The `rlvr` command line (Typer). Imports nothing heavy: torch loads only inside commands that train.

    rlvr train  [OVERRIDES...]        one GRPO run; Hydra override syntax
    rlvr eval   MODEL [options]       avg@k / pass@k / maj@k on AIME24/25, MATH-500, AMC23, GSM8K
    rlvr sweep  SWEEP.yaml [OVERRIDES...]   a grid of runs through a Hydra launcher
    rlvr report SWEEP_DIR             table, best learning rates, CSV/JSON and plots of a sweep
    rlvr memory MODEL [options]       training memory per optimizer: weights, gradients, states, master
    rlvr sparsity BASE TARGET         update sparsity: % of weights changed, per module type and layer
    rlvr config show [OVERRIDES...]   the composed config, resolved
    rlvr --version
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from rlvr_cli import __version__
from rlvr_cli.errors import BadInput
from rlvr_cli.report import STATUS_COLOURS, human_bytes

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


@contextmanager
def bad_input_exits() -> Iterator[None]:
    """Turn a `BadInput` raised inside into a one-line red `error: ...` on stderr and exit code 2."""
    try:
        yield
    except BadInput as e:
        err_console.print(f"[bold red]error:[/] {e}", highlight=False, soft_wrap=True)
        raise typer.Exit(code=2) from None


def _default_output_dir(spec: str, in_run: str, elsewhere: str) -> Path:
    """Where a command's results go by default: `RUN_DIR/<in_run>` when `spec` is a run directory, else
    `<elsewhere>/<name>-<YYYYmmdd-HHMMSS>`."""
    run = Path(spec)
    if (run / "summary.json").is_file():
        return run / in_run
    return Path(elsewhere) / f"{run.name or spec.replace('/', '_')}-{time.strftime('%Y%m%d-%H%M%S')}"


@app.command()
def train(overrides: list[str] = OVERRIDES) -> None:
    """Run one GRPO training run. Exit codes: 0 completed, 1 failed, 2 bad input, 3 diverged, 130 interrupted."""
    import warnings

    from rlvr_cli.config import compose

    warnings.filterwarnings("ignore", category=FutureWarning, module=r"(transformers|trl)\.")  # upstream renames
    overrides = overrides or []
    with bad_input_exits():
        cfg = compose(overrides)
        from rlvr_cli.train import EXIT_CODES
        from rlvr_cli.train import train as run_train

        summary = run_train(cfg, overrides)
    console.print(summary_table(summary))
    raise typer.Exit(code=EXIT_CODES[summary["status"]])


@app.command("eval")
def eval_(
    model: str = typer.Argument(..., help="hub id, model directory, rlvr train run directory, or smollm2-135m / "
                                          "tiny-random"),
    benchmarks: str = typer.Option("math500,aime24,aime25,amc23,gsm8k", help="comma list"),
    k: int = typer.Option(4, "--k", help="samples per problem"),
    temperature: float = typer.Option(0.6, help="0 = greedy"),
    top_p: float = typer.Option(0.95, "--top-p"),
    max_new_tokens: int = typer.Option(1024, "--max-new-tokens", help="tokens per completion"),
    limit: int | None = typer.Option(None, help="the first N problems of each benchmark (smoke runs)"),
    batch_size: int = typer.Option(16, "--batch-size", help="sequences per generate call (hf backend)"),
    seed: int = typer.Option(0),
    output_dir: Path | None = typer.Option(None, "--output-dir", help="default: RUN_DIR/eval for a run "
                                           "directory, else evals/<model>-<time>"),
    backend: str = typer.Option("hf", help="hf | vllm"),
    data_dir: str | None = typer.Option(None, "--data-dir", help="benchmark JSONL files; default $RLVR_DATA_DIR, "
                                        "else the hub"),
    dtype: str | None = typer.Option(None, help="float32 | bfloat16; default: the run's, else by device"),
    wandb: bool = typer.Option(False, "--wandb", help="also log the results to W&B (offline without an API key)"),
) -> None:
    """Score a model on math benchmarks: avg@k, pass@k (unbiased), maj@k, with standard errors."""
    from rlvr_cli.generation import Sampling

    sampling = Sampling(k=k, temperature=temperature, top_p=top_p, max_new_tokens=max_new_tokens,
                        batch_size=batch_size, seed=seed)
    output_dir = output_dir or _default_output_dir(model, "eval", "evals")
    with bad_input_exits():
        from rlvr_cli.evaluation import evaluate

        results = evaluate(model, benchmarks, sampling, limit, output_dir, backend, data_dir, dtype)
    if wandb:
        from rlvr_cli.tracking import log_eval

        log_eval(results, output_dir)
    console.print(eval_table(results))
    console.print(f"results: {output_dir / 'results.json'}  samples: {output_dir / 'samples.jsonl'}")


@app.command()
def sweep(
    sweep_file: Path = typer.Argument(..., help="a sweep YAML, e.g. sweeps/smoke.yaml"),
    overrides: list[str] = typer.Argument(None, help="overrides for every cell; hydra.launcher.* ones go to the "
                                                     "launcher"),
    launcher: str = typer.Option("basic", help="basic | submitit_local | submitit_slurm"),
    max_parallel: int = typer.Option(1, "--max-parallel", help="jobs at a time (submitit launchers)"),
    output_dir: Path | None = typer.Option(None, "--output-dir", help="default: sweeps_out/<sweep name>"),
    dry_run: bool = typer.Option(False, "--dry-run", help="print the cells and their run names, run nothing"),
    resume: bool = typer.Option(False, "--resume", help="finish an existing sweep directory: skip completed "
                                                        "and diverged cells, rerun the rest"),
) -> None:
    """Run a grid of rlvr train runs through Hydra's multirun launchers, then report it."""
    from rlvr_cli import sweep as sweeps

    with bad_input_exits():
        name = sweeps.load_sweep(sweep_file).get("name") or sweep_file.stem
        sweep_dir = output_dir or Path("sweeps_out") / str(name)
        cells, todo, code = sweeps.run(sweep_file, sweep_dir, overrides or [], launcher, max_parallel, resume,
                                       dry_run)
        table = Table(title=f"sweep {name}: {len(cells)} cells" + (" (dry run)" if dry_run else ""))
        for col in ("#", "run name", "axes", "status"):
            table.add_column(col)
        for i, cell in enumerate(cells):
            state = "-" if dry_run else ("ran now" if i in todo else "kept") + f": {sweeps.status(sweep_dir, cell)}"
            table.add_row(str(i), cell["name"], " ".join(f"{k}={v}" for k, v in cell["axes"].items()), state)
        console.print(table)
        if not dry_run:
            from rlvr_cli.report import report_command

            report_command(sweep_dir)  # a summary.json that does not parse is a one-line error here too
    if not dry_run:
        raise typer.Exit(code=0 if code == 0 else 1)


@app.command()
def report(sweep_dir: Path = typer.Argument(..., help="a directory made by rlvr sweep")) -> None:
    """Table, best learning rate per optimizer and adapter, report.csv/json and plots of a sweep (no W&B needed)."""
    from rlvr_cli.report import report_command

    with bad_input_exits():
        report_command(sweep_dir)


@app.command()
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
    from rlvr_cli.sparsity import sparsity_command

    output_dir = output_dir or _default_output_dir(target, "sparsity", "sparsity")
    with bad_input_exits():
        sparsity_command(base, target, tolerance, rank, output_dir, console)


@app.command()
def memory(
    model: str = typer.Argument(..., help="a parameter count (70e9, 1.7e9, 135e6), smollm2-135m / tiny-random, "
                                          "a model directory or a hub id"),
    optimizer: list[str] = typer.Option(None, "--optimizer", help="repeatable; default: every optimizer option"),
    adapter: str = typer.Option("full", "--adapter", help="full | lora | dora | rslora | vera (needs a model)"),
    r: int | None = typer.Option(None, "--r", help="adapter rank; default: the adapter config's"),
    precision: str = typer.Option("fp32", "--precision", help="fp32 | mixed | bf16"),
) -> None:
    """Training memory per optimizer: weights, gradients, optimizer states, master weights (no activations)."""
    from rlvr_cli.memory import estimate, memory_table

    with bad_input_exits():
        table = memory_table(estimate(model, optimizer or None, precision, adapter, r))
    console.print(table)


@config_app.command("show")
def config_show(overrides: list[str] = OVERRIDES) -> None:
    """Print the composed, resolved config of a run."""
    from omegaconf import OmegaConf

    from rlvr_cli.config import compose

    with bad_input_exits():
        cfg = compose(overrides or [])
    console.print(OmegaConf.to_yaml(cfg), highlight=False, markup=False, end="")


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


def eval_table(results: dict[str, Any]) -> Table:
    """One row per benchmark and one for all problems pooled: avg@k, pass@k, maj@k with standard errors."""
    k = results["overall"]["k"]
    table = Table(title=f"{results['model']['spec']}  (k={k}, temperature {results['protocol']['temperature']}, "
                        f"top-p {results['protocol']['top_p']}, {results['protocol']['max_new_tokens']} tokens)")
    for col in ("benchmark", "problems", f"avg@{k}", "pass@1", f"pass@{k}", f"maj@{k}", "tokens/s"):
        table.add_column(col, justify="left" if col == "benchmark" else "right")

    def pct(s: dict[str, Any], key: str) -> str:
        return f"{100 * s[key]:.1f} ± {100 * s[key + '_stderr']:.1f}"

    rows = [*results["benchmarks"].items(), ("overall", results["overall"])]
    for name, s in rows:
        table.add_row(name, str(s["n_problems"]), pct(s, f"avg@{k}"), pct(s, "pass@1"), pct(s, f"pass@{k}"),
                      pct(s, f"maj@{k}"), f"{s['tokens_per_s']:.0f}" if "tokens_per_s" in s else "")
    return table


if __name__ == "__main__":
    app()
