"""What `rlvr report SWEEP_DIR` computes and writes, from the sweep directory alone: the cells
(`rlvr_cli.sweeps.cells` reads them), their best learning rates and per-adapter rows, and the report files. It
prints nothing: `rlvr_cli.cli.report` renders the tables and `rlvr_cli.sweeps.plots` draws the plots.

    SWEEP_DIR/
        manifest.json    the cells: name, run_dir (relative to SWEEP_DIR), overrides, axes   (read)
        runs/<cell>/     one `rlvr train` run directory per cell: summary.json, metrics.jsonl  (read)
        report.csv       one row per cell                                                      (written)
        report_by_adapter.csv  one row per adapter (method): `by_adapter`                      (written)
        report.json      {"name", "cells": [...], "best_lr": [...], "by_adapter": [...]}       (written)
        plots/           `rlvr_cli.sweeps.plots`                                               (written there)

A cell whose run directory or `summary.json` does not exist yet is `pending`; one whose `summary.json` does not
parse is `unknown`; a `running` one whose process is gone is `dead` (`rlvr_cli.core.run_dir.liveness`; its
reason names the process and its last heartbeat); every other status is the one its `summary.json` gives
(running, completed, diverged, interrupted, failed). The "final reward"
of a cell is its `reward_mean_last_quarter`: the mean reward per completion over the last quarter of the
optimizer steps. W&B is never read.

A sweep whose cells differ by adapter (full fine-tuning and PEFT methods, e.g. sweeps/peft_methods.yaml) also gets
one row per adapter: each (optimizer, adapter, r) at its best learning rate (`by_adapter`), in
report_by_adapter.csv (and printed, and drawn as the bar chart reward_by_adapter.png).
"""

from __future__ import annotations

import csv
import json
import statistics
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from rlvr_cli.core.run_dir import DIVERGED
from rlvr_cli.sweeps.cells import FIGURES, NOT_COUNTED, STANDARD_AXES, CellReport, finite, load_cells
from rlvr_cli.sweeps.grid import log_grid
from rlvr_cli.sweeps.search import read_search
from rlvr_cli.sweeps.significance import ci95, compare

#: The files `write_report` writes into the sweep directory, in that order.
REPORT_FILES = ("report.csv", "report_by_adapter.csv", "report.json")


@dataclass
class LrStats:
    """The final reward at one learning rate of a group: mean and sample standard deviation over its
    `n` counted cells (seeds; std 0 for one), the half-width of the 95% confidence interval of the mean (`ci95`,
    Student's t, `rlvr_cli.sweeps.significance.ci95`; None for one cell), and how many of them diverged."""

    lr: float
    mean: float
    std: float
    n: int
    n_diverged: int = 0
    ci95: float | None = None


@dataclass
class BestLr:
    """The best learning rate of one (optimizer, adapter, r) group: the lr whose mean final reward is
    highest (ties: the smaller lr), with the statistics of every lr tried (`lrs`, ascending)."""

    optimizer: str | None
    adapter: str | None
    r: int | None
    lr: float
    mean: float
    std: float
    n: int
    n_diverged: int
    lrs: list[LrStats]
    ci95: float | None = None


@dataclass
class AdapterRow:
    """One adapter setting of a sweep, i.e. one (optimizer, adapter, r) group of cells, at its best learning rate.

    `lr` is the best lr (highest mean final reward over the counted cells at that lr, ties: the smaller; None when
    no cell counts) and `n_lrs` how many learning rates had a counted cell; `mean`, `std` (sample standard
    deviation, 0 for one cell), `n` and `n_diverged` are over the counted cells (seeds) at that lr (`LrStats`);
    `eval_avg` is the mean pooled avg@`eval_k` (a fraction) of those that were evaluated. `ci95` and `eval_ci95` are
    the half-widths of the 95% confidence intervals of those two means (Student's t over the seeds; None for fewer
    than 2), `finals` and `evals` the per-seed values they come from (what `comparisons` tests). `trainable_params`,
    `total_params` (counts) and `optimizer_state_bytes` (bytes, measured) come from the first cell of the group
    that has them and ran (not failed, pending, dead or unknown), preferring the best lr's. `statuses` counts
    every cell of the group by status (pending and failed included), `full` marks full fine-tuning.
    """

    optimizer: str | None
    adapter: str | None
    r: int | None
    full: bool
    lr: float | None = None
    n_lrs: int = 0
    mean: float | None = None
    std: float | None = None
    n: int = 0
    n_diverged: int = 0
    eval_avg: float | None = None
    eval_k: int | None = None
    ci95: float | None = None
    eval_ci95: float | None = None
    finals: list[float] = field(default_factory=list)
    evals: list[float] = field(default_factory=list)
    trainable_params: int | None = None
    total_params: int | None = None
    optimizer_state_bytes: int | None = None
    statuses: dict[str, int] = field(default_factory=dict)


