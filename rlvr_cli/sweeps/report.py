"""`rlvr report SWEEP_DIR`: one table, one CSV, one JSON and three plots for a sweep, from its directory alone.

    SWEEP_DIR/
        manifest.json    the cells: name, run_dir (relative to SWEEP_DIR), overrides, axes   (read)
        runs/<cell>/     one `rlvr train` run directory per cell: summary.json, metrics.jsonl  (read)
        report.csv       one row per cell                                                      (written)
        report_by_adapter.csv  one row per adapter (method): `by_adapter`                      (written)
        report.json      {"name", "cells": [...], "best_lr": [...], "by_adapter": [...]}       (written)
        plots/           reward_vs_lr.png, reward_curves.png, reward_vs_rank.png,              (written)
                         reward_by_adapter.png

A cell whose run directory or `summary.json` does not exist yet is `pending`; one whose `summary.json` does not
parse is `unknown`; a `running` one whose process is gone is `dead` (`rlvr_cli.core.run_dir.liveness`; its
reason names the process and its last heartbeat); every other status is the one its `summary.json` gives
(running, completed, diverged, interrupted, failed). The "final reward"
of a cell is its `reward_mean_last_quarter`: the mean reward per completion over the last quarter of the
optimizer steps. W&B is never read.

A sweep whose cells differ by adapter (full fine-tuning and PEFT methods, e.g. sweeps/peft_methods.yaml) also gets
one row per adapter: each (optimizer, adapter, r) at its best learning rate (`by_adapter`), printed, in
report_by_adapter.csv and as the bar chart reward_by_adapter.png.
"""

from __future__ import annotations

import csv
import json
import math
import statistics
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from rlvr_cli.analysis.sparsity import KINDS
from rlvr_cli.core.errors import one_line
from rlvr_cli.core.run_dir import DEAD, DIVERGED, FAILED, PENDING, UNKNOWN, read_metrics, run_state
from rlvr_cli.core.units import human_bytes, percent, print_table, status_colour, stdout_console
from rlvr_cli.sweeps.manifest import read_manifest

#: The axes every cell has a value for (from the manifest, else from its summary.json), in table order.
STANDARD_AXES = ("optimizer", "lr", "adapter", "r", "seed")
#: The fractions of weights changed since the start that summary.json's `update_sparsity` holds.
CHANGED = tuple(f"changed_frac_{kind}" for kind in KINDS)
#: The per-cell figures after the axes, in CSV / JSON order.
FIGURES = ("status", "final_reward", "first_reward", "eval_avg", "eval_k", "optimizer_state_bytes",
           "optimizer_state_bytes_analytic", "trainable_params", "total_params", "wall_time_s", "peak_memory_bytes",
           "memory_analytic_bytes", "sparsity_tolerance", *CHANGED, "reason", "run_dir")
#: Statuses whose final reward never counts (a failed or dead run's numbers are not a result; a pending or unknown
#: one has none).
NOT_COUNTED = (FAILED, PENDING, DEAD, UNKNOWN)
#: Statuses whose reason `report_command` prints under the table.
EXPLAINED = (DIVERGED, FAILED, DEAD, UNKNOWN)


