"""`rlvr sweep SWEEP.yaml` and `rlvr report SWEEP_DIR`."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

import typer
from rich.markup import escape
from rich.table import Table

from rlvr_cli.cli import options
from rlvr_cli.cli.crash import keep_tracebacks_in
from rlvr_cli.cli.options import JSON
from rlvr_cli.cli.output import bad_input_exits, console, err_console, print_json, print_table, stdout_to_stderr


def sweep(
    sweep_file: Path = typer.Argument(..., help="a sweep YAML, e.g. sweeps/smoke.yaml"),
    overrides: list[str] = typer.Argument(None, help="overrides for every cell; hydra.launcher.* ones go to the "
                                                     "launcher"),
    launcher: str = typer.Option("basic", help="basic | submitit_local | submitit_slurm"),
    max_parallel: int = typer.Option(1, "--max-parallel", help="jobs at a time (submitit launchers)"),
    output_dir: Path | None = options.output_dir("sweeps_out/<sweep name>"),
    dry_run: bool = typer.Option(False, "--dry-run", help="print the cells, their run names and (submitit_slurm) "
                                                          "their SLURM jobs, run nothing"),
    resume: bool = typer.Option(False, "--resume", help="finish an existing sweep directory: skip completed "
                                                        "and diverged cells, rerun the rest"),
    as_json: bool = JSON,
) -> None:
    """Run a grid of rlvr train runs through Hydra's multirun launchers, then report it. With --json: one
    document `{"name", "sweep_dir", "dry_run", "cells": [...], "report": {...} | null}`, each cell with its SLURM
    job under submitit_slurm (`"job": {"nodes", "tasks_per_node", "gpus_per_node", "cpus_per_task", "mem_gb",
    "timeout_min", "partition"}`, else null); the jobs' own output goes to stderr."""
    from rlvr_cli.sweeps import launch as sweeps

    with bad_input_exits(), stdout_to_stderr(as_json):
        plan = sweeps.plan(sweep_file, overrides or [], launcher, max_parallel)  # the file, read once
        name = plan.name
        sweep_dir = output_dir or Path("sweeps_out") / str(name)
        keep_tracebacks_in(sweep_dir)
    if plan.search is not None:  # a learning-rate search: trials asked of Optuna studies
        search_command(plan, sweep_file, sweep_dir, resume, dry_run, as_json)
        return
    with bad_input_exits(), stdout_to_stderr(as_json):
        try:
            cells, todo, code, jobs = sweeps.run(plan, sweep_dir, resume, dry_run)
        except KeyboardInterrupt:  # the running cells have ended interrupted (sweeps.launch.wait_for)
            err_console.print(escape(f"error: sweep interrupted: its running cells ended interrupted; finish it with "
                                     f"rlvr sweep {sweep_file} --resume --output-dir {sweep_dir}"), highlight=False,
                              soft_wrap=True)
            raise typer.Exit(code=130) from None
        rows = [{"index": i, **cell, "ran": not dry_run and i in todo,
                 "status": None if dry_run else sweeps.status(sweep_dir, cell),
                 "job": asdict(jobs[i]) if jobs[i] else None} for i, cell in enumerate(cells)]
        if not as_json:
            table = Table(title=escape(f"sweep {name}: {len(cells)} cells" + (" (dry run)" if dry_run else "")))
            with_jobs = any(jobs)
            for col in ("#", "run name", "axes", *(["SLURM job"] if with_jobs else []), "status"):
                table.add_column(col, no_wrap=col == "#")
            for row, job in zip(rows, jobs, strict=True):
                state = "-" if dry_run else ("ran now" if row["ran"] else "kept") + f": {row['status']}"
                table.add_row(str(row["index"]), escape(row["name"]),
                              escape(" ".join(f"{k}={v}" for k, v in row["axes"].items())),
                              *([escape(job.describe() if job else "-")] if with_jobs else []), state)
            print_table(table)
        report = None
        if not dry_run:
            from rlvr_cli.cli.report import report_command

            report = report_command(sweep_dir, quiet=as_json)  # a damaged summary.json: that cell is `unknown`
    if as_json:
        print_json({"name": str(name), "sweep_dir": str(sweep_dir), "dry_run": dry_run, "cells": rows,
                    "report": report})
    if not dry_run:
        raise typer.Exit(code=0 if code == 0 else 1)