def best_lrs(cells: Iterable[CellReport]) -> list[BestLr]:
    """The best learning rate of each (optimizer, adapter, r) group, groups in order of first appearance.

    Within a group, cells are pooled per lr over seeds (and any other axes); only counted cells enter
    (`CellReport.counted`: a final reward, and a status other than failed or pending; a diverged cell with a
    reward counts). Mean and sample standard deviation (0 for one cell) of the final reward per lr; the
    best lr has the highest mean (ties: the smaller lr). Groups without a counted cell with an lr are left out.

    Args:
        cells: cell reports (`load_cells`).

    Returns:
        One `BestLr` per group that has data.
    """
    groups: dict[tuple, dict[float, list[CellReport]]] = {}
    for cell in cells:
        if cell.counted and cell.lr is not None:
            groups.setdefault((cell.optimizer, cell.adapter, cell.r), {}).setdefault(float(cell.lr), []).append(cell)
    best = []
    for (optimizer, adapter, r), by_lr in groups.items():
        stats, top = best_of(by_lr)
        best.append(BestLr(optimizer, adapter, r, top.lr, top.mean, top.std, top.n, top.n_diverged, stats, top.ci95))
    return best


def best_of(by_lr: dict[float | None, list[CellReport]]) -> tuple[list[LrStats], LrStats]:
    """`lr_stats` of each learning rate (ascending; None, a run without one, first) and the best of them: the
    highest mean final reward, ties to the smaller lr (`max` keeps the first of equals).

    Raises:
        ValueError: `by_lr` is empty, or a cell has no final reward (`lr_stats`).
    """
    stats = [lr_stats(lr, by_lr[lr]) for lr in sorted(by_lr, key=lambda x: (x is not None, x or 0.0))]
    return stats, max(stats, key=lambda s: s.mean)


def lr_stats(lr: float, cells: list[CellReport]) -> LrStats:
    """Mean and sample standard deviation (0 for one cell) of the final rewards of `cells` (all with one).

    Raises:
        ValueError: `cells` is empty or a cell has no final reward.
    """
    values = [c.final_reward for c in cells]
    if not values or any(v is None for v in values):
        raise ValueError("lr_stats needs cells that all have a final reward")
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return LrStats(lr, statistics.fmean(values), std, len(values), sum(c.status == DIVERGED for c in cells),
                   ci95(values))


def by_adapter(cells: Iterable[CellReport]) -> list[AdapterRow]:
    """One row per (optimizer, adapter, r) group of cells, groups in order of first appearance, each at its best
    learning rate: the comparison of methods when each may have its own lr grid (a method's ranking depends on its
    learning rate being tuned, arXiv 2602.04998). The best lr is picked on the same final reward that the row
    reports, as `best_lrs` does (with one lr per method there is nothing to pick).

    Args:
        cells: cell reports (`load_cells`), of any status.

    Returns:
        One `AdapterRow` per group, also for a group without any counted cell (its `lr` and `mean` None, its
        `statuses` saying why).
    """
    groups: dict[tuple, list[CellReport]] = {}
    for cell in cells:
        groups.setdefault((cell.optimizer, cell.adapter, cell.r), []).append(cell)
    rows = []
    for (optimizer, adapter, r), members in groups.items():
        row = AdapterRow(optimizer, adapter, r, full=adapter == "full")
        for cell in members:
            row.statuses[cell.status] = row.statuses.get(cell.status, 0) + 1
        by_lr: dict[float | None, list[CellReport]] = {}
        for cell in members:
            if cell.counted:
                by_lr.setdefault(None if cell.lr is None else float(cell.lr), []).append(cell)
        best: list[CellReport] = []
        if by_lr:
            stats, top = best_of(by_lr)
            best = by_lr[top.lr]
            row.lr, row.n_lrs, row.mean, row.std, row.n, row.n_diverged, row.ci95 = (
                top.lr, len(stats), top.mean, top.std, top.n, top.n_diverged, top.ci95)
            row.finals = [c.final_reward for c in best]
            evaluated = [c for c in best if c.eval_avg is not None]
            if evaluated:
                row.evals = [c.eval_avg for c in evaluated]
                row.eval_avg, row.eval_ci95 = statistics.fmean(row.evals), ci95(row.evals)
                ks = {c.eval_k for c in evaluated}
                row.eval_k = ks.pop() if len(ks) == 1 else None
        ran = [c for c in (*best, *members) if c.status not in NOT_COUNTED]  # a failed run's figures are none
        for key in ("trainable_params", "total_params", "optimizer_state_bytes"):
            setattr(row, key, next((getattr(c, key) for c in ran if getattr(c, key) is not None), None))
        rows.append(row)
    return rows


