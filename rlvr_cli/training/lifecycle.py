"""A run's lifecycle, from the run directory's creation to its final summary: the status and its reason, the
signals that stop a run after its step, the ranks' agreement on how it ended, and `summary.json`, written whatever
happened. `rlvr_cli.training.recipe.train` does the run's work inside `run_lifecycle`; every way out of it (a
completed run, a divergence, Ctrl-C or SIGTERM on any rank, an exception at any stage, a second Ctrl-C) ends here
with one final status (`rlvr_cli.core.run_dir`: completed, diverged, interrupted, failed), the same on every rank.
"""

from __future__ import annotations

import signal
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import Any

from rlvr_cli.core import run_dir
from rlvr_cli.core.errors import one_line
from rlvr_cli.training import distributed, tracking
from rlvr_cli.training.callbacks import GracefulStop, MetricsLog, NonFiniteWeights


@dataclass
class Life:
    """One run while it lives: what `train` reads and sets as it goes.

    Attributes:
        run: the run directory.
        summary: summary.json's content so far (written at the start and at the end; `Heartbeat` refreshes it).
        stop: the signal handler (SIGINT/SIGTERM stop the run after its optimizer step, agreed by every rank).
        main: whether this is the main process (it writes the files).
        metrics: metrics.jsonl's writer, which also watches the loss and gradient norm for a divergence.
        weights: the non-finite weights guard (None with `stop_on_nonfinite=false`).
        trainer: the built trainer, once there is one.
        stage: what the run is doing (`tracking`, `vllm server`, `model load`, `training`, `saving`, `evaluation`,
            `memory accounting`): a failure's reason names it.
        status, reason: how the run ended so far (`failed` until training ends).
        in_step: False when an exception may have left this rank out of step with the others (a collective now
            could hang, so the final agreement is skipped).
        figures: the headline figures of whatever the run got to (`recipe.final_figures`), asked at the end when
            the run did not reach them.
        closing: what ends with the run, last first (a vLLM server rlvr started, the progress bar).
    """

    run: run_dir.RunDir
    summary: run_dir.Summary
    stop: GracefulStop
    main: bool
    metrics: MetricsLog
    weights: NonFiniteWeights | None
    trainer: Any = None
    stage: str = "tracking"
    status: str = run_dir.FAILED
    reason: str | None = None
    in_step: bool = True
    figures: Callable[[], dict[str, Any]] = dict
    closing: ExitStack = field(default_factory=ExitStack)

    @property
    def go_on(self) -> bool:
        """Whether the run may start its next stage: no stop signal has come."""
        return self.stop.signal_name is None

    def training_ended(self) -> None:
        """Set the status from how training ended: diverged (a non-finite loss, gradient norm or weight), else
        interrupted (a stop signal), else completed."""
        diverged = self.metrics.diverged or (self.weights.diverged if self.weights else None)
        self.status = run_dir.DIVERGED if diverged else \
            run_dir.INTERRUPTED if self.stop.signal_name else run_dir.COMPLETED
        self.reason = diverged or self.stop.reason


@contextmanager
def run_lifecycle(create: Callable[[], run_dir.RunDir], identity: dict[str, Any], *, main: bool,
                  stop_on_nonfinite: bool) -> Iterator[Life]:
    """Create the run directory and live the run inside: on the way out, whatever happened, settle the final status
    with every rank and write summary.json.

    Args:
        create: makes the run directory (called on the main process; the other ranks of a launch get its path).
        identity: summary.json's identity keys (model, optimizer, lr, adapter, seed, precision, world size, ...).
        main: whether this is the main process.
        stop_on_nonfinite: stop `diverged` on a non-finite loss, gradient norm or weight (`NonFiniteWeights`).

    Yields:
        the `Life` of the run. An exception inside is not raised: the summary says `failed` with the stage and the
        error in `reason` (the traceback in `<run>/traceback.txt`), or `diverged` where the weights explain it; a
        (second) Ctrl-C ends it `interrupted`.
    """
    t_start = time.perf_counter()
    stop = GracefulStop()
    with stop:  # signals are handled from before the run directory appears until the final summary is written
        run = distributed.on_main(create)
        summary: run_dir.Summary = {"status": run_dir.RUNNING, **run_dir.owner(), "run_dir": str(run.path),
                                    **identity, "weights_dir": None}
        if main:
            run_dir.write_summary(run, summary)
        life = Life(run, summary, stop, main, MetricsLog(run.metrics, stop_on_nonfinite=stop_on_nonfinite,
                                                         write=main),
                    NonFiniteWeights() if stop_on_nonfinite else None)
        try:
            yield life
        except KeyboardInterrupt:  # a second Ctrl-C
            life.status, life.reason = run_dir.INTERRUPTED, f"KeyboardInterrupt during {life.stage}"
            life.in_step = life.stage != "training"
        except Exception as e:
            life.in_step = life.stage != "training"
            trainer = life.trainer
            found = life.weights.explain(e, trainer.model, trainer.state.global_step) \
                if life.weights and trainer else None
            if life.stage == "training" and found:  # e.g. sampling from NaN probabilities after a step broke weights
                life.status, life.reason = run_dir.DIVERGED, f"{found}; then {type(e).__name__}: {one_line(e)}"
            else:
                life.status, life.reason = run_dir.FAILED, f"{life.stage}: {type(e).__name__}: {one_line(e)}"
                summary["traceback"] = write_traceback(run)
        finally:
            with signals_held():
                end(life, t_start)


