"""The run directory: everything a run leaves behind, and everything a report needs (no W&B required).

    <output_dir>/<run_name>/
        config.yaml      the resolved config
        overrides.yaml   the command-line overrides
        metrics.jsonl    one JSON object per optimizer step, flushed as it is written
        summary.json     status and headline figures; written at the start ("running", with the owner's host, pid
                         and heartbeat), refreshed while it trains (`heartbeat`), and at the end
        final/           the final weights: the adapter, or the full model, or a sparse delta
                         (save_format=sparse_delta), plus the tokenizer
        wandb/           the W&B run files (logger=wandb)

A run directory is created exclusively (`create`): two runs never share one, whatever starts when. A run of
several processes (torchrun, accelerate launch, srun) has one run directory, written by its main process (rank 0;
`rlvr_cli.training.distributed`). While a run
trains, its summary.json says `running` and names its process (`host`, `pid`) and the last time it was seen alive
(`heartbeat`); `liveness` tells a live run from a dead one (killed without a chance to write its final status).
"""

from __future__ import annotations

import json
import math
import os
import secrets
import socket
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict

from rlvr_cli.core.errors import BadInput, one_line

if TYPE_CHECKING:
    from rlvr_cli.core.run_config import RunConfig

# Run statuses: the one definition. A run directory's summary.json says `running` while its process trains, and
# one of the final statuses once it has ended, however it ended. `pending` is a sweep cell whose run has not
# started (no summary.json yet).
RUNNING = "running"
PENDING = "pending"
COMPLETED = "completed"
DIVERGED = "diverged"
INTERRUPTED = "interrupted"
FAILED = "failed"
#: A trial of a learning-rate search that its study's pruner stopped early (`rlvr_cli.training.pruning`).
PRUNED = "pruned"
#: A trial of the promotion variant of successive halving (`search.pruner: sha`) that stopped at a rung with a
#: Trainer checkpoint (`<run>/checkpoint-<step>/`), waiting to be promoted (resumed from it: `reopen`) or cut.
PAUSED = "paused"
#: A `running` run whose process is gone (killed, machine lost): it will never write a final status (`liveness`).
DEAD = "dead"
#: A run directory whose summary.json does not parse (e.g. truncated by a full disk): its status cannot be known.
UNKNOWN = "unknown"
#: What `liveness` says of a `running` summary whose process is alive.
LIVE = "live"
#: Final status -> the exit code `rlvr train` ends with (2, bad input, never creates a run directory).
EXIT_CODES = {COMPLETED: 0, FAILED: 1, DIVERGED: 3, PRUNED: 4, PAUSED: 5, INTERRUPTED: 130}
FINAL = tuple(EXIT_CODES)
#: A running run refreshes its summary.json's `heartbeat` at the end of an optimizer step, at most this often (s).
HEARTBEAT_INTERVAL_S = 60.0
#: A running run on another host is dead once its last heartbeat is older than this (s). On this host the pid
#: decides. A step (or the model load, or the final evaluation) longer than this looks dead from another host.
DEAD_AFTER_S = 600.0


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


def default_run_name(cfg: RunConfig) -> str:
    """`<YYYYmmdd-HHMMSS>-<optimizer>-lr<lr>-<adapter>[-r<r>]-s<seed>-<6 hex digits>`, e.g.
    `20261121-101500-sgd-lr0.01-full-s0-3fa9c2`. The random suffix keeps default names of runs started in the same
    second apart (other processes, other hosts on a shared file system, the same process)."""
    adapter = cfg.adapter.name if cfg.adapter.name == "full" else f"{cfg.adapter.name}-r{cfg.adapter.r}"
    return (f"{time.strftime('%Y%m%d-%H%M%S')}-{cfg.optimizer.name}-lr{cfg.optimizer.lr:g}-{adapter}-s{cfg.seed}"
            f"-{secrets.token_hex(3)}")


