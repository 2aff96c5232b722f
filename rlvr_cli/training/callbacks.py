"""`transformers.TrainerCallback`s that rlvr adds to TRL's GRPO loop.

- `MetricsLog`: one JSON line per optimizer step in `metrics.jsonl`, flushed at once, and the
  divergence guard (a NaN or infinite loss or gradient norm stops the run).
- `RichProgress`: a Rich progress bar with the running reward.
- `GracefulStop`: the first Ctrl-C or SIGTERM ends the run after the current step.
- `NonFiniteWeights`: a step that leaves a weight NaN or infinite stops the run (it diverged).
- `Heartbeat`: refreshes summary.json's heartbeat, so that a killed run can be told from a live one.
- `UpdateSparsity`: the fraction of weights changed since the start, every N steps.
"""

from __future__ import annotations

import json
import math
import signal
import time
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from rlvr_cli.analysis.sparsity import compare, initial_weights, model_update
from rlvr_cli.core.run_dir import read_metrics

#: metrics.jsonl field -> key in TRL's GRPOTrainer logs (TRL 1.16).
FIELDS = {
    "reward": "reward",
    "reward_std": "reward_std",
    "loss": "loss",
    "kl": "kl",
    "entropy": "entropy",
    "completion_length": "completions/mean_length",
    "clipped_ratio": "completions/clipped_ratio",
    "grad_norm": "grad_norm",
    "lr": "learning_rate",
    "num_tokens": "num_tokens",
    # the share of groups whose completions all got the same reward: their GRPO advantages, hence their gradient,
    # are zero for any optimizer and learning rate (1.0: the step changes no weight)
    "frac_reward_zero_std": "frac_reward_zero_std",
}
#: Values checked by the divergence guard.
GUARDED = ("loss", "grad_norm")


def _finite_or_none(v: Any) -> Any:
    """JSON has no NaN: non-finite floats are written as null (the summary names them)."""
    return v if not isinstance(v, float) or math.isfinite(v) else None


class MetricsLog(TrainerCallback):
    """Append one record per logged optimizer step to `metrics.jsonl` and stop on divergence.

    Each record holds `step` (optimizer steps), the `FIELDS` (reward in reward units, loss,
    kl when beta > 0, entropy in nats, completion_length in tokens, grad_norm before clipping,
    lr, frac_reward_zero_std: the share of the step's groups with all-equal rewards), every per-function reward
    `rewards/<name>/mean`, `step_time_s` (seconds, generation
    included) and `tokens_per_s` (prompt + completion tokens processed per second).

    Under a launcher, every rank sees the same logs (TRL gathers the rewards over ranks, the Trainer the loss) and
    keeps the guard, so that all stop at the same step; only the main process writes (`write`): one line per step.

    Args:
        path: the metrics.jsonl file.
        stop_on_nonfinite: stop the run on a non-finite loss or gradient norm.
        write: append to `path` (False on the other ranks of a launch: records and guard only).

    Attributes:
        records: every record written, in order (a resumed run's earlier records first, read from `path`).
        diverged: None, or why the run was stopped (e.g. "loss=nan at step 4").
    """

    def __init__(self, path: Path, stop_on_nonfinite: bool = True, write: bool = True):
        self.path = path
        self.write = write
        self.stop_on_nonfinite = stop_on_nonfinite
        self.records: list[dict[str, Any]] = read_metrics(path)  # a resumed trial's steps so far; [] for a new run
        self.diverged: str | None = None
        self._t0 = time.perf_counter()
        self._step_time: float | None = None
        self._tokens = 0.0

    def on_step_begin(self, args, state, control, **kwargs):
        self._t0 = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        self._step_time = time.perf_counter() - self._t0

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not logs or "reward" not in logs:  # e.g. the final train_runtime log
            return
        record: dict[str, Any] = {"step": state.global_step}
        record.update({k: logs.get(src) for k, src in FIELDS.items()})
        record.update({k: v for k, v in logs.items() if k.startswith("rewards/") and k.endswith("/mean")})
        record.update({k: v for k, v in logs.items() if k.startswith("changed_frac_")})  # UpdateSparsity
        tokens = float(logs.get("num_tokens") or 0.0)
        record["step_time_s"] = self._step_time
        record["tokens_per_s"] = (tokens - self._tokens) / self._step_time if self._step_time else None
        self._tokens = tokens
        bad = [k for k in GUARDED if isinstance(record[k], float) and not math.isfinite(record[k])]
        record = {k: _finite_or_none(v) for k, v in record.items()}
        self.records.append(record)
        if self.write:
            with open(self.path, "a") as f:
                f.write(json.dumps(record) + "\n")
        if bad and self.stop_on_nonfinite and self.diverged is None:
            self.diverged = ", ".join(f"{k}={logs[k]}" for k in bad) + f" at step {state.global_step}"
            control.should_training_stop = True


