"""The cells of a sweep directory as `rlvr report` reads them: the manifest (`load_manifest`), one `CellReport` per
cell from its run directory's summary.json and metrics.jsonl (`read_cell`, `load_cells`; statuses as
`rlvr_cli.sweeps.comparison` describes them), the end-of-training avg@k (`eval_avg`) and the reward curves
(`read_rewards`). Reads only; what is compared and written: `rlvr_cli.sweeps.comparison`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rlvr_cli.analysis.sparsity import KINDS
from rlvr_cli.core.run_dir import DEAD, FAILED, PAUSED, PENDING, PRUNED, UNKNOWN, read_metrics, run_state
from rlvr_cli.sweeps.manifest import read_manifest

#: The axes every cell has a value for (from the manifest, else from its summary.json), in table order.
STANDARD_AXES = ("optimizer", "lr", "adapter", "r", "seed")


#: The fractions of weights changed since the start that summary.json's `update_sparsity` holds.
CHANGED = tuple(f"changed_frac_{kind}" for kind in KINDS)


#: The per-cell figures after the axes, in CSV / JSON order.
FIGURES = ("status", "final_reward", "first_reward", "frac_reward_zero_std", "zero_grad_steps", "global_step",
           "eval_avg", "eval_k", "optimizer_state_bytes",
           "optimizer_state_bytes_analytic", "trainable_params", "total_params", "wall_time_s", "peak_memory_bytes",
           "memory_analytic_bytes", "sparsity_tolerance", *CHANGED, "reason", "run_dir")


#: Statuses whose final reward never counts (a failed or dead run's numbers are not a result; a pending or unknown
#: one has none; a pruned or paused trial's is its reward where its search stopped it, not at the last step).
NOT_COUNTED = (FAILED, PENDING, DEAD, UNKNOWN, PRUNED, PAUSED)


@dataclass
class CellReport:
    """One cell of a sweep as the report sees it.

    `optimizer`, `lr`, `adapter`, `r` and `seed` are the manifest's axis values, or the run's own
    (`summary.json`) where the manifest has none (a sweep without that axis runs the default);
    `other_axes` holds the manifest's remaining axes (e.g. `{"grpo.beta": 0.04}`). Rewards are mean
    rewards per completion; bytes are bytes; `wall_time_s` is seconds. Absent values are None (summaries
    written before a field existed too).

    Learning signal (`rlvr_cli.core.run_dir.learning_signal`): `frac_reward_zero_std` is the mean over steps of
    the share of GRPO groups whose rewards were all equal (zero advantage), `zero_grad_steps` how many of the
    `global_step` optimizer steps had a gradient norm of exactly 0.

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
    frac_reward_zero_std: float | None = None
    zero_grad_steps: int | None = None
    global_step: int | None = None
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
        return {k: finite(v) for k, v in record.items()}


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
    report.frac_reward_zero_std = _number(summary.get("frac_reward_zero_std_mean"))
    report.zero_grad_steps = _int(summary.get("zero_grad_steps"))
    report.global_step = _int(summary.get("global_step"))
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


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def _int(value: Any) -> int | None:
    number = _number(value)
    return None if number is None else int(number)


def finite(value: Any) -> Any:
    """`value`, or None where it is a float that is NaN or infinite (JSON and CSV keep no such number)."""
    return None if isinstance(value, float) and not math.isfinite(value) else value
