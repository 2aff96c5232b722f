"""The promotion variant of successive halving (`search.pruner: sha`): a learning-rate search that pays each
optimizer step once.

Successive halving (Jamieson & Talwalkar, arXiv 1502.07943; Li et al., "A System for Massively Parallel
Hyperparameter Tuning", arXiv 1810.05934, section 3) runs every trial of a study to the first rung (`min_resource`
optimizer steps), keeps the best 1/`reduction_factor` of them, runs those to the next rung (`min_resource *
reduction_factor`), and so on; the last survivors run to `grpo.max_steps`. Optuna's pruners (`asha`, `hyperband`,
`median`) are its *stopping* variant: a trial asks whether to stop, and a stopped trial is lost. Here a trial
*pauses* at its rung instead (`trial.pause_at`: a Trainer checkpoint, status `paused`; `rlvr_cli.training.pruning`),
and the sweep *promotes* the best of a complete rung by resuming them from their checkpoints (`trial.resume`,
transformers' `resume_from_checkpoint`: weights or adapter, optimizer, scheduler and RNG states; a resumed run's
steps are those of the run it continues). The others are cut: told `pruned` to Optuna, their run directories marked
`pruned`, their checkpoints deleted (the bytes in summary.json's `checkpoint_bytes_deleted`). Optuna keeps the
trials, their reported values and the sampler, as for the other pruners.

A rung compares the smoothed reward trials reported at its step. Trials tied at the cut all go on, so a rung where
every trial has the same value (no optimizer step has changed the weights yet: every GRPO advantage was 0) cuts
nothing: no trial is cut before the first step that can separate them.

The schedule is recomputed from the trials' state at every round (`plan_study`), so a sweep that died is resumed
by running the same rounds again (`rlvr sweep --resume`).
"""

from __future__ import annotations

import math
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rlvr_cli.core import run_dir
from rlvr_cli.core.compose import quote_value
from rlvr_cli.core.run_dir import PAUSED, PRUNED, run_state

#: A trial's state as the planner sees it: Optuna's, lower case (`running`: paused, or not run yet).
RUNNING, COMPLETE, PRUNED_STATE, FAIL = "running", "complete", "pruned", "fail"


