"""The run directory: everything a run leaves behind, and everything a report needs (no W&B required).

    <output_dir>/<run_name>/
        config.yaml      the resolved config
        overrides.yaml   the command-line overrides
        metrics.jsonl    one JSON object per optimizer step, flushed as it is written
        summary.json     status and headline figures; written at the start ("running") and at the end
        final/           the final weights: the adapter, or the full model, or a sparse delta
                         (save_format=sparse_delta), plus the tokenizer
        wandb/           the W&B run files (logger=wandb)
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict

from rlvr_cli.core.errors import BadInput, one_line

if TYPE_CHECKING:
    from omegaconf import DictConfig

# Run statuses: the one definition. A run directory's summary.json says `running` while its process trains, and
# one of the final statuses once it has ended, however it ended. `pending` is a sweep cell whose run has not
# started (no summary.json yet).
RUNNING = "running"
PENDING = "pending"
COMPLETED = "completed"
DIVERGED = "diverged"
INTERRUPTED = "interrupted"
FAILED = "failed"
#: Final status -> the exit code `rlvr train` ends with (2, bad input, never creates a run directory).
EXIT_CODES = {COMPLETED: 0, FAILED: 1, DIVERGED: 3, INTERRUPTED: 130}
FINAL = tuple(EXIT_CODES)


@dataclass(frozen=True)
class RunDir:
    """Paths inside one run directory."""

    path: Path

    @property
    def metrics(self) -> Path:
        return self.path / "metrics.jsonl"

    @property
    def summary(self) -> Path:
        return self.path / "summary.json"

    @property
    def weights(self) -> Path:
        return self.path / "final"


def default_run_name(cfg: DictConfig) -> str:
    """`<YYYYmmdd-HHMMSS>-<optimizer>-lr<lr>-<adapter>[-r<r>]-s<seed>`, e.g. `20261121-101500-sgd-lr0.01-full-s0`."""
    adapter = cfg.adapter.name if cfg.adapter.name == "full" else f"{cfg.adapter.name}-r{cfg.adapter.r}"
    return f"{time.strftime('%Y%m%d-%H%M%S')}-{cfg.optimizer.name}-lr{cfg.optimizer.lr:g}-{adapter}-s{cfg.seed}"


def run_path(cfg: DictConfig) -> Path:
    """Where the run of `cfg` lives: `<output_dir>/<run_name or default_run_name>`."""
    return Path(str(cfg.output_dir)) / str(cfg.run_name or default_run_name(cfg))


def create(path: Path, cfg: DictConfig, overrides: list[str]) -> RunDir:
    """Create a run directory and write the resolved config and the overrides into it.

    Raises:
        BadInput: the directory already holds a run (a `summary.json`); nothing is overwritten.
    """
    from omegaconf import OmegaConf

    run = RunDir(path)
    if run.summary.exists():
        raise BadInput(f"run directory {path} already holds a run; pick another run_name or output_dir")
    path.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(cfg, path / "config.yaml", resolve=True)
    OmegaConf.save(OmegaConf.create(list(overrides)), path / "overrides.yaml")
    run.metrics.write_text("")
    return run


class Summary(TypedDict, total=False):
    """The content of `summary.json`: the one definition of its keys (sizes in bytes, times in seconds).

    Written by `rlvr_cli.training.recipe.train` when the run starts (`status` running, the identity keys) and
    when it ends (everything else), and read by `rlvr report`, `rlvr sweep` and `rlvr eval` through
    `read_summary`. Keys that the run never reached (e.g. `eval` of a failed run) are absent or null.
    """

    status: str                      # RUNNING, or one of FINAL
    reason: str | None               # why it ended other than completed, e.g. "saving: OSError: ..."
    run_dir: str
    model: str                       # model.name_or_path
    optimizer: str                   # optimizer option name
    lr: float
    adapter: str                     # adapter option name (full: no adapter)
    r: int | None                    # adapter rank
    seed: int
    wandb_run_id: str | None
    global_step: int                 # optimizer steps taken
    reward_mean_first_quarter: float | None
    reward_mean_last_quarter: float | None
    trainable_params: int
    total_params: int                # tied weights counted once
    optimizer_state_bytes: int       # measured from the optimizer's state tensors
    optimizer_state_bytes_analytic: int
    peak_memory_bytes: int           # peak allocated GPU memory on CUDA, peak RSS on CPU
    memory_analytic_bytes: int       # weights + gradients + optimizer states + master weights
    update_sparsity: dict[str, Any] | None   # step, tolerance, n_params, changed_frac_{exact,tol,bf16_exact,bf16_tol}
    update_sparsity_skipped: str | None
    eval: dict[str, dict[str, float]]        # benchmark -> avg@k, pass@k, maj@k (rlvr_cli.evaluation)
    weights_dir: str | None          # final/, or None when nothing was saved
    weights_format: str              # full | sparse_delta
    weights_bytes: int               # the .safetensors files written
    full_weights_bytes: int          # what a full checkpoint holds
    figures_error: str               # when the final figures themselves could not be computed
    wall_time_s: float


def write_summary(run: RunDir, summary: Summary) -> None:
    """Write `summary.json` atomically (temp file, then rename), so a reader never sees half a file."""
    tmp = run.summary.with_suffix(".tmp")
    tmp.write_text(json.dumps(summary, indent=2, default=str) + "\n")
    tmp.replace(run.summary)


def read_summary(path: Path) -> Summary | None:
    """The `summary.json` of the run directory `path`, or None when there is none (a run not started yet).

    Raises:
        BadInput: the file does not parse as a JSON object (one line, naming the file).
    """
    file = RunDir(Path(path)).summary
    if not file.is_file():
        return None
    try:
        summary = json.loads(file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise BadInput(f"{file} does not parse: {one_line(e)}") from None
    if not isinstance(summary, dict):
        raise BadInput(f"{file} does not parse: expected a JSON object")
    return summary


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """The records of a `metrics.jsonl`, in order; `[]` for a missing file. A line that does not parse as a JSON
    object (the one a running run is writing) is skipped."""
    if not path.is_file():
        return []
    records = []
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict):
            records.append(record)
    return records


def quarter_means(values: list[float | None]) -> tuple[float | None, float | None]:
    """Mean of the first and of the last quarter of a series (at least one value each; None values skipped).

    Returns `(None, None)` for an empty series.
    """
    vals = [v for v in values if v is not None and math.isfinite(v)]
    if not vals:
        return None, None
    q = max(1, len(vals) // 4)
    return sum(vals[:q]) / q, sum(vals[-q:]) / q