class RichProgress(TrainerCallback):
    """A Rich progress bar over optimizer steps showing the latest reward and loss, the latest step's share of
    groups with all-equal rewards (`equal groups`, TRL's `frac_reward_zero_std`) and the count of steps so far whose
    gradient norm was exactly 0 (`zero-grad steps`: no learning signal). `description` (e.g. `GRPO <run name>`) is
    shown as written: Rich markup in it (a run name with brackets) is escaped. It draws on stderr."""

    def __init__(self, description: str = "GRPO"):
        from rich.console import Console
        from rich.markup import escape
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("reward {task.fields[reward]}  loss {task.fields[loss]}  equal groups {task.fields[equal]}  "
                       "zero-grad steps {task.fields[zero_grad]}"),
            TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(),
            console=Console(stderr=True),  # progress on stderr, as every other bar: stdout holds the summary table
        )
        self.zero_grad = 0
        self.task = self.progress.add_task(escape(description), total=None, reward="-", loss="-", equal="-",
                                           zero_grad=0)

    def on_train_begin(self, args, state, control, **kwargs):
        self.progress.update(self.task, total=state.max_steps)
        self.progress.start()

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and "reward" in logs:
            self.zero_grad += logs.get("grad_norm") == 0
            equal = logs.get("frac_reward_zero_std")
            self.progress.update(self.task, completed=state.global_step, reward=_fmt(logs.get("reward")),
                                 loss=_fmt(logs.get("loss")), zero_grad=self.zero_grad,
                                 equal=f"{equal:.0%}" if isinstance(equal, (int, float)) else "-")

    def on_step_end(self, args, state, control, **kwargs):
        self.progress.update(self.task, completed=state.global_step)

    def stop(self) -> None:
        """Stop drawing (idempotent); called when training ends, however it ends."""
        self.progress.stop()


def _fmt(v: Any) -> str:
    return f"{v:.3f}" if isinstance(v, (int, float)) else "-"


class GracefulStop(TrainerCallback):
    """Stop training after the current optimizer step on the first SIGINT (Ctrl-C) or SIGTERM.

    Use as a context manager around `trainer.train()`: it installs the signal handlers and puts
    the previous ones back. A second SIGINT raises `KeyboardInterrupt` at once.

    Under a launcher, the ranks agree at the end of each optimizer step on the signals any of them got (one
    all-reduce of world-size numbers, `distributed.every_rank`), so that all stop after the same step, whichever
    rank was signalled (a rank that stops alone would leave the others waiting in the next step's gradient
    all-reduce), and every rank knows which one it was.

    Attributes:
        signal_name: None, or the name of the signal that asked for the stop: this rank's, else the first
            signalled rank's.
        signalled_rank: None in a single process or before any stop; else the rank whose signal stopped the run.
    """

    def __init__(self):
        self.signal_name: str | None = None
        self.signalled_rank: int | None = None
        self._previous: dict[int, Any] = {}

    def _handle(self, signum, frame):
        if self.signal_name is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signal_name = signal.Signals(signum).name

    def __enter__(self) -> GracefulStop:
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    @property
    def reason(self) -> str | None:
        """`stopped by SIGTERM`, with `(rank N)` under a launcher; None when no signal came."""
        if self.signal_name is None:
            return None
        return f"stopped by {self.signal_name}" + ("" if self.signalled_rank is None else
                                                   f" (rank {self.signalled_rank})")

    def on_step_end(self, args, state, control, **kwargs):
        if getattr(args, "world_size", 1) > 1:
            from rlvr_cli.training.distributed import every_rank

            mine = signal.Signals[self.signal_name].value if self.signal_name else 0
            signals = every_rank(mine, args.device)
            first = next((r for r, s in enumerate(signals) if s), None)
            if first is not None:
                self.signalled_rank = first
                self.signal_name = signal.Signals(signals[first]).name
        if self.signal_name is not None:
            control.should_training_stop = True


