"""What `rlvr report SWEEP_DIR` prints (and `rlvr sweep` after its cells): the Rich tables of a sweep report
and `report_command`, which prints them while `rlvr_cli.sweeps.comparison` writes the report files and
`rlvr_cli.sweeps.plots` the plots. Tables go through `rlvr_cli.cli.output.print_table`, so no figure is split
across lines."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from rlvr_cli.cli.output import print_table, status_colour, stdout_console
from rlvr_cli.core.errors import BadInput, one_line
from rlvr_cli.core.run_dir import DEAD, DIVERGED, FAILED, UNKNOWN
from rlvr_cli.core.units import human_bytes, percent
from rlvr_cli.sweeps.cells import FIGURES, STANDARD_AXES
from rlvr_cli.sweeps.comparison import REPORT_FILES, build_report, several_adapters, write_report
from rlvr_cli.sweeps.plots import write_plots

#: Statuses whose reason `report_command` prints under the table.
EXPLAINED = (DIVERGED, FAILED, DEAD, UNKNOWN)


def report_command(sweep_dir: Path, console: Console | None = None, quiet: bool = False) -> dict[str, Any]:
    """`rlvr report SWEEP_DIR`: print the cells and best-lr tables (and the per-adapter table when the cells
    differ by adapter), write report.csv, report_by_adapter.csv, report.json (`rlvr_cli.sweeps.comparison.write_report`)
    and the plots (`rlvr_cli.sweeps.plots.write_plots`) into the sweep directory, and print where they are.

    Args:
        sweep_dir: a sweep directory written by `rlvr sweep`.
        console: where to print; default `rlvr_cli.cli.output.stdout_console()` (as wide as the terminal, or
            wide enough for whole rows when stdout is not a terminal).
        quiet: print nothing (`rlvr report --json` prints the returned dict instead).

    Returns:
        The report (`rlvr_cli.sweeps.comparison.build_report`; what report.json holds).

    Raises:
        BadInput: not a sweep directory (no manifest.json), a manifest that does not parse, or a report file or
            `plots` of the wrong kind (`check_outputs`). The message is one line; nothing is written then.
            A cell whose summary.json does not parse is shown `unknown`,
            with the parse error.
        OSError: a report file or plot cannot be written.
    """
    sweep_dir = Path(sweep_dir)
    console = console or stdout_console()
    report = build_report(sweep_dir)
    check_outputs(sweep_dir)
    if not quiet:
        print_tables(report, console)
    files = write_report(sweep_dir, report)
    plots = write_plots(sweep_dir, report)
    if not quiet:
        print_files(files, sweep_dir / "plots", plots, console)
    return report


def check_outputs(sweep_dir: Path) -> None:
    """Refuse to report into a sweep directory where a report file (`REPORT_FILES`) is a directory or `plots` is
    not one, before anything is written.

    Raises:
        BadInput: naming the path and the fix. One line.
    """
    for path in [sweep_dir / name for name in REPORT_FILES]:
        if path.is_dir():
            raise BadInput(f"{path} is a directory, where rlvr report writes a file; move it away")
    plots = sweep_dir / "plots"
    if plots.exists() and not plots.is_dir():
        raise BadInput(f"{plots} is a file, where rlvr report writes its plots; move it away")


def print_tables(report: dict[str, Any], console: Console) -> None:
    """Print a report's tables on `console`: the cells (`cells_table`), one red line per cell whose status is in
    `EXPLAINED` with its reason (one line, at most 240 characters), the best learning rates (`best_lr_table`, or a
    yellow line when no cell has a final reward yet) and, when the cells differ by adapter, `adapter_table`.

    Args:
        report: `rlvr_cli.sweeps.comparison.build_report`'s dict.
        console: the Rich console to print on.
    """
    print_table(cells_table(report), console)
    for row in report["cells"]:
        if row["status"] in EXPLAINED and row["reason"]:
            reason = escape(one_line(row["reason"], limit=240))
            console.print(f"[red]{row['status']}[/] {escape(row['name'])}: {reason}", highlight=False)
    if report["best_lr"]:
        print_table(best_lr_table(report), console)
    else:
        console.print("best learning rate: no cell has a final reward yet", style="yellow")
    if several_adapters(report):
        print_table(adapter_table(report), console)
    if any(report.get("comparisons", {}).values()):
        print_table(comparison_table(report), console)
    if report.get("search"):
        print_table(search_table(report), console)


def search_table(report: dict[str, Any]) -> Table:
    """A Rich table with one row per study of a learning-rate search (`report["search"]`): the best learning rate
    and its trial and objective, the trials by state (`pruned@STEP` for each pruned one), and the optimizer steps
    the trials spent against the grid over the same range run to the end, and the bytes of the paused checkpoints
    deleted (sha). Figures never wrap."""
    table = Table(title="learning-rate search: best trial per study (objective: mean reward over the last quarter of "
                        "the steps)")
    for col in ("study", "best lr", "trial", "objective", "trials", "optimizer steps: search / grid",
                "checkpoints deleted"):
        table.add_column(col, justify="left" if col in ("study", "trials") else "right",
                         no_wrap=col not in ("study", "trials"))
    for st in report["search"]:
        states = " ".join(f"{k}:{v}" for k, v in st["states"].items())
        stops = " ".join(f"pruned@{t['stopped_at']}" for t in st["trials"] if t["stopped_at"] is not None)
        grid = st["grid_optimizer_steps"]
        share = f" ({st['optimizer_steps'] / grid:.0%})" if grid else ""
        table.add_row(Text(st["study"]), _fmt(st["best_lr"], "g"), _fmt(st["best_trial"]),
                      _reward(st["best_objective"]), Text(states + (f"\n{stops}" if stops else "")),
                      f"{st['optimizer_steps']} / {_fmt(grid)}{share}",
                      human_bytes(st.get("checkpoint_bytes")) if st.get("checkpoint_bytes") else "-")
    return table


def print_files(files: list[Path], plots_dir: Path, plots: dict[str, str | None], console: Console) -> None:
    """Print where the report went: one `report: ...` line with the report files, then one line per plot, its
    path or why it was skipped.

    Args:
        files: the report files written (`rlvr_cli.sweeps.comparison.write_report`).
        plots_dir: the directory of the plots (`SWEEP_DIR/plots`).
        plots: `rlvr_cli.sweeps.plots.write_plots`'s result: file name -> None when written, else why it was not.
        console: the Rich console to print on.
    """
    console.print("report: " + "  ".join(escape(str(f)) for f in files), highlight=False)
    for name, skipped in plots.items():
        line = f"plot: {plots_dir / name}" if skipped is None else f"plot {name} skipped: {skipped}"
        console.print(escape(line), highlight=False)


def cells_table(report: dict[str, Any]) -> Table:
    """A Rich table with one row per cell: name, axes, status (coloured), final reward, the learning signal (the
    mean share of groups with all-equal rewards, and the steps with a zero gradient of all steps), eval avg@k (only
    when some cell has one), optimizer state and peak memory each as measured / analytic (decimal units,
    `human_bytes`: 1 GB = 1e9 bytes), the percentage of weights changed (beyond the tolerance, as stored /
    after a bf16 cast), trainable parameters and wall time (s). A figure a cell's summary lacks is `-`.
    Figure columns never wrap (print it with `rlvr_cli.cli.output.print_table` to keep them whole)."""
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
    table.add_column("equal groups", justify="right", no_wrap=True)
    table.add_column("zero-grad steps", justify="right", no_wrap=True)
    if eval_header:
        table.add_column(eval_header, justify="right", no_wrap=True)
    tolerances = {row["sparsity_tolerance"] for row in rows if row["sparsity_tolerance"] is not None}
    tolerance = f"{tolerances.pop():g}" if len(tolerances) == 1 else "tol"
    for col in ("optimizer state", "peak memory", f"changed > {tolerance}", "trainable params", "wall time (s)"):
        table.add_column(col, justify="right", no_wrap=True)
    table.caption = ("optimizer state, peak memory: measured / analytic (rlvr memory; analytic peak = weights + "
                     "gradients + optimizer states + master weights, no activations). changed: % of weights that "
                     f"differ from the initial ones by more than {tolerance}, as stored / after a bf16 cast "
                     "(update sparsity = 100% - changed). equal groups: mean share of GRPO groups whose rewards "
                     "were all equal (no advantage); zero-grad steps: steps with gradient norm 0, of all steps.")
    for row in rows:
        status = row["status"]
        cells: list[Any] = [Text(row["name"]), *(Text(_fmt(row[a])) for a in (*STANDARD_AXES, *other)),
                            Text(status, style=status_colour(status)),
                            _reward(row["final_reward"]),
                            _fmt(row["frac_reward_zero_std"], ".0%"),
                            "-" if row["zero_grad_steps"] is None else f"{row['zero_grad_steps']} / "
                                                                       f"{_fmt(row['global_step'])}"]
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
    n seeds and the 95% confidence interval of that mean (`[lo, hi]`, Student's t; `-` for one seed), how many of
    those diverged, and every lr tried with its mean (one `lr: mean` per line). Figure columns never wrap."""
    table = Table(title="best learning rate per optimizer and adapter (mean final reward over seeds)")
    for col in ("optimizer", "adapter", "r", "best lr", "final reward", "95% CI", "n", "diverged", "lr: mean"):
        table.add_column(col, justify="left" if col in ("optimizer", "adapter", "lr: mean") else "right",
                         no_wrap=col not in ("optimizer", "adapter"))
    for b in report["best_lr"]:
        tried = "\n".join(f"{s['lr']:g}: {_reward(s['mean'])}" for s in b["lrs"])
        table.add_row(Text(_fmt(b["optimizer"])), Text(_fmt(b["adapter"])), _fmt(b["r"]), f"{b['lr']:g}",
                      f"{_reward(b['mean'])} ± {_reward(b['std'])}", _interval(b["mean"], b.get("ci95")), str(b["n"]),
                      str(b["n_diverged"]), Text(tried))
    return table