def check_output_dir(output_dir: Path, where: str = "output_dir") -> None:
    """Check that directories can be created in `output_dir` (run directories, an evaluation's files), writing
    nothing that stays.

    The nearest existing ancestor of `output_dir` (itself when it exists) must be a directory that this process
    can write into: `os.access` first, then a real probe (an empty temporary directory made and removed at once),
    since `os.access` says yes to root on e.g. /proc.

    Args:
        output_dir: the directory (it may not exist yet).
        where: its name in the messages: `output_dir` (a run's), `--output-dir` (`rlvr eval`, `rlvr sparsity`).

    Raises:
        BadInput: `output_dir` or an ancestor is a file, or it is not writable (no permission, read-only file
            system). One line.
    """
    out = Path(output_dir)
    probe = out
    while not probe.exists() and probe.parent != probe:
        if probe.is_symlink():  # a dangling link: mkdir would fail on it
            raise BadInput(f"{where} {out}: {probe} is a broken symbolic link")
        probe = probe.parent
    if not probe.is_dir():
        what = "is a file" if probe == out else f"cannot be created: {probe} is a file"
        raise BadInput(f"{where} {out} {what}, not a directory; pick another {where}")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise BadInput(f"{where} {out} is not writable ({probe}: permission denied or read-only file system); "
                       f"pick another {where}")
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".rlvr-write-check-", dir=probe))
    except OSError as e:
        raise BadInput(f"{where} {out} is not writable ({probe}: {one_line(e)}); pick another {where}") from None


def run_path(cfg: RunConfig) -> Path:
    """Where the run of `cfg` lives: `<output_dir>/<run_name or default_run_name>` (a default name is drawn anew
    at each call: keep the result). Checks `output_dir` (`check_output_dir`) and that the run directory does not
    exist yet, so that these mistakes cost seconds; `create` is what makes sure.

    Raises:
        BadInput: `output_dir` is a file or not writable, or the run directory exists. One line.
    """
    out = Path(cfg.output_dir)
    check_output_dir(out)
    path = out / (cfg.run_name or default_run_name(cfg))
    if path.exists() or path.is_symlink():
        raise BadInput(f"run directory {path} already exists; pick another run_name or output_dir")
    return path


def create(path: Path, cfg: RunConfig, overrides: list[str], extra: Mapping[str, str] | None = None) -> RunDir:
    """Create a run directory exclusively and write the resolved config, the overrides, an empty
    metrics.jsonl and the `extra` files (name -> text, e.g. the launch config of a multi-process run) into it.

    The parents are created first, then the directory itself with one atomic `mkdir` that fails when it exists:
    of two processes creating the same run directory at the same time, exactly one gets it; the other writes
    nothing.

    Raises:
        BadInput: the directory exists already (whatever it holds), or it cannot be created (one line).
    """
    from omegaconf import OmegaConf

    from rlvr_cli.core.nodes import to_node

    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.mkdir(exist_ok=False)
    except FileExistsError:
        raise BadInput(f"run directory {path} already exists; pick another run_name or output_dir") from None
    except OSError as e:
        raise BadInput(f"cannot create run directory {path}: {one_line(e)}") from None
    run = RunDir(path)
    OmegaConf.save(OmegaConf.create(to_node(cfg)), path / "config.yaml")  # every setting in effect
    OmegaConf.save(OmegaConf.create(list(overrides)), path / "overrides.yaml")
    run.metrics.write_text("")
    for name, text in (extra or {}).items():
        (path / name).write_text(text)
    return run


def reopen(path: Path) -> RunDir:
    """Reopen a `paused` run directory to resume it (a promoted trial, `trial.resume`): its config, overrides and
    metrics.jsonl stay; the resumed run appends to metrics.jsonl and rewrites summary.json.

    Raises:
        BadInput: the directory does not exist, or its run is not `paused` (one line, naming its status).
    """
    status = run_state(Path(path)).status
    if status != PAUSED:
        raise BadInput(f"run directory {path} is {status}, not {PAUSED}: only a paused trial resumes "
                       "(trial.resume=true is set by rlvr sweep's promotion, search.pruner: sha)")
    return RunDir(Path(path))