class NonFiniteWeights(TrainerCallback):
    """Stop the run when an optimizer step leaves a trainable weight NaN or infinite, before the next generation
    samples from it (a loss and gradient norm can still be finite at the step that breaks the weights).

    The check after each step is one sum per trainable tensor (a sum is non-finite when an entry is); only when
    a sum is not finite is every entry checked, which names the tensor and rules out a sum that merely
    overflowed. On SmolLM2-135M (fp32, CPU) it costs tens of milliseconds against seconds per step.

    Attributes:
        diverged: None, or why the run was stopped, e.g. "non-finite weights after step 3 (model.norm.weight)".
    """

    def __init__(self):
        self.diverged: str | None = None

    def check(self, model: Any, step: int) -> str | None:
        """The reason, when a trainable weight of `model` is not finite after optimizer step `step`; else None."""
        import torch

        params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        with torch.no_grad():
            if not params or bool(torch.isfinite(torch.stack([p.sum().float() for _, p in params])).all()):
                return None
            bad = next((n for n, p in params if not bool(torch.isfinite(p).all())), None)
        return None if bad is None else f"non-finite weights after step {step} ({bad})"

    def explain(self, error: BaseException, model: Any, step: int) -> str | None:
        """Why a training error is a divergence, or None when it is not one: the weights are not finite, or the
        error is torch's refusal to sample from probabilities that are not finite (`torch.multinomial`: "probability
        tensor contains either `inf`, `nan` or element < 0"), which finite but huge weights cause too (logits
        overflow)."""
        reason = self.check(model, step)
        if reason is None and "probability tensor contains either" in str(error):
            reason = f"non-finite sampling probabilities after step {step} (the logits overflowed)"
        return reason

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if self.diverged is None and (reason := self.check(model, state.global_step)):
            self.diverged = reason
            control.should_training_stop = True


#: Why `UpdateSparsity` measures nothing during a ZeRO-3 or FSDP run.
SHARDED = "weights are sharded over the processes (ZeRO-3/FSDP): measured once, from the gathered final weights"


