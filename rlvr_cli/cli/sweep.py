"""`rlvr sweep SWEEP.yaml` and `rlvr report SWEEP_DIR`."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from rlvr_cli.cli.output import bad_input_exits, console


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
    from rlvr_cli.sweeps import launch as sweeps

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
            from rlvr_cli.sweeps.report import report_command

            report_command(sweep_dir)  # a summary.json that does not parse is a one-line error here too
    if not dry_run:
        raise typer.Exit(code=0 if code == 0 else 1)


def report(sweep_dir: Path = typer.Argument(..., help="a directory made by rlvr sweep")) -> None:
    """Table, best learning rate per optimizer and adapter, report.csv/json and plots of a sweep (no W&B needed)."""
    from rlvr_cli.sweeps.report import report_command

    with bad_input_exits():
        report_command(sweep_dir)

