"""The plots of `rlvr report SWEEP_DIR`: matplotlib figures (Agg backend, PNG at 120 dpi) of a report, into
`SWEEP_DIR/plots/`.

    reward_vs_lr.png       final reward against learning rate, one line per optimizer (and adapter)
    reward_curves.png      reward per optimizer step of each optimizer's best cell (from its metrics.jsonl)
    reward_vs_rank.png     final reward at the best learning rate against adapter rank r
    reward_by_adapter.png  one bar per (optimizer, adapter, r) at its best learning rate (sweeps with several adapters)

The report is `rlvr_cli.sweeps.comparison.build_report`'s dict; a plot without data is skipped with its reason.
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

from rlvr_cli.core.run_dir import DIVERGED, FAILED, PENDING
from rlvr_cli.sweeps.cells import read_rewards
from rlvr_cli.sweeps.comparison import several_adapters
from rlvr_cli.sweeps.significance import ci95


def write_plots(sweep_dir: Path, report: dict[str, Any]) -> dict[str, str | None]:
    """Draw the four plots into `SWEEP_DIR/plots/` (created) with matplotlib's Agg backend, as PNG at 120 dpi.

    - `reward_vs_lr.png`: final reward against learning rate (log x), one line per optimizer (per optimizer
      and adapter when the sweep has several adapter settings): mean over seeds with standard-deviation error
      bars, faint dots for the single cells; diverged and failed cells are drawn as an x at y = 0 and are not
      part of the lines.
    - `reward_curves.png`: mean reward per optimizer step (from metrics.jsonl) of the best cell of each
      optimizer (highest final reward, diverged and failed cells excluded).
    - `reward_vs_rank.png`: final reward at the best learning rate against adapter rank r (log2 x), one line
      per adapter (and optimizer when several); full fine-tuning of the same optimizers as a horizontal dashed
      line at its best learning rate.
    - `reward_by_adapter.png` (sweeps with several adapters): one bar per (optimizer, adapter, r) of the report's
      `by_adapter` (`rlvr_cli.sweeps.comparison.by_adapter`), the mean final reward at its best lr with the standard
      deviation over seeds as error bar (none for one seed), its value and n above it; full fine-tuning hatched
      and also drawn as a dashed line; a group without a result is an x at y = 0 labelled with its statuses.
    - a learning-rate search (`report["search"]`) adds `search_objective_vs_lr.png`: each trial's objective against
      its learning rate (log x), one colour per study; completed trials as dots (the best ringed), pruned ones as
      an x at the value they were pruned with, labelled with the step; and `search_trial_curves.png`: every
      trial's reward per optimizer step (metrics.jsonl), pruned trials ending where they stopped (dashed).

    Args:
        sweep_dir: the sweep directory (run directories are read from it for the curves).
        report: `rlvr_cli.sweeps.comparison.build_report(sweep_dir)`.

    Returns:
        File name -> None when written, else the reason it was skipped (no data), in the order above.

    Raises:
        OSError: `SWEEP_DIR/plots` or a PNG cannot be written.
    """
    import matplotlib

    matplotlib.use("Agg")
    out = Path(sweep_dir) / "plots"
    out.mkdir(parents=True, exist_ok=True)
    return {"reward_vs_lr.png": _plot_reward_vs_lr(report, out / "reward_vs_lr.png"),
            "reward_curves.png": _plot_reward_curves(Path(sweep_dir), report, out / "reward_curves.png"),
            "reward_vs_rank.png": _plot_reward_vs_rank(report, out / "reward_vs_rank.png"),
            "reward_by_adapter.png": _plot_reward_by_adapter(report, out / "reward_by_adapter.png"),
            **({"search_objective_vs_lr.png": _plot_search_objective(report, out / "search_objective_vs_lr.png"),
                "search_trial_curves.png": _plot_search_curves(Path(sweep_dir), report,
                                                              out / "search_trial_curves.png")}
               if report.get("search") else {})}


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
        cis = [ci95(by_lr[lr]) or 0.0 for lr in lrs]
        bars = ax.errorbar(lrs, means, yerr=cis, marker="o", capsize=3,
                           label=f"{label} (mean ± 95% CI over seeds)")
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
        ax.errorbar([b["r"] for b in points], [b["mean"] for b in points], yerr=[b.get("ci95") or 0.0 for b in points],
                    marker="o", capsize=3, label=f"{label} (mean ± 95% CI over seeds at the best lr)")
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
    ax.bar([], [], color="C0", label="adapter: mean final reward at its best lr (error bar: 95% CI over seeds)")
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
    """The error bar of a `by_adapter` row: the half-width of the 95% confidence interval of its mean over seeds
    (Student's t, `rlvr_cli.sweeps.significance.ci95`), 0 for one seed."""
    return row.get("ci95") or 0.0


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


def _plot_search_objective(report: dict[str, Any], path: Path) -> str | None:
    import matplotlib.pyplot as plt

    studies = [s for s in report["search"] if any(t["objective"] is not None and t["state"] in ("complete", "pruned")
                                                  for t in s["trials"])]
    if not studies:  # e.g. every trial failed: nothing to draw on a log scale
        return "no trial of the search has completed or been pruned with an objective yet"
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for i, st in enumerate(studies):
        colour = f"C{i}"
        done = [t for t in st["trials"] if t["state"] == "complete" and t["objective"] is not None]
        pruned = [t for t in st["trials"] if t["state"] == "pruned" and t["objective"] is not None]
        ax.scatter([t["lr"] for t in done], [t["objective"] for t in done], color=colour, label=st["study"])
        ax.scatter([t["lr"] for t in pruned], [t["objective"] for t in pruned], color=colour, marker="x")
        for t in pruned:
            ax.annotate(f"step {t['stopped_at']}", (t["lr"], t["objective"]), fontsize=7, color=colour,
                        xytext=(3, 3), textcoords="offset points")
        if st["best_lr"] is not None:
            ax.scatter([st["best_lr"]], [st["best_objective"]], s=160, facecolors="none", edgecolors=colour)
    ax.set_xscale("log")
    _finish(fig, ax, path, "learning rate", "objective (last-quarter reward; x: smoothed reward where pruned)",
            "search: objective per trial (x: pruned, ring: best)")
    return None


def _plot_search_curves(sweep_dir: Path, report: dict[str, Any], path: Path) -> str | None:
    import matplotlib.pyplot as plt

    runs = {r["name"]: r for r in report["cells"]}
    fig, ax = plt.subplots(figsize=(7, 4.5))
    drawn = 0
    for i, st in enumerate(report["search"]):
        for t in st["trials"]:
            row = runs.get(t["run"] or "")
            if row is None:
                continue
            steps, rewards = read_rewards(sweep_dir / row["run_dir"] / "metrics.jsonl")
            if not steps:
                continue
            ax.plot(steps, rewards, color=f"C{i}", linestyle="--" if t["state"] == "pruned" else "-",
                    alpha=0.8, label=st["study"] if not any(ln.get_label() == st["study"] for ln in ax.lines) else None)
            drawn += 1
    if not drawn:
        plt.close(fig)
        return "no trial of the search has logged a step yet"
    _finish(fig, ax, path, "optimizer step", "mean reward", "search: every trial's reward (dashed: pruned)")
    return None