@dataclass
class CellReport:
    """One cell of a sweep as the report sees it.

    `optimizer`, `lr`, `adapter`, `r` and `seed` are the manifest's axis values, or the run's own
    (`summary.json`) where the manifest has none (a sweep without that axis runs the default);
    `other_axes` holds the manifest's remaining axes (e.g. `{"grpo.beta": 0.04}`). Rewards are mean
    rewards per completion; bytes are bytes; `wall_time_s` is seconds. Absent values are None (summaries
    written before a field existed too).

    Memory, measured beside computed (`rlvr_cli.analysis.memory`): `optimizer_state_bytes` (the optimizer's state
    tensors) and `optimizer_state_bytes_analytic`; `peak_memory_bytes` (peak GPU memory allocated, or peak RSS
    on CPU: activations and everything else included) and `memory_analytic_bytes` (weights + gradients +
    optimizer states + master weights). Update sparsity (summary.json's `update_sparsity`, arXiv 2505.11711):
    `changed_frac_*` are fractions in [0, 1] of the weights that differ from the initial weights, exactly
    (`exact`) or by more than `sparsity_tolerance` (`tol`), on the weights as stored or after a bf16 cast
    (`bf16_*`); update sparsity is 1 - the changed fraction.
    """

    name: str
    run_dir: str
    optimizer: str | None = None
    lr: float | None = None
    adapter: str | None = None
    r: int | None = None
    seed: int | None = None
    other_axes: dict[str, Any] = field(default_factory=dict)
    status: str = PENDING
    final_reward: float | None = None
    first_reward: float | None = None
    eval_avg: float | None = None
    eval_k: int | None = None
    optimizer_state_bytes: int | None = None
    trainable_params: int | None = None
    total_params: int | None = None
    wall_time_s: float | None = None
    peak_memory_bytes: int | None = None
    optimizer_state_bytes_analytic: int | None = None
    memory_analytic_bytes: int | None = None
    sparsity_tolerance: float | None = None
    changed_frac_exact: float | None = None
    changed_frac_tol: float | None = None
    changed_frac_bf16_exact: float | None = None
    changed_frac_bf16_tol: float | None = None
    reason: str | None = None

    @property
    def counted(self) -> bool:
        """Whether the cell's final reward enters the best-learning-rate means."""
        return self.status not in NOT_COUNTED and self.final_reward is not None

    def row(self, other_axes: Iterable[str]) -> dict[str, Any]:
        """The cell as one flat record: `name`, the standard axes, each of `other_axes` (None when the cell
        lacks it), then `FIGURES`. Non-finite floats become None (JSON has no NaN)."""
        record = {"name": self.name, **{a: getattr(self, a) for a in STANDARD_AXES},
                  **{a: self.other_axes.get(a) for a in other_axes}, **{f: getattr(self, f) for f in FIGURES}}
        return {k: _finite(v) for k, v in record.items()}


@dataclass
class LrStats:
    """The final reward at one learning rate of a group: mean and sample standard deviation over its
    `n` counted cells (seeds; std 0 for one), and how many of them diverged."""

    lr: float
    mean: float
    std: float
    n: int
    n_diverged: int = 0


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