def other_axis_names(cells: Iterable[CellReport]) -> list[str]:
    """The non-standard axes of the cells (e.g. `grpo.beta`), in order of first appearance."""
    names: dict[str, None] = {}
    for cell in cells:
        names.update(dict.fromkeys(cell.other_axes))
    return list(names)


def build_report(sweep_dir: Path) -> dict[str, Any]:
    """Everything `report.json` holds, read from the sweep directory alone.

    Args:
        sweep_dir: a sweep directory written by `rlvr sweep` (cells may still be pending or running).

    Returns:
        `{"name": str, "cells": [row, ...], "best_lr": [group, ...], "by_adapter": [group, ...], "comparisons":
        {"final_reward": [pair, ...], "eval": [pair, ...]}}`: one row per
        cell in manifest order (`CellReport.row`: name, optimizer, lr, adapter, r, seed, the other axes, status,
        final_reward, first_reward, frac_reward_zero_std, zero_grad_steps, global_step, eval_avg, eval_k,
        optimizer_state_bytes and optimizer_state_bytes_analytic (bytes),
        trainable_params, total_params, wall_time_s (seconds), peak_memory_bytes and memory_analytic_bytes
        (bytes), sparsity_tolerance, changed_frac_exact, changed_frac_tol, changed_frac_bf16_exact,
        changed_frac_bf16_tol (fractions in [0, 1]), reason, run_dir), one `BestLr` as a dict per
        (optimizer, adapter, r) group with data (`best_lr`), and one `AdapterRow` as a dict per (optimizer,
        adapter, r) group, with data or not (`by_adapter`), and Welch's t-test of every pair of those groups at
        their best learning rates (`comparisons`).

    Raises:
        BadInput: not a sweep directory (no manifest.json), or a manifest that does not parse (a cell's summary.json
            that does not parse makes that cell `unknown`).
    """
    name, cells = load_cells(sweep_dir)
    report = _report(name, cells)
    studies_ = read_search(sweep_dir)
    if studies_ is not None:
        report["search"] = search_summary(studies_, report["cells"])
    return report