class UpdateSparsity(TrainerCallback):
    """Measure update sparsity against the initial weights (`rlvr_cli.analysis.sparsity.model_update`) every
    `every_n_steps` optimizer steps and at the last step, and add `changed_frac_{exact,tol,bf16_exact,bf16_tol}`
    to that step's logs (so metrics.jsonl and W&B get them: put this callback first in the trainer's list).

    Full fine-tuning keeps a CPU copy of the initial trainable weights; when that copy would take more than
    `max_copy_bytes`, nothing is measured and `skipped` says why.

    Args:
        every_n_steps: optimizer steps between measurements; 0 = only the last step.
        tolerance: absolute difference at or below which a weight counts as unchanged (arXiv 2505.11711: 1e-5).
        max_copy_bytes: largest initial-weight copy allowed, bytes; None = no limit.

    Attributes:
        latest: None, or the last measurement: `step`, `tolerance`, `n_params` and the four fractions.
        skipped: None, or why nothing was measured.
    """

    def __init__(self, every_n_steps: int, tolerance: float, max_copy_bytes: int | None = None):
        self.every_n_steps = every_n_steps
        self.tolerance = tolerance
        self.max_copy_bytes = max_copy_bytes
        self.latest: dict[str, Any] | None = None
        self.skipped: str | None = None
        self._initial = None
        self._pending: dict[str, float] = {}

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        from peft import PeftModel

        if any(hasattr(p, "ds_shape") or type(p).__name__ == "DTensor" for p in model.parameters()):
            self.skipped = SHARDED  # each rank holds a slice of every weight: the recipe measures at the end
            return
        if isinstance(model, PeftModel):
            return  # frozen base weights: model_update compares them with merged copies of the adapter layers
        size = sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)
        if self.max_copy_bytes is not None and size > self.max_copy_bytes:
            self.skipped = (f"a copy of the initial weights would take {size / 1e9:.1f} GB > "
                            f"sparsity.max_copy_gb={self.max_copy_bytes / 1e9:g}")
            return
        self._initial = initial_weights(model)

    def measure(self, model: Any, step: int) -> dict[str, Any]:
        """Measure now; the result becomes `latest`."""
        counts = model_update(model, self._initial, self.tolerance)
        self.latest = {"step": step, "tolerance": self.tolerance, "n_params": counts.n, **counts.fractions()}
        return self.latest

    def measure_states(self, initial: dict[str, Any], final: dict[str, Any], step: int) -> dict[str, Any]:
        """Measure from two whole state dicts (name -> tensor, the same names: the base model reloaded and the
        final weights gathered from the shards of a ZeRO-3 or FSDP run); the result becomes `latest`, and
        `skipped` is cleared. Each base tensor is cast to the final one's dtype first, so that a bf16 gather of an
        fp32 base counts updates, not the cast."""
        counts = compare({k: v.to(final[k].dtype) for k, v in initial.items()}, final, self.tolerance).overall
        self.latest = {"step": step, "tolerance": self.tolerance, "n_params": counts.n, **counts.fractions()}
        self.skipped = None
        return self.latest

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if self.skipped:
            return
        step = state.global_step
        if (self.every_n_steps and step % self.every_n_steps == 0) or step >= state.max_steps:
            m = self.measure(model, step)
            self._pending = {k: v for k, v in m.items() if k.startswith("changed_frac_")}

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs is not None and self._pending and "reward" in logs:
            logs.update(self._pending)
            self._pending = {}

    def on_train_end(self, args, state, control, model=None, **kwargs):
        if not self.skipped and (self.latest is None or self.latest["step"] != state.global_step):
            self.measure(model, state.global_step)  # a run that stopped early: summary.json gets its final value


class Heartbeat(TrainerCallback):
    """Keep a running run's summary.json `heartbeat` (unix seconds) fresh, so that `rlvr_cli.core.run_dir.liveness`
    can tell it from a run that was killed: rewrite summary.json (`run_dir.write_summary`, atomic) when training
    begins and at the end of an optimizer step, at most every `interval_s` seconds.

    Args:
        run: the run directory.
        summary: the summary the recipe keeps (status `running`, `run_dir.owner()`'s keys); updated in place, and
            written only while its status is `running`, so a final summary is never overwritten.
        interval_s: the least time between two writes (seconds); default `run_dir.HEARTBEAT_INTERVAL_S`.

    A write that fails (a full disk) is skipped; the next step tries again, and the run goes on.
    """

    def __init__(self, run: Any, summary: dict[str, Any], interval_s: float | None = None):
        from rlvr_cli.core import run_dir

        self.run = run
        self.summary = summary
        self.interval_s = run_dir.HEARTBEAT_INTERVAL_S if interval_s is None else float(interval_s)
        self._last = -math.inf

    def beat(self, force: bool = False) -> bool:
        """Write the heartbeat now (unless the last one is younger than `interval_s` and not `force`); return
        whether summary.json was written."""
        from rlvr_cli.core import run_dir

        now = time.time()
        if self.summary.get("status") != run_dir.RUNNING or (not force and now - self._last < self.interval_s):
            return False
        self.summary["heartbeat"] = round(now, 3)
        try:
            run_dir.write_summary(self.run, self.summary)
        except OSError:
            return False
        self._last = now
        return True

    def on_train_begin(self, args, state, control, **kwargs):
        self.beat(force=True)  # the model has loaded: the first heartbeat since the run started

    def on_step_end(self, args, state, control, **kwargs):
        self.beat()