@dataclass
class AdapterRow:
    """One adapter setting of a sweep, i.e. one (optimizer, adapter, r) group of cells, at its best learning rate.

    `lr` is the best lr (highest mean final reward over the counted cells at that lr, ties: the smaller; None when
    no cell counts) and `n_lrs` how many learning rates had a counted cell; `mean`, `std` (sample standard
    deviation, 0 for one cell), `n` and `n_diverged` are over the counted cells (seeds) at that lr (`LrStats`);
    `eval_avg` is the mean pooled avg@`eval_k` (a fraction) of those that were evaluated. `trainable_params`,
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
    trainable_params: int | None = None
    total_params: int | None = None
    optimizer_state_bytes: int | None = None
    statuses: dict[str, int] = field(default_factory=dict)


def load_manifest(sweep_dir: Path) -> dict[str, Any]:
    """Read and check `SWEEP_DIR/manifest.json`: `rlvr_cli.sweeps.manifest.read_manifest`.

    Args:
        sweep_dir: a sweep directory written by `rlvr sweep`.

    Returns:
        The manifest: `name` (str) and `cells` (dicts with `name`, `run_dir`, `overrides` and `axes`).

    Raises:
        BadInput: the directory does not exist, holds no `manifest.json`, or the manifest does not parse
            (truncated, not JSON) or lacks `cells` / a cell's `name` or `run_dir`. The message is one line.
    """
    return dict(read_manifest(sweep_dir))


def read_cell(sweep_dir: Path, cell: dict[str, Any]) -> CellReport:
    """The report of one manifest cell, from its run directory's `summary.json` (`rlvr_cli.core.run_dir.run_state`):
    pending when there is none, unknown when it does not parse (the parse error is the reason), dead when its
    run was killed while running (the reason names its process and last heartbeat).

    Args:
        sweep_dir: the sweep directory; `cell["run_dir"]` is relative to it.
        cell: one entry of the manifest's `cells` (`name`, `run_dir`, optional `axes`).
    """
    axes = dict(cell.get("axes") or {})
    report = CellReport(name=cell["name"], run_dir=cell["run_dir"],
                        other_axes={k: v for k, v in axes.items() if k not in STANDARD_AXES})
    state = run_state(Path(sweep_dir) / cell["run_dir"])
    report.status = state.status
    summary: dict[str, Any] = dict(state.summary or {})
    for axis in STANDARD_AXES:
        value = axes.get(axis)
        setattr(report, axis, value if value is not None else summary.get(axis))
    if report.adapter == "full":
        report.r = None  # full fine-tuning has no rank, whatever the config carries
    report.final_reward = _number(summary.get("reward_mean_last_quarter"))
    report.first_reward = _number(summary.get("reward_mean_first_quarter"))
    report.eval_k, report.eval_avg = eval_avg(summary)
    for key in ("optimizer_state_bytes", "optimizer_state_bytes_analytic", "trainable_params", "total_params",
                "peak_memory_bytes", "memory_analytic_bytes"):
        setattr(report, key, _int(summary.get(key)))
    sparsity = summary.get("update_sparsity")
    if isinstance(sparsity, dict):
        report.sparsity_tolerance = _number(sparsity.get("tolerance"))
        for key in CHANGED:
            setattr(report, key, _number(sparsity.get(key)))
    report.wall_time_s = _number(summary.get("wall_time_s"))
    report.reason = state.note or summary.get("reason") or None
    return report


def load_cells(sweep_dir: Path) -> tuple[str, list[CellReport]]:
    """The sweep's name and its cells' reports, in manifest order.

    Raises:
        BadInput: as `load_manifest`.
    """
    manifest = load_manifest(sweep_dir)
    name = str(manifest.get("name") or Path(sweep_dir).name)
    return name, [read_cell(sweep_dir, cell) for cell in manifest["cells"]]


def eval_avg(summary: dict[str, Any]) -> tuple[int | None, float | None]:
    """The pooled evaluation score of a run: `(k, avg@k)` from `summary["eval"]["overall"]`, whatever k is.

    Args:
        summary: a run's summary.json as a dict; its optional `eval` is `{benchmark: {"avg@4": 0.25, ...},
            "overall": {...}}`.

    Returns:
        `(k, score)` with score a fraction in [0, 1], or `(None, None)` when the run has no evaluation.
    """
    overall = (summary.get("eval") or {}).get("overall") if isinstance(summary.get("eval"), dict) else None
    if not isinstance(overall, dict):
        return None, None
    for key, value in overall.items():
        if key.startswith("avg@") and key[4:].isdigit() and _number(value) is not None:
            return int(key[4:]), float(value)
    return None, None


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
        best.append(BestLr(optimizer, adapter, r, top.lr, top.mean, top.std, top.n, top.n_diverged, stats))
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
    return LrStats(lr, statistics.fmean(values), std, len(values), sum(c.status == DIVERGED for c in cells))


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
            row.lr, row.n_lrs, row.mean, row.std, row.n, row.n_diverged = (
                top.lr, len(stats), top.mean, top.std, top.n, top.n_diverged)
            evaluated = [c for c in best if c.eval_avg is not None]
            if evaluated:
                row.eval_avg = statistics.fmean(c.eval_avg for c in evaluated)
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
        `{"name": str, "cells": [row, ...], "best_lr": [group, ...], "by_adapter": [group, ...]}`: one row per
        cell in manifest order (`CellReport.row`: name, optimizer, lr, adapter, r, seed, the other axes, status,
        final_reward, first_reward, eval_avg, eval_k, optimizer_state_bytes and optimizer_state_bytes_analytic (bytes),
        trainable_params, total_params, wall_time_s (seconds), peak_memory_bytes and memory_analytic_bytes
        (bytes), sparsity_tolerance, changed_frac_exact, changed_frac_tol, changed_frac_bf16_exact,
        changed_frac_bf16_tol (fractions in [0, 1]), reason, run_dir), one `BestLr` as a dict per
        (optimizer, adapter, r) group with data (`best_lr`), and one `AdapterRow` as a dict per (optimizer,
        adapter, r) group, with data or not (`by_adapter`).

    Raises:
        BadInput: not a sweep directory (no manifest.json), or a manifest that does not parse (a cell's summary.json
            that does not parse makes that cell `unknown`).
    """
    name, cells = load_cells(sweep_dir)
    return _report(name, cells)


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


def cells_table(report: dict[str, Any]) -> Table:
    """A Rich table with one row per cell: name, axes, status (coloured), final reward, eval avg@k (only
    when some cell has one), optimizer state and peak memory each as measured / analytic (decimal units,
    `human_bytes`: 1 GB = 1e9 bytes), the percentage of weights changed (beyond the tolerance, as stored /
    after a bf16 cast), trainable parameters and wall time (s). A figure a cell's summary lacks is `-`.
    Figure columns never wrap (print it with `rlvr_cli.core.units.print_table` to keep them whole)."""
    rows = report["cells"]
    other = [k for k in (rows[0] if rows else {}) if k not in ("name", *STANDARD_AXES, *FIGURES)]
    counts: dict[str, int] = {}
    for row in rows:
        counts[row["status"]] = counts.get(row["status"], 0) + 1
    title = f"sweep {report['name']}: {len(rows)} cells (" + ", ".join(f"{n} {s}" for s, n in counts.items()) + ")"
    ks = {row["eval_k"] for row in rows if row["eval_avg"] is not None}
    eval_header = f"eval avg@{ks.pop()}" if len(ks) == 1 else "eval avg@k" if ks else None
    table = Table(title=escape(title))
    table.add_column("cell", no_wrap=True)
    for axis in (*STANDARD_AXES, *other):
        table.add_column(escape(axis), justify="right" if axis in ("lr", "r", "seed") else "left",
                         no_wrap=axis in ("lr", "r", "seed"))
    table.add_column("status")
    table.add_column("final reward", justify="right", no_wrap=True)
    if eval_header:
        table.add_column(eval_header, justify="right", no_wrap=True)
    tolerances = {row["sparsity_tolerance"] for row in rows if row["sparsity_tolerance"] is not None}
    tolerance = f"{tolerances.pop():g}" if len(tolerances) == 1 else "tol"
    for col in ("optimizer state", "peak memory", f"changed > {tolerance}", "trainable params", "wall time (s)"):
        table.add_column(col, justify="right", no_wrap=True)
    table.caption = ("optimizer state, peak memory: measured / analytic (rlvr memory; analytic peak = weights + "
                     "gradients + optimizer states + master weights, no activations). changed: % of weights that "
                     f"differ from the initial ones by more than {tolerance}, as stored / after a bf16 cast "
                     "(update sparsity = 100% - changed).")
    for row in rows:
        status = row["status"]
        cells: list[Any] = [Text(row["name"]), *(Text(_fmt(row[a])) for a in (*STANDARD_AXES, *other)),
                            Text(status, style=status_colour(status)),
                            _reward(row["final_reward"])]
        if eval_header:
            value = _reward(row["eval_avg"])
            cells.append(value if len(ks) <= 1 or row["eval_avg"] is None else f"{value} (k={row['eval_k']})")
        cells += [_pair(row["optimizer_state_bytes"], row["optimizer_state_bytes_analytic"], human_bytes),
                  _pair(row["peak_memory_bytes"], row["memory_analytic_bytes"], human_bytes),
                  _pair(row["changed_frac_tol"], row["changed_frac_bf16_tol"], percent),
                  _fmt(row["trainable_params"], ","), _fmt(row["wall_time_s"], ".1f")]
        table.add_row(*cells)
    return table


def best_lr_table(report: dict[str, Any]) -> Table:
    """A Rich table with one row per (optimizer, adapter, r): the best lr, its mean ± std final reward over
    n seeds, how many of those diverged, and every lr tried with its mean (one `lr: mean` per line). Figure
    columns never wrap."""
    table = Table(title="best learning rate per optimizer and adapter (mean final reward over seeds)")
    for col in ("optimizer", "adapter", "r", "best lr", "final reward", "n", "diverged", "lr: mean"):
        table.add_column(col, justify="right" if col in ("r", "best lr", "final reward", "n", "diverged") else "left",
                         no_wrap=col not in ("optimizer", "adapter"))
    for b in report["best_lr"]:
        tried = "\n".join(f"{s['lr']:g}: {_reward(s['mean'])}" for s in b["lrs"])
        table.add_row(Text(_fmt(b["optimizer"])), Text(_fmt(b["adapter"])), _fmt(b["r"]), f"{b['lr']:g}",
                      f"{_reward(b['mean'])} ± {_reward(b['std'])}", str(b["n"]), str(b["n_diverged"]), Text(tried))
    return table


def adapter_table(report: dict[str, Any]) -> Table:
    """A Rich table with one row per (optimizer, adapter, r) of `report["by_adapter"]`: the method (full
    fine-tuning marked), r, optimizer, the best lr (and how many were tried), the mean ± std final reward over
    the n counted seeds there (and how many diverged), the mean eval avg@k, trainable parameters (count and % of
    all), the measured optimizer state (decimal units), and the cells by status. Figure columns never wrap."""
    rows = report["by_adapter"]
    ks = {row["eval_k"] for row in rows if row["eval_avg"] is not None}
    eval_header = f"eval avg@{ks.pop()}" if len(ks) == 1 else "eval avg@k" if ks else None
    table = Table(title=escape(f"sweep {report['name']}: by adapter, each at its best learning rate "
                               "(mean final reward over seeds)"))
    columns = ["method", "r", "optimizer", "lr", "final reward", "n", "diverged", *([eval_header] if eval_header
               else []), "trainable params", "optimizer state", "cells"]
    for col in columns:
        table.add_column(col, justify="left" if col in ("method", "optimizer", "cells") else "right",
                         no_wrap=col not in ("method", "cells"))
    table.caption = ("lr: the learning rate with the highest mean final reward (of the n_lrs tried); final reward: "
                     "mean ± sample std over the seeds at that lr (last quarter of the steps); trainable params: "
                     "count (% of all); optimizer state: measured.")
    for row in rows:
        method = Text(_fmt(row["adapter"]))
        if row["full"]:
            method.append(" (full fine-tuning)", style="bold")
        lr = "-" if row["lr"] is None else f"{row['lr']:g}" + (f" (of {row['n_lrs']})" if row["n_lrs"] > 1 else "")
        reward = "-" if row["mean"] is None else f"{_reward(row['mean'])} ± {_reward(row['std'])}"
        trainable = _fmt(row["trainable_params"], ",")
        if row["trainable_params"] is not None and row["total_params"]:
            trainable += f" ({percent(row['trainable_params'] / row['total_params'])})"
        statuses = Text(", ".join(f"{n} {s}" for s, n in row["statuses"].items()),
                        style="" if set(row["statuses"]) <= {"completed"} else status_colour(
                            next(s for s in row["statuses"] if s != "completed")))
        cells: list[Any] = [method, _fmt(row["r"]), Text(_fmt(row["optimizer"])), lr, reward, str(row["n"]),
                            str(row["n_diverged"])]
        if eval_header:
            value = _reward(row["eval_avg"])
            cells.append(value if len(ks) <= 1 or row["eval_avg"] is None else f"{value} (k={row['eval_k']})")
        cells += [trainable, human_bytes(row["optimizer_state_bytes"]), statuses]
        table.add_row(*cells)
    return table


def write_plots(sweep_dir: Path, report: dict[str, Any]) -> dict[str, str | None]:
    """Draw the three plots into `SWEEP_DIR/plots/` (created) with matplotlib's Agg backend.

    - `reward_vs_lr.png`: final reward against learning rate (log x), one line per optimizer (per optimizer
      and adapter when the sweep has several adapter settings): mean over seeds with standard-deviation error
      bars, faint dots for the single cells; diverged and failed cells are drawn as an x at y = 0 and are not
      part of the lines.
    - `reward_curves.png`: mean reward per optimizer step (from metrics.jsonl) of the best cell of each
      optimizer (highest final reward, diverged and failed cells excluded).
    - `reward_vs_rank.png`: final reward at the best learning rate against adapter rank r (log2 x), one line
      per adapter (and optimizer when several); full fine-tuning of the same optimizers as a horizontal dashed
      line at its best learning rate.
    - `reward_by_adapter.png` (sweeps with several adapters): one bar per (optimizer, adapter, r) of
      `by_adapter`, the mean final reward at its best lr with the standard deviation over seeds as error bar
      (none for one seed), its value and n above it; full fine-tuning hatched and also drawn as a dashed line;
      a group without a result is an x at y = 0 labelled with its statuses.

    Args:
        sweep_dir: the sweep directory (run directories are read from it for the curves).
        report: `build_report(sweep_dir)`.

    Returns:
        File name -> None when written, else the reason it was skipped (no data).
    """
    import matplotlib

    matplotlib.use("Agg")
    out = Path(sweep_dir) / "plots"
    out.mkdir(parents=True, exist_ok=True)
    return {"reward_vs_lr.png": _plot_reward_vs_lr(report, out / "reward_vs_lr.png"),
            "reward_curves.png": _plot_reward_curves(Path(sweep_dir), report, out / "reward_curves.png"),
            "reward_vs_rank.png": _plot_reward_vs_rank(report, out / "reward_vs_rank.png"),
            "reward_by_adapter.png": _plot_reward_by_adapter(report, out / "reward_by_adapter.png")}


def report_command(sweep_dir: Path, console: Console | None = None, quiet: bool = False) -> dict[str, Any]:
    """`rlvr report SWEEP_DIR`: print the cells and best-lr tables (and the per-adapter table when the cells
    differ by adapter), write report.csv, report_by_adapter.csv, report.json and the plots into the sweep
    directory, and print where they are.

    Args:
        sweep_dir: a sweep directory written by `rlvr sweep`.
        console: where to print; default `rlvr_cli.core.units.stdout_console()` (as wide as the terminal, or
            wide enough for whole rows when stdout is not a terminal). Tables are printed with
            `rlvr_cli.core.units.print_table`, so no figure is split across lines.
        quiet: print nothing (`rlvr report --json` prints the returned dict instead).

    Returns:
        The report (`build_report`; what report.json holds).

    Raises:
        BadInput: not a sweep directory (no manifest.json), or a manifest that does not parse. The message is one
            line. A cell whose summary.json does not parse is shown `unknown`, with the parse error.
    """
    sweep_dir = Path(sweep_dir)
    console = console or stdout_console()
    report = build_report(sweep_dir)
    if not quiet:
        print_table(cells_table(report), console)
        for row in report["cells"]:
            if row["status"] in EXPLAINED and row["reason"]:
                reason = escape(one_line(row["reason"], limit=240))
                console.print(f"[red]{row['status']}[/] {escape(row['name'])}: {reason}",
                              highlight=False)
        if report["best_lr"]:
            print_table(best_lr_table(report), console)
        else:
            console.print("best learning rate: no cell has a final reward yet", style="yellow")
        if several_adapters(report):
            print_table(adapter_table(report), console)
    write_csv(report, sweep_dir / "report.csv")
    write_by_adapter_csv(report, sweep_dir / "report_by_adapter.csv")
    write_json(report, sweep_dir / "report.json")
    plots = write_plots(sweep_dir, report)
    if not quiet:
        files = ("report.csv", "report_by_adapter.csv", "report.json")
        console.print("report: " + "  ".join(escape(str(sweep_dir / f)) for f in files), highlight=False)
        for name, skipped in plots.items():
            line = f"plot: {sweep_dir / 'plots' / name}" if skipped is None else f"plot {name} skipped: {skipped}"
            console.print(escape(line), highlight=False)
    return report


def read_rewards(metrics_path: Path) -> tuple[list[int], list[float]]:
    """Optimizer steps and mean rewards from a metrics.jsonl; a null reward becomes NaN (a gap in a line).

    Lines that do not parse (a line being written) and records without `step` are skipped; a missing file
    gives two empty lists.
    """
    steps: list[int] = []
    values: list[float] = []
    for record in read_metrics(metrics_path):
        if record.get("step") is None:
            continue
        reward = _number(record.get("reward"))
        steps.append(int(record["step"]))
        values.append(math.nan if reward is None else reward)
    return steps, values


# ---------------------------------------------------------------------------------------------- internals


def _report(name: str, cells: list[CellReport]) -> dict[str, Any]:
    other = other_axis_names(cells)
    best = [{k: _finite(v) for k, v in asdict(b).items()} for b in best_lrs(cells)]
    for b in best:
        b["lrs"] = [{k: _finite(v) for k, v in s.items()} for s in b["lrs"]]
    adapters = [{k: _finite(v) for k, v in asdict(row).items()} for row in by_adapter(cells)]
    return {"name": name, "cells": [c.row(other) for c in cells], "best_lr": best, "by_adapter": adapters}


def _group_label(optimizer: Any, adapter: Any, r: Any, with_adapter: bool) -> str:
    if not with_adapter:
        return str(optimizer)
    return f"{optimizer} / {adapter}" + (f" r={r}" if r is not None else "")


def _plot_reward_vs_lr(report: dict[str, Any], path: Path) -> str | None:
    import matplotlib.pyplot as plt

    rows = [r for r in report["cells"] if r["lr"] is not None and r["lr"] > 0]
    good = [r for r in rows if r["final_reward"] is not None and r["status"] not in (DIVERGED, FAILED, PENDING)]
    bad = [r for r in rows if r["status"] in (DIVERGED, FAILED)]
    if not good and not bad:
        return "no cell with a learning rate has a final reward or has diverged / failed"
    settings = {(r["adapter"], r["r"]) for r in good + bad}
    with_adapter = len(settings) > 1
    lines: dict[str, dict[float, list[float]]] = {}
    for r in good:
        label = _group_label(r["optimizer"], r["adapter"], r["r"], with_adapter)
        lines.setdefault(label, {}).setdefault(float(r["lr"]), []).append(r["final_reward"])
    fig, ax = plt.subplots(figsize=(7, 4.5))
    colours: dict[str, Any] = {}
    for label, by_lr in lines.items():
        lrs = sorted(by_lr)
        means = [statistics.fmean(by_lr[lr]) for lr in lrs]
        stds = [statistics.stdev(by_lr[lr]) if len(by_lr[lr]) > 1 else 0.0 for lr in lrs]
        bars = ax.errorbar(lrs, means, yerr=stds, marker="o", capsize=3, label=f"{label} (mean ± std over seeds)")
        colours[label] = bars.lines[0].get_color()
        singles = [(lr, v) for lr in lrs for v in by_lr[lr]]
        ax.scatter([x for x, _ in singles], [y for _, y in singles], s=12, alpha=0.35, color=colours[label])
    if bad:
        for r in bad:
            label = _group_label(r["optimizer"], r["adapter"], r["r"], with_adapter)
            ax.scatter([r["lr"]], [0.0], marker="x", s=60, color=colours.get(label, "red"))
        ax.scatter([], [], marker="x", color="grey", label="diverged / failed cell (drawn at y = 0, not in the lines)")
    ax.set_xscale("log")
    _finish(fig, ax, path, "learning rate (log scale)", "final reward (mean per completion, last quarter of steps)",
            f"{report['name']}: final reward vs learning rate")
    return None


def _plot_reward_curves(sweep_dir: Path, report: dict[str, Any], path: Path) -> str | None:
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    best: dict[Any, dict[str, Any]] = {}
    for r in report["cells"]:
        if r["final_reward"] is None or r["status"] in (DIVERGED, FAILED, PENDING):
            continue
        if r["optimizer"] not in best or r["final_reward"] > best[r["optimizer"]]["final_reward"]:
            best[r["optimizer"]] = r
    curves = []
    for optimizer, r in best.items():
        steps, values = read_rewards(sweep_dir / r["run_dir"] / "metrics.jsonl")
        if steps:
            curves.append((optimizer, r, steps, values))
    if not curves:
        return "no completed cell has per-step rewards in its metrics.jsonl"
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for optimizer, r, steps, values in curves:
        ax.plot(steps, values, marker="o", markersize=3,
                label=f"{optimizer}: {r['name']} (final {r['final_reward']:.3f})")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    _finish(fig, ax, path, "optimizer step", "reward (mean per completion in the step)",
            f"{report['name']}: reward per step, best cell of each optimizer")
    return None


def _plot_reward_vs_rank(report: dict[str, Any], path: Path) -> str | None:
    import matplotlib.pyplot as plt

    ranked = [b for b in report["best_lr"] if b["adapter"] not in (None, "full") and b["r"] is not None]
    if not ranked:
        return "no adapter cell with a rank r has a final reward"
    with_adapters = {b["optimizer"] for b in ranked}
    full = [b for b in report["best_lr"] if b["adapter"] == "full" and b["optimizer"] in with_adapters]
    several = len({b["optimizer"] for b in ranked + full}) > 1
    lines: dict[str, list[dict[str, Any]]] = {}
    for b in ranked:
        lines.setdefault(f"{b['adapter']} ({b['optimizer']})" if several else str(b["adapter"]), []).append(b)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for label, points in lines.items():
        points.sort(key=lambda b: b["r"])
        ax.errorbar([b["r"] for b in points], [b["mean"] for b in points], yerr=[b["std"] for b in points],
                    marker="o", capsize=3, label=f"{label} (mean ± std over seeds at the best lr)")
    for i, b in enumerate(full):
        which = f" ({b['optimizer']})" if several else ""
        ax.axhline(b["mean"], linestyle="--", alpha=0.7, color=f"C{len(lines) + i}" if several else "black",
                   label=f"full fine-tuning{which} at its best lr {b['lr']:g}")
    ranks = sorted({b["r"] for b in ranked})
    ax.set_xscale("log", base=2)
    ax.set_xticks(ranks, [str(r) for r in ranks])
    _finish(fig, ax, path, "adapter rank r (log scale)", "final reward at the best lr (mean per completion)",
            f"{report['name']}: final reward vs adapter rank")
    return None


def _plot_reward_by_adapter(report: dict[str, Any], path: Path) -> str | None:
    import matplotlib.pyplot as plt

    rows = report["by_adapter"]
    if not several_adapters(report):
        return "the cells do not differ by adapter"
    if all(row["mean"] is None for row in rows):
        return "no adapter has a cell with a final reward"
    several_opt = len({row["optimizer"] for row in rows}) > 1
    fig, ax = plt.subplots(figsize=(max(7.0, 0.65 * len(rows) + 2), 4.8))
    xs = list(range(len(rows)))
    labels = []
    for x, row in zip(xs, rows, strict=True):
        label = str(row["adapter"]) + (f"\nr={row['r']}" if row["r"] is not None else "")
        label += f"\n{row['optimizer']}" if several_opt else ""
        if row["mean"] is None:  # no result: say why under the axis
            labels.append(label + "\n" + ", ".join(f"{n} {s}" for s, n in row["statuses"].items()))
            ax.scatter([x], [0.0], marker="x", s=60, color="red", zorder=3)
            continue
        labels.append(label + f"\nlr {row['lr']:g}" if row["lr"] is not None else label)
        err = _err(row)
        style = {"color": "0.6", "hatch": "//", "edgecolor": "black"} if row["full"] else {"color": "C0"}
        ax.bar([x], [row["mean"]], yerr=[err] if err else None, capsize=4, **style)
        ax.annotate(f"{row['mean']:.3f}\nn={row['n']}", (x, max(row["mean"] + err, 0.0)), textcoords="offset points",
                    xytext=(0, 3), ha="center", fontsize=7)
    for row in rows:
        if row["full"] and row["mean"] is not None:
            which = f" ({row['optimizer']})" if several_opt else ""
            ax.axhline(row["mean"], linestyle="--", color="black", alpha=0.6,
                       label=f"full fine-tuning{which} (hatched bar, dashed line): {row['mean']:.3f}")
    ax.bar([], [], color="C0", label="adapter: mean final reward at its best lr (error bar: std over seeds)")
    if any(row["mean"] is None for row in rows):
        ax.scatter([], [], marker="x", color="red", label="no result (why: under the axis), drawn at y = 0")
    values = [v for row in rows if row["mean"] is not None for v in (row["mean"] - _err(row), row["mean"] + _err(row))]
    lo, hi = min(0.0, *values), max(0.0, *values)
    span = (hi - lo) or 1.0
    ax.set_ylim(lo - 0.05 * span if lo < 0 else 0.0, hi + 0.15 * span)  # room for the values above the bars
    ax.set_xticks(xs, labels, fontsize=8)
    ax.set_xlim(-0.6, len(rows) - 0.4)
    _finish(fig, ax, path, "adapter (method)", "final reward (last quarter of steps)",
            f"{report['name']}: final reward by adapter", legend_below=True)
    return None


def _err(row: dict[str, Any]) -> float:
    """The error bar of a `by_adapter` row: the std over its seeds, 0 for one seed."""
    return row["std"] if row["n"] > 1 and row["std"] is not None else 0.0


def _finish(fig: Any, ax: Any, path: Path, xlabel: str, ylabel: str, title: str, legend_below: bool = False) -> None:
    """Label, grid, legend (inside, or under the plot with `legend_below`), save as PNG (120 dpi) and close a plot."""
    import matplotlib.pyplot as plt

    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    if legend_below:
        ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.3), frameon=False)
    else:
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120, bbox_inches="tight" if legend_below else None)
    plt.close(fig)


def _fmt(value: Any, spec: str = "") -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and not spec:
        return f"{value:g}"
    return format(value, spec)


def _pair(measured: Any, analytic: Any, fmt: Any) -> str:
    """`measured / analytic`, each formatted by `fmt`; `-` when both are None."""
    return "-" if measured is None and analytic is None else f"{fmt(measured)} / {fmt(analytic)}"


def _reward(value: float | None) -> str:
    """3 decimals; 4 significant digits for a reward too large for that (a diverged run's)."""
    if value is None:
        return "-"
    return f"{value:.3f}" if abs(value) < 1e6 else f"{value:.4g}"


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def _int(value: Any) -> int | None:
    number = _number(value)
    return None if number is None else int(number)


def _finite(value: Any) -> Any:
    return None if isinstance(value, float) and not math.isfinite(value) else value