def checkpoints(path: Path) -> list[Path]:
    """The Trainer checkpoints of a run directory (`checkpoint-<step>/`, transformers' `PREFIX_CHECKPOINT_DIR`),
    oldest step first."""
    found = [p for p in Path(path).glob("checkpoint-*") if p.is_dir() and p.name.split("-")[-1].isdigit()]
    return sorted(found, key=lambda p: int(p.name.split("-")[-1]))


def tree_bytes(path: Path) -> int:
    """The bytes of the files under `path` (0 when it is missing)."""
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())


def owner() -> dict[str, Any]:
    """Who runs this run: `host` (`socket.gethostname()`), `pid` (this process) and `heartbeat` (now, unix
    seconds), the summary.json keys that `liveness` reads."""
    return {"host": socket.gethostname(), "pid": os.getpid(), "heartbeat": round(time.time(), 3)}


class Summary(TypedDict, total=False):
    """The content of `summary.json`: the one definition of its keys (sizes in bytes, times in seconds).

    Written by `rlvr_cli.training.recipe.train` when the run starts (`status` running, the identity keys, `owner`),
    at the end of optimizer steps (`heartbeat`, `rlvr_cli.training.callbacks.Heartbeat`) and when it ends
    (everything else), and read by `rlvr report`, `rlvr sweep` and `rlvr eval` through
    `read_summary`. Keys that the run never reached (e.g. `eval` of a failed run) are absent or null.
    """

    status: str                      # RUNNING, or one of FINAL
    host: str                        # where the run's process runs (socket.gethostname())
    pid: int                         # the run's process id on that host
    heartbeat: float                 # the last time the run was seen alive (unix seconds); see `liveness`
    reason: str | None               # why it ended other than completed, e.g. "saving: OSError: ..."
    run_dir: str
    model: str                       # model.name_or_path
    optimizer: str                   # optimizer option name
    lr: float
    adapter: str                     # adapter option name (full: no adapter)
    r: int | None                    # adapter rank
    seed: int
    world_size: int                  # processes of the run (torchrun, accelerate launch, srun); 1 without a launcher
    distributed: str                 # none | ddp | fsdp (from the TrainingArguments' parallel mode)
    wandb_run_id: str | None
    global_step: int                 # optimizer steps taken
    reward_mean_first_quarter: float | None
    reward_mean_last_quarter: float | None
    frac_reward_zero_std_mean: float | None  # mean over steps of the share of groups with all-equal rewards
    zero_grad_steps: int | None      # optimizer steps whose gradient norm was exactly 0 (no learning signal)
    first_nonzero_grad_step: int | None      # the first step with a gradient (None: none had one)
    trainable_params: int
    total_params: int                # tied weights counted once
    optimizer_state_bytes: int       # measured from the optimizer's state tensors (the main process's)
    optimizer_state_bytes_per_rank: list[int | None]  # the same, per rank (rank order)
    optimizer_state_bytes_total: int | None           # their sum over ranks
    optimizer_state_bytes_analytic: int
    peak_memory_bytes: int           # peak allocated GPU memory on CUDA, peak RSS on CPU; the maximum over ranks
    peak_memory_bytes_per_rank: list[int | None]      # the same, per rank (rank order)
    memory_analytic_bytes: int       # weights + gradients + optimizer states + master weights
    update_sparsity: dict[str, Any] | None   # step, tolerance, n_params, changed_frac_{exact,tol,bf16_exact,bf16_tol}
    update_sparsity_skipped: str | None
    eval: dict[str, dict[str, float]]        # benchmark -> avg@k, pass@k, maj@k (rlvr_cli.evaluation)
    weights_dir: str | None          # final/, or None when nothing was saved
    weights_format: str              # full | sparse_delta
    weights_bytes: int               # the .safetensors files written
    full_weights_bytes: int          # what a full checkpoint holds
    figures_error: str               # when the final figures themselves could not be computed
    objective: float | None          # a search trial's last smoothed reward, reported to its study
    pruned: dict[str, Any]           # a search trial stopped early: step, objective, rung, threshold, pruner
    paused: dict[str, Any]           # a paused trial (sha): step, objective, checkpoint, checkpoint_bytes
    checkpoint_bytes_deleted: int    # a final trial's paused checkpoints, deleted by rlvr sweep (bytes)
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