def end(life: Life, t_start: float) -> None:
    """The end of every run: close what ends with it, record the figures it got to, agree the final status with
    every rank, write summary.json and close the W&B run; the other ranks end once it is written."""
    summary = life.summary
    life.closing.close()
    if "global_step" not in summary:  # the figures were not reached: record what there is
        try:
            summary.update(life.figures())
        except Exception as e:  # noqa: BLE001 - the status is what matters now
            summary["figures_error"] = f"{type(e).__name__}: {one_line(e)}"
    status, reason = agree_ranks(summary, life.status, life.reason, gather=life.in_step)
    if status == run_dir.FAILED and life.metrics.records:  # a step that failed half-way was counted, not logged
        summary["global_step"] = life.metrics.records[-1].get("step", summary.get("global_step"))
    summary.update(status=status, reason=reason, wall_time_s=round(time.perf_counter() - t_start, 3))
    if life.main:
        try:
            run_dir.write_summary(life.run, summary)
        except OSError as e:  # a full disk, a lost output directory: stderr is all that is left
            print(f"error: cannot write {life.run.summary}: {one_line(e)}; the run ended {status}: {reason}",
                  file=sys.stderr)
        tracking.finish(summary)
    if life.in_step:  # the other ranks end once the summary is written: torchrun stops all at a non-zero exit
        distributed.barrier()


@contextmanager
def signals_held() -> Iterator[None]:
    """Hold SIGINT and SIGTERM while the final summary is written, so that a second Ctrl-C cannot leave
    summary.json saying `running`; one that arrived meanwhile is dropped (the run is ending already)."""
    held = {signal.SIGINT, signal.SIGTERM}
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, held)
    try:
        yield
    finally:
        while signal.sigtimedwait(held, 0) is not None:
            pass
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def agree_ranks(summary: run_dir.Summary, status: str, reason: str | None,
                gather: bool = True) -> tuple[str, str | None]:
    """Gather every rank's final status and per-rank figures into `summary` (`distributed.agree`; a single
    process is a world of one) and return the run's final status and reason, the same on every rank.

    Sets `optimizer_state_bytes` (the main process's, bytes: what one device holds, comparable with
    `optimizer_state_bytes_analytic`), `optimizer_state_bytes_per_rank` (list, bytes) and
    `optimizer_state_bytes_total` (their sum, bytes; None when a rank has none), `peak_memory_bytes` (the maximum
    over ranks, bytes) and `peak_memory_bytes_per_rank` (list, bytes). When the ranks cannot be reached (a
    collective that fails or times out), or `gather` is False (an exception may have left this rank out of step
    with the others: a collective now could hang), the figures are this rank's alone and the status its own.
    """
    mine = {k: summary.get(k) for k in ("optimizer_state_bytes", "peak_memory_bytes")}
    try:
        status, reason, ranks = distributed.agree(status, reason, mine) if gather else (status, reason, [mine])
    except Exception as e:  # noqa: BLE001 - the status is what matters now
        summary["figures_error"] = f"ranks not gathered: {type(e).__name__}: {one_line(e)}"
        ranks = [mine]
    states = [r["optimizer_state_bytes"] for r in ranks]
    peaks = [r["peak_memory_bytes"] for r in ranks]
    summary["optimizer_state_bytes_per_rank"] = states
    summary["optimizer_state_bytes_total"] = None if None in states else sum(states)
    summary["peak_memory_bytes_per_rank"] = peaks
    if None not in peaks:
        summary["peak_memory_bytes"] = max(peaks)
    return status, reason


def write_traceback(run: run_dir.RunDir) -> str | None:
    """Write the exception being handled to `<run>/traceback.txt` (`traceback-rank<N>.txt` on rank N > 0 of a
    launch; for whoever debugs a failed run; the summary and the terminal get one line); return its path, or None
    when it cannot be written."""
    import traceback

    rank = distributed.launch_env().rank
    path = run.path / ("traceback.txt" if rank == 0 else f"traceback-rank{rank}.txt")
    try:
        path.write_text(traceback.format_exc())
    except OSError:
        return None
    return str(path)