def comparison_table(report: dict[str, Any]) -> Table:
    """A Rich table with one row per pair of settings at their best learning rates (`report["comparisons"]`): the
    figure compared (final reward; eval avg@k where both were evaluated), the two settings with their means and
    seed counts, the difference, and Welch's t-test p-value, with whether it is below 0.05 (the difference exceeds
    the seed noise) or not. Figure columns never wrap."""
    table = Table(title="differences at the best learning rates: beyond seed noise? (Welch's t-test, scipy)")
    for col in ("figure", "setting a", "setting b", "a - b", "p-value", "beyond noise (p < 0.05)"):
        table.add_column(col, justify="left" if col.startswith(("figure", "setting", "beyond")) else "right",
                         no_wrap=not col.startswith("setting"))
    for figure, pairs in report.get("comparisons", {}).items():
        for c in pairs:
            p = c["p_value"]
            verdict = "-" if p is None else ("yes" if c["significant"] else "no")
            table.add_row(figure.replace("_", " "), Text(f"{c['a']}: {_reward(c['mean_a'])} (n={c['n_a']})"),
                          Text(f"{c['b']}: {_reward(c['mean_b'])} (n={c['n_b']})"), f"{c['difference']:+.3f}",
                          "-" if p is None else f"{p:.3g}", verdict)
    table.caption = ("p-value: how often seed noise alone gives a difference at least this large (two-sided); '-': "
                     "fewer than 2 seeds on a side, or no spread at all")
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
    columns = ["method", "r", "optimizer", "lr", "final reward", "95% CI", "n", "diverged",
               *([eval_header] if eval_header else []), "trainable params", "optimizer state", "cells"]
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
        cells: list[Any] = [method, _fmt(row["r"]), Text(_fmt(row["optimizer"])), lr, reward,
                            _interval(row["mean"], row.get("ci95")), str(row["n"]), str(row["n_diverged"])]
        if eval_header:
            value = _reward(row["eval_avg"])
            if row.get("eval_ci95") is not None:
                value += f" ± {_reward(row['eval_ci95'])}"
            cells.append(value if len(ks) <= 1 or row["eval_avg"] is None else f"{value} (k={row['eval_k']})")
        cells += [trainable, human_bytes(row["optimizer_state_bytes"]), statuses]
        table.add_row(*cells)
    return table


def _fmt(value: Any, spec: str = "") -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and not spec:
        return f"{value:g}"
    return format(value, spec)


def _pair(measured: Any, analytic: Any, fmt: Any) -> str:
    """`measured / analytic`, each formatted by `fmt`; `-` when both are None."""
    return "-" if measured is None and analytic is None else f"{fmt(measured)} / {fmt(analytic)}"


def _interval(mean: float | None, half: float | None) -> str:
    """`[lo, hi]` of a mean and the half-width of its confidence interval, 3 decimals; `-` without one."""
    return "-" if mean is None or half is None else f"[{mean - half:.3f}, {mean + half:.3f}]"


def _reward(value: float | None) -> str:
    """3 decimals; 4 significant digits for a reward too large for that (a diverged run's)."""
    if value is None:
        return "-"
    return f"{value:.3f}" if abs(value) < 1e6 else f"{value:.4g}"