def pid_alive(pid: int, not_started_after: float | None = None) -> bool:
    """Whether process `pid` of this host is alive (`os.kill(pid, 0)`; a zombie counts as dead).

    Args:
        pid: a process id on this host.
        not_started_after: unix seconds; a process that started later than this (by more than 2 s) is another
            process that got the same pid after the one sought ended: dead. Linux only (/proc); ignored elsewhere.
    """
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        pass
    except (OverflowError, ValueError):
        return False
    stat = _proc_stat(pid)
    if stat is None:  # no /proc: os.kill is all there is
        return True
    state, started = stat
    if state in ("Z", "X"):
        return False
    return not (not_started_after is not None and started is not None and started > not_started_after + 2)


def liveness(summary: Summary, now: float | None = None) -> str:
    """Whether the run of a summary.json is still alive.

    A summary whose status is not `running` gives that status (the run has ended). A `running` one is:
    on this host (`host` equals `socket.gethostname()`), `live` while its `pid` is alive (and started no later
    than its last heartbeat, so a reused pid does not count), else `dead`; on another host, `dead` once its
    `heartbeat` is older than `DEAD_AFTER_S`, else `live`. A `running` summary without `host`, `pid` and
    `heartbeat` (written by an rlvr before these keys, or hand-made) is `dead`: every run of this version
    writes them when it starts.

    Args:
        summary: a parsed summary.json (`read_summary`).
        now: the time to judge heartbeats at (unix seconds); default now.

    Returns:
        `LIVE`, `DEAD`, or the summary's own status (e.g. `completed`).
    """
    status = summary.get("status")
    if status != RUNNING:
        return str(status)
    host, pid, beat = summary.get("host"), summary.get("pid"), summary.get("heartbeat")
    if not isinstance(beat, (int, float)) or isinstance(beat, bool) or not isinstance(host, str):
        return DEAD
    if host == socket.gethostname():
        if not isinstance(pid, int) or isinstance(pid, bool):
            return DEAD
        return LIVE if pid_alive(pid, not_started_after=float(beat)) else DEAD
    return DEAD if (time.time() if now is None else now) - float(beat) > DEAD_AFTER_S else LIVE


@dataclass(frozen=True)
class RunState:
    """What a run directory's summary.json says, judged (`run_state`).

    Attributes:
        status: `pending` (no summary.json), `unknown` (it does not parse), `running` (alive), `dead` (`liveness`),
            or the final status the run wrote.
        summary: the parsed summary, or None (pending, unknown).
        note: one line on an unknown or dead run: why it is unknown, or who was running it and when it was last
            seen alive; else None.
    """

    status: str
    summary: Summary | None = None
    note: str | None = None


def run_state(path: Path) -> RunState:
    """The state of the run directory `path`, for `rlvr sweep`, `rlvr sweep --resume` and `rlvr report`; never
    raises on a damaged summary.json (that run is `unknown`, with the parse error in `note`).

    Raises:
        OSError: the file exists but cannot be read (permissions).
    """
    try:
        summary = read_summary(path)
    except BadInput as e:
        return RunState(UNKNOWN, None, str(e))
    if summary is None:
        return RunState(PENDING)
    state = liveness(summary)
    if state == LIVE:
        return RunState(RUNNING, summary)
    if state == DEAD:
        return RunState(DEAD, summary, f"{_owner_text(summary)} ended without a final status")
    return RunState(str(summary.get("status") or UNKNOWN), summary)