def search_command(plan: Any, sweep_file: Path, sweep_dir: Path, resume: bool, dry_run: bool, as_json: bool) -> None:
    """`rlvr sweep SEARCH.yaml`: run a learning-rate search (`rlvr_cli.sweeps.search.run`) and report it; with
    `--dry-run`, print its search space, pruning schedule and budget. With --json: one document `{"name",
    "sweep_dir", "dry_run", "search": describe(...), "cells": [...], "report": {...} | null}`."""
    from rlvr_cli.sweeps import launch as sweeps
    from rlvr_cli.sweeps import search

    with bad_input_exits(), stdout_to_stderr(as_json):
        try:
            result = search.run(plan, sweep_dir, resume, dry_run)
        except KeyboardInterrupt:
            err_console.print(escape(f"error: search interrupted: its running trials ended interrupted and were "
                                     f"closed; continue it with rlvr sweep {sweep_file} --resume --output-dir "
                                     f"{sweep_dir}"), highlight=False, soft_wrap=True)
            raise typer.Exit(code=130) from None
        info, cells = result["describe"], result["cells"]
        rows = [{"index": i, **cell, "ran": i in result["ran"], "status": sweeps.status(sweep_dir, cell)}
                for i, cell in enumerate(cells)]
        if not as_json:
            print_table(search_table(plan.name, info, dry_run))
            rungs = ", ".join(map(str, info["rungs"])) or "-"
            console.print(escape(f"pruner {info['pruner']}: rungs at optimizer steps {rungs} of "
                                 f"{info['max_steps']}; at least {info['min_optimizer_steps']} and at most "
                                 f"{info['max_optimizer_steps']} optimizer steps, against "
                                 f"{info['grid_optimizer_steps']} for the grid over the same ranges"),
                          highlight=False, soft_wrap=True)
        report = None
        if not dry_run:
            from rlvr_cli.cli.report import report_command

            report = report_command(sweep_dir, quiet=as_json)
    if as_json:
        print_json({"name": plan.name, "sweep_dir": str(sweep_dir), "dry_run": dry_run, "search": info,
                    "cells": rows, "report": report})
    if not dry_run:
        raise typer.Exit(code=0 if result["code"] in (0, 4) else 1)


def search_table(name: str, info: dict[str, Any], dry_run: bool) -> Table:
    """The search space of a search (`rlvr_cli.sweeps.search_spec.describe`): one row per study."""
    table = Table(title=escape(f"search {name}: {len(info['studies'])} studies, sampler {info['sampler']}"
                               + (" (dry run)" if dry_run else "")))
    for col in ("study", "optimizer", "learning rate (log scale)", "trials", "grid points"):
        table.add_column(col)
    for s in info["studies"]:
        table.add_row(escape(s["study"]), s["optimizer"], f"{s['lr_min']:g} .. {s['lr_max']:g}", str(s["trials"]),
                      str(s["grid_points"]))
    return table


def report(sweep_dir: Path = typer.Argument(..., help="a directory made by rlvr sweep"), as_json: bool = JSON) -> None:
    """Table, best learning rate per optimizer and adapter, report.csv/json and plots of a sweep (no W&B needed).
    With --json: the report (what report.json holds) on stdout instead of the tables."""
    from rlvr_cli.cli.report import report_command

    keep_tracebacks_in(sweep_dir)
    with bad_input_exits(), stdout_to_stderr(as_json):
        try:
            result = report_command(sweep_dir, quiet=as_json)
        except OSError as e:  # a fault of the environment, not of the input: exit 1
            shown = "the tables above are complete" if not as_json else "nothing was printed"
            err_console.print(f"[bold red]error:[/] cannot write the report into {escape(str(sweep_dir))}: "
                              f"{escape(e.strerror or str(e))} ({escape(str(e.filename))}); {shown}; make the "
                              "directory writable, or copy it somewhere writable, and run rlvr report again",
                              highlight=False, soft_wrap=True)
            raise typer.Exit(1) from None
    if as_json:
        print_json(result)