@dataclass(frozen=True)
class TrialView:
    """One trial of a study, for `plan_study`.

    Attributes:
        number: its Optuna trial number.
        state: `running` (paused at `step`, or not started: `step` 0), `complete`, `pruned` or `fail`.
        step: the optimizer steps its run has reached (a paused run's step; 0 before it ran).
        values: optimizer step -> the smoothed reward it reported there (Optuna's intermediate values).
    """

    number: int
    state: str
    step: int = 0
    values: Mapping[int, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Cut:
    """A trial cut at a rung: `number`, the rung's index and `step`, its `value` there, the `threshold` (the
    lowest value that went on) and how many of how many trials went on (`kept`, `of`)."""

    number: int
    rung: int
    step: int
    value: float | None
    threshold: float
    kept: int
    of: int

    def reason(self) -> str:
        """summary.json's `reason`, e.g. `not promoted at rung 0 (step 4): objective 0.21 below 0.35, the least of
        the 2 of 6 trials that went on`."""
        value = "no objective" if self.value is None else f"objective {self.value:.4g}"
        return (f"not promoted at rung {self.rung} (step {self.step}): {value} below {self.threshold:.4g}, the least "
                f"of the {self.kept} of {self.of} trials that went on")


@dataclass(frozen=True)
class Plan:
    """What a study does next: `run` (trial number, the step to pause at or None: to the end), `cut` (the trials
    to cut now). Both empty: the study is done."""

    run: list[tuple[int, int | None]]
    cut: list[Cut]


def plan_study(trials: Sequence[TrialView], rungs: Sequence[int], reduction_factor: int) -> Plan:
    """The next round of synchronous successive halving over a study's trials (those that count against its
    budget), recomputed from their state.

    Rung k (step `rungs[k]`) is decided once every trial still in the race has reached it; then the best
    `max(1, n // reduction_factor)` of its `n` trials go on (ties at the cut too, `tied_or_above`; a trial with no
    value there, e.g. one that failed before it, ranks last). A trial already final (complete, pruned, failed) is
    never run again.

    Args:
        trials: the study's trials.
        rungs: the rungs' optimizer steps, increasing, all below `grpo.max_steps` (`rlvr_cli.core.study.rungs`).
        reduction_factor: >= 2.

    Returns:
        The trials to run (to the next rung, or to the end after the last) and the trials to cut.
    """
    cohort, cuts = list(trials), []
    for k, step in enumerate(rungs):
        behind = [t for t in cohort if t.state == RUNNING and t.step < step]
        if behind:
            return Plan([(t.number, step) for t in behind], cuts)
        value = {t.number: t.values.get(step, -math.inf) for t in cohort}
        n_keep = max(1, len(cohort) // reduction_factor)
        threshold = sorted(value.values(), reverse=True)[n_keep - 1] if cohort else -math.inf
        keep = [t for t in cohort if tied_or_above(value[t.number], threshold)]
        cuts += [Cut(t.number, k, step, None if math.isinf(value[t.number]) else value[t.number], threshold,
                     len(keep), len(cohort)) for t in cohort if t not in keep and t.state == RUNNING]
        cohort = keep
    return Plan([(t.number, None) for t in cohort if t.state == RUNNING], cuts)


def tied_or_above(value: float, threshold: float) -> bool:
    """Whether `value` goes on at a cut of `threshold`: above it, or equal to it up to float32 rounding (relative
    1e-6). Rewards are float32 means, so the same share of right answers averaged in another order differs in the
    8th digit (measured: 0.3611111044883728 against 0.3611111094554265, both 13/36)."""
    return value >= threshold or math.isclose(value, threshold, rel_tol=1e-6, abs_tol=1e-9)


def planned_steps(trials: int, rungs: Sequence[int], reduction_factor: int, max_steps: int) -> int:
    """The optimizer steps a study of `trials` trials spends under `plan_study` when no rung has a tie: every trial
    to the first rung, then each rung's survivors from there to the next, the last ones to `max_steps`. Each step is
    paid once (a promoted trial resumes where it paused)."""
    spent, n, at = 0, trials, 0
    for step in rungs:
        spent += n * (step - at)
        n, at = max(1, n // reduction_factor), step
    return spent + n * (max_steps - at)


def view(trial: Any, run: Path | None) -> TrialView:
    """The `TrialView` of an Optuna `FrozenTrial` whose run directory is `run` (None: not in the manifest yet): a
    running trial has reached the step its run paused at, else 0."""
    state = trial.state.name.lower()
    step = 0
    if state == RUNNING and run is not None:
        st = run_state(run)
        if st.status == PAUSED:
            step = int((st.summary or {}).get("global_step") or 0)
    return TrialView(trial.number, state, step, {int(s): float(v) for s, v in trial.intermediate_values.items()})


def delete_checkpoints(run: Path) -> int:
    """Delete the Trainer checkpoints of a trial that is final, and add their bytes to its summary.json's
    `checkpoint_bytes_deleted`; return the bytes deleted (0: none were there)."""
    found = run_dir.checkpoints(run)
    freed = sum(run_dir.tree_bytes(c) for c in found)
    for c in found:
        shutil.rmtree(c, ignore_errors=True)
    if found:
        _update_summary(run, lambda s: s.update(checkpoint_bytes_deleted=int(s.get("checkpoint_bytes_deleted") or 0)
                                                + freed))
    return freed


def mark_cut(run: Path, cut: Cut) -> int:
    """Mark the paused run of a cut trial `pruned` (summary.json: status, `reason`, `pruned`), then delete its
    checkpoints; return the bytes deleted."""
    pruned = {"step": cut.step, "objective": cut.value, "rung": cut.rung, "threshold": cut.threshold,
              "pruner": "sha", "kept": cut.kept, "of": cut.of}
    _update_summary(run, lambda s: s.update(status=PRUNED, reason=cut.reason(), pruned=pruned))
    return delete_checkpoints(run)


def _update_summary(run: Path, change: Any) -> None:
    summary = run_dir.read_summary(run)
    if summary is None:
        return
    change(summary)
    run_dir.write_summary(run_dir.RunDir(run), summary)


def trial_override(storage: Path, study: str, number: int, pause_at: int | None, resume: bool) -> str:
    """The `trial=...` override of a trial's run: its study, and where it pauses and whether it resumes."""
    pause = "null" if pause_at is None else str(int(pause_at))
    return (f"trial={{storage: {quote_value(str(storage))}, study: {quote_value(study)}, number: {number}, "
            f"pause_at: {pause}, resume: {str(bool(resume)).lower()}}}")


def with_trial(overrides: Sequence[str], trial: str) -> list[str]:
    """`overrides` with its `trial=...` override replaced by `trial`."""
    return [trial if o.startswith("trial=") else o for o in overrides]