def check_finished(path: Path, summary: Summary) -> None:
    """Refuse a run directory whose run has not ended, for commands that read its weights (`rlvr eval`).

    Args:
        path: the run directory (as given on the command line; used in the message).
        summary: its summary.json (`read_summary`).

    Raises:
        BadInput: the run is still running (`liveness` says live: "still running (pid N on HOST)"), or it is dead
            (killed before it wrote a final status: its weights were never saved). One line.
    """
    state = liveness(summary)
    if state == LIVE:
        raise BadInput(f"run directory {path} is still running (pid {summary.get('pid')} on {summary.get('host')}); "
                       "evaluate it once it has ended")
    if state == DEAD:
        raise BadInput(f"run directory {path} is dead: {_owner_text(summary)} ended without a final status, so no "
                       "weights were saved; rerun it (rlvr sweep --resume reruns dead cells)")


def _owner_text(summary: Summary) -> str:
    """`pid N on HOST, last heartbeat 2026-11-21 10:15:00` (local time) for messages about a running summary."""
    beat = summary.get("heartbeat")
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(beat)) \
        if isinstance(beat, (int, float)) and not isinstance(beat, bool) else "never"
    return f"its process (pid {summary.get('pid', '?')} on {summary.get('host', '?')}, last heartbeat {when})"


def _proc_stat(pid: int) -> tuple[str, float | None] | None:
    """`(state letter, start time in unix seconds or None)` of process `pid` from /proc, or None without /proc."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return None if not Path("/proc/self/stat").exists() else ("X", None)
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2:].split()  # after "pid (comm) ": state is field 3 of stat(5)
    try:
        ticks = int(fields[19])  # field 22: start time, clock ticks after boot
        btime = next(int(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines()
                     if line.startswith("btime "))
        return fields[0], btime + ticks / os.sysconf("SC_CLK_TCK")
    except (IndexError, ValueError, StopIteration, OSError):
        return fields[0] if fields else "R", None


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """The records of a `metrics.jsonl`, in order; `[]` for a missing file. A line that does not parse as a JSON
    object (the one a running run is writing) is skipped."""
    if not path.is_file():
        return []
    records = []
    for line in path.read_bytes().decode("utf-8", errors="replace").splitlines():  # a damaged line is skipped
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


def learning_signal(records: list[dict]) -> dict[str, float | int | None]:
    """summary.json's learning-signal figures from metrics.jsonl's records (one per optimizer step).

    A GRPO group whose completions all get the same reward has zero advantages, so a step where every group does
    has a zero gradient for any optimizer and learning rate (DAPO, arXiv 2503.14476, section 3.2, filters such
    groups out for that reason; TRL logs their share as `frac_reward_zero_std`).

    Returns:
        `frac_reward_zero_std_mean`: the mean over steps of that share (None when no step logged it);
        `zero_grad_steps`: how many steps had a gradient norm of exactly 0 (None when no step logged one);
        `first_nonzero_grad_step`: the first step (optimizer steps, from 1) whose gradient norm was not 0.
    """
    shares = [r["frac_reward_zero_std"] for r in records if isinstance(r.get("frac_reward_zero_std"), (int, float))]
    norms = [(r["step"], r["grad_norm"]) for r in records if isinstance(r.get("grad_norm"), (int, float))]
    return {
        "frac_reward_zero_std_mean": sum(shares) / len(shares) if shares else None,
        "zero_grad_steps": sum(1 for _, g in norms if g == 0) if norms else None,
        "first_nonzero_grad_step": next((step for step, g in norms if g != 0), None),
    }