def search_summary(studies_: dict[str, Any], rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The learning-rate search of a sweep, one entry per study (`rlvr_cli.sweeps.search.read_search`): its
    optimizer and cell, the best trial (`best_trial`, `best_lr`, `best_objective`: the highest objective among the
    completed trials), the trials by state, the optimizer steps its trials spent (`optimizer_steps`: each run's
    global_step, a pruned one's where it stopped) against the grid over the same range at `per_decade` points run
    to the end (`grid_optimizer_steps`), the bytes of the paused checkpoints deleted once their trials were final
    (`checkpoint_bytes`; sha only, else 0), and every trial (`trials`: number, lr, status, objective, `stopped_at`:
    the optimizer step a pruned trial stopped at, `optimizer_steps`, `checkpoint_bytes`)."""
    cell_of = {(r.get("study"), r.get("trial")): r for r in rows}  # a trial's cell carries its study and number
    out = []
    for name, st in studies_.items():
        attrs, trials = st["attrs"], st["trials"]
        lo, hi, per_decade = attrs.get("lr_min"), attrs.get("lr_max"), attrs.get("per_decade", 1)
        grid_points = len(log_grid(lo, hi, per_decade)) if lo and hi else None
        max_steps = attrs.get("max_steps")
        table = []
        for t in trials:
            row = cell_of.get((name, t["number"]), {})
            steps = [int(s) for s in t["intermediate"]]
            table.append({"number": t["number"], "lr": t["lr"], "state": t["state"], "status": t["status"],
                          "objective": t["value"] if t["value"] is not None else
                          (t["intermediate"].get(str(max(steps))) if steps else None),
                          "stopped_at": max(steps) if t["state"] == "pruned" and steps else None,
                          "optimizer_steps": t.get("optimizer_steps"), "closed": t["closed"], "run": row.get("name"),
                          "checkpoint_bytes": t.get("checkpoint_bytes")})
        done = [t for t in table if t["state"] == "complete" and t["objective"] is not None]
        best = max(done, key=lambda t: t["objective"]) if done else None
        out.append({"study": name, "optimizer": name.split("/")[1] if "/" in name else None,
                    "cell": name.split("/", 2)[2] if name.count("/") >= 2 else None,
                    "best_trial": best["number"] if best else None, "best_lr": best["lr"] if best else None,
                    "best_objective": best["objective"] if best else None,
                    "states": {s: sum(t["state"] == s for t in table) for s in sorted({t["state"] for t in table})},
                    "optimizer_steps": sum(t["optimizer_steps"] or 0 for t in table),
                    "checkpoint_bytes": sum(t["checkpoint_bytes"] or 0 for t in table),
                    "grid_optimizer_steps": grid_points * max_steps if grid_points and max_steps else None,
                    "max_steps": max_steps, "pruner": attrs.get("pruner"), "sampler": attrs.get("sampler"),
                    "trials": table})
    return out


def write_csv(report: dict[str, Any], path: Path) -> None:
    """Write the report's cells as CSV, one row per cell, columns in `CellReport.row` order; None is empty.

    Args:
        report: `build_report`'s dict.
        path: the CSV file to write (its parent must exist).

    Raises:
        OSError: the file cannot be written.
    """
    rows = report["cells"]
    columns = list(rows[0]) if rows else ["name", *STANDARD_AXES, *FIGURES]
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: "" if v is None else v for k, v in row.items()})


def write_by_adapter_csv(report: dict[str, Any], path: Path) -> None:
    """Write the report's `by_adapter` rows as CSV, one row per (optimizer, adapter, r), columns in `AdapterRow`
    order; `statuses` as `completed:1 failed:1`; None is empty.

    Raises:
        OSError: the file cannot be written.
    """
    columns = [f.name for f in fields(AdapterRow)]
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        for row in report["by_adapter"]:
            flat = {**row, "statuses": " ".join(f"{k}:{v}" for k, v in row["statuses"].items())}
            writer.writerow({k: "" if v is None else v for k, v in flat.items()})


def several_adapters(report: dict[str, Any]) -> bool:
    """Whether the sweep's cells differ by adapter (two or more adapter names): then `rlvr report` prints the
    per-adapter table and draws reward_by_adapter.png."""
    return len({row["adapter"] for row in report["by_adapter"]}) > 1


def write_json(report: dict[str, Any], path: Path) -> None:
    """Write `build_report`'s dict to `path` as indented JSON (strict: no NaN), atomically (temp file, rename).

    Raises:
        OSError: the file cannot be written. ValueError: a non-finite float in an axis value.
    """
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(report, indent=2, allow_nan=False) + "\n")
    tmp.replace(path)


def write_report(sweep_dir: Path, report: dict[str, Any]) -> list[Path]:
    """Write `REPORT_FILES` into the sweep directory: report.csv (`write_csv`), report_by_adapter.csv
    (`write_by_adapter_csv`) and report.json (`write_json`).

    Args:
        sweep_dir: the sweep directory (it exists: it holds manifest.json).
        report: `build_report(sweep_dir)`.

    Returns:
        The paths written, in `REPORT_FILES` order.

    Raises:
        OSError: a file cannot be written. ValueError: a non-finite float in an axis value (report.json).
    """
    paths = [Path(sweep_dir) / name for name in REPORT_FILES]
    write_csv(report, paths[0])
    write_by_adapter_csv(report, paths[1])
    write_json(report, paths[2])
    return paths


# ---------------------------------------------------------------------------------------------- internals


def _report(name: str, cells: list[CellReport]) -> dict[str, Any]:
    other = other_axis_names(cells)
    best = [{k: finite(v) for k, v in asdict(b).items()} for b in best_lrs(cells)]
    for b in best:
        b["lrs"] = [{k: finite(v) for k, v in s.items()} for s in b["lrs"]]
    rows = by_adapter(cells)
    adapters = [{k: finite(v) for k, v in asdict(row).items()} for row in rows]
    return {"name": name, "cells": [c.row(other) for c in cells], "best_lr": best, "by_adapter": adapters,
            "comparisons": comparisons(rows)}


def comparisons(rows: list[AdapterRow]) -> dict[str, list[dict[str, Any]]]:
    """Whether the settings of a sweep differ beyond seed noise, each at its best learning rate: Welch's t-test
    (`rlvr_cli.sweeps.significance.compare`) for every pair of `by_adapter` rows with final rewards, on the final
    reward (`final_reward`) and, where both were evaluated, on eval avg@k (`eval`). Rows are labelled
    `optimizer adapter[ r=R] lr LR`. Empty lists when fewer than two rows have values."""
    def label(row: AdapterRow) -> str:
        return f"{row.optimizer} {row.adapter}" + (f" r={row.r}" if row.r else "") + f" lr {row.lr:g}"

    ranked = [row for row in rows if row.finals and row.lr is not None]
    return {"final_reward": compare([(label(row), row.finals) for row in ranked]),
            "eval": compare([(label(row), row.evals) for row in ranked if row.evals])}
