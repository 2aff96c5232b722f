"""A run that is a trial of a learning-rate search (`rlvr sweep` with a `search:` section): after every optimizer
step it reports its objective to the trial's Optuna study, and stops at the end of the step when the study's pruner
says so; the run then ends `pruned` (`rlvr_cli.core.run_dir.PRUNED`), with the step and the rung's threshold in
summary.json. The `trial` node of the run's config names the study (`trial.storage`, `trial.study`,
`trial.number`); the pruner and the objective's smoothing are the study's own (its `search` user attribute, set by
`rlvr_cli.sweeps.search`), so that every trial of a study is judged alike.

Under the promotion variant of successive halving (`search.pruner: sha`, `rlvr_cli.sweeps.promotion`) the run
does not ask a pruner: it stops at step `trial.pause_at` with a Trainer checkpoint (`<run>/checkpoint-<step>/`:
weights or adapter, optimizer, scheduler and RNG states, transformers' `Trainer._save_checkpoint`) and ends
`paused`; the sweep then cuts it or resumes it (`trial.resume`: the run reopens its directory and calls
`trainer.train(resume_from_checkpoint=...)`).
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from rlvr_cli.core import run_dir
from rlvr_cli.core import study as studies
from rlvr_cli.core.errors import BadInput, one_line
from rlvr_cli.core.run_config import Trial
from rlvr_cli.training.distributed import every_rank


def open_trial(trial_cfg: Trial) -> tuple[Any, Any, dict[str, Any]]:
    """The Optuna study, trial and search settings a `trial` node names.

    Returns:
        `(study, trial, search)`: `search` holds `pruner`, `min_resource`, `reduction_factor`, `max_steps`,
        `smoothing` (the study's `search` user attribute).

    Raises:
        BadInput: the storage file is missing, the study or the trial is not in it, or the trial is finished.
    """
    import optuna

    path = Path(trial_cfg.storage)
    if not path.is_file():
        raise BadInput(f"trial.storage={path}: no study file there (rlvr sweep writes it with a search: section)")
    store = studies.storage(path)
    try:
        study_id = store.get_study_id_from_name(trial_cfg.study)
        trial_id = store.get_trial_id_from_study_id_trial_number(study_id, trial_cfg.number)
    except KeyError as e:
        raise BadInput(f"trial.study={trial_cfg.study} trial.number={trial_cfg.number}: not in {path} "
                       f"({one_line(e)})") from None
    search = dict(store.get_study_user_attrs(study_id).get("search") or {})
    study = optuna.load_study(study_name=trial_cfg.study, storage=store,
                              pruner=studies.pruner(search.get("pruner", "none"), int(search.get("min_resource", 1)),
                                                    int(search.get("reduction_factor", 3)),
                                                    int(search.get("max_steps", 1))))
    if store.get_trial(trial_id).state.is_finished():
        raise BadInput(f"trial {trial_cfg.number} of study {trial_cfg.study} is finished already; a trial "
                       "runs once (rlvr sweep asks new ones)")
    return study, optuna.trial.Trial(study, trial_id), search


def check_pause(trial_cfg: Trial, max_steps: int, run_name: str | None) -> None:
    """Check a trial's `pause_at` and `resume` against the run.

    Raises:
        BadInput: `pause_at` at or past `grpo.max_steps` (a run at its last step completes: nothing to resume), or
            `resume` without a `run_name` (the paused run directory to reopen).
    """
    pause_at = trial_cfg.pause_at
    if pause_at is not None and pause_at >= max_steps:
        raise BadInput(f"trial.pause_at={pause_at} is not below grpo.max_steps={max_steps}: a run at its last step "
                       "completes; give pause_at < max_steps, or null")
    if trial_cfg.resume and not run_name:
        raise BadInput("trial.resume=true needs run_name=NAME: the paused run directory to resume")


def resume_checkpoint(path: Path) -> Path:
    """The checkpoint a paused trial resumes from: the newest `checkpoint-<step>/` of its run directory.

    Raises:
        BadInput: the run directory is not `paused` (`run_dir.reopen`), or holds no checkpoint.
    """
    run_dir.reopen(path)
    found = run_dir.checkpoints(path)
    if not found:
        raise BadInput(f"run directory {path} is paused but holds no checkpoint-<step>/ to resume from; rerun the "
                       "trial (rlvr sweep --resume asks a new one)")
    return found[-1]


def settle_pause(path: Path, paused: Mapping[str, Any], main: bool = True) -> dict[str, Any]:
    """After a run paused: delete its older checkpoints (a resumed trial's previous rung), keep the newest.

    Returns:
        summary.json's `paused`: `step`, `objective`, `checkpoint` (its path) and `checkpoint_bytes` (its size).
    """
    found = run_dir.checkpoints(path)
    if main:
        for old in found[:-1]:
            shutil.rmtree(old, ignore_errors=True)
    last = found[-1] if found else None
    return {**paused, "checkpoint": str(last) if last else None,
            "checkpoint_bytes": run_dir.tree_bytes(last) if last else 0}


def outcome(trial: TrialPruning, path: Path, status: str, main: bool = True) -> dict[str, Any]:
    """How a trial ends once its training did: summary.json's `objective`, and, for a training that completed where
    the callback stopped it, `status` and `reason`: `pruned` (with `pruned`: the step, objective, rung and
    threshold) or `paused` (with `paused`: its checkpoint, `settle_pause`).

    Args:
        trial: the run's `TrialPruning` callback, after training.
        path: the run directory.
        status: how training ended (`rlvr_cli.core.run_dir`: completed, interrupted, diverged).
        main: whether this is the main process (it deletes older checkpoints).
    """
    out: dict[str, Any] = {"objective": trial.objective}
    if status != run_dir.COMPLETED:
        return out
    if trial.pruned:
        out.update(status=run_dir.PRUNED, reason=trial.reason(), pruned=trial.pruned)
    elif trial.paused:
        out.update(status=run_dir.PAUSED, paused=settle_pause(path, trial.paused, main=main),
                   reason=f"paused at step {trial.paused['step']} with a checkpoint: rlvr sweep resumes or cuts it")
    return out


class TrialPruning(TrainerCallback):
    """Report the smoothed training reward (the running mean of the last `smoothing` steps' `reward`, TRL's logged
    mean reward of a step; `rlvr_cli.core.study.smoothed`) to the trial after every optimizer step, and stop at the
    end of the step when the pruner prunes. The main process reports and asks; every rank learns its answer
    (`distributed.every_rank`), so that all stop after the same step.

    Attributes:
        pruned: None, or `{"step", "objective", "rung", "threshold", "pruner"}` once the trial was pruned (the rung's
            threshold by `rlvr_cli.core.study.rung_threshold`, asha only; else None).
        objective: the last smoothed value reported.
        paused: None, or `{"step", "objective"}` once the run stopped at `trial.pause_at` (its checkpoint is saved
            by the Trainer at the end of that step).

    Args:
        trial_cfg: the run's `trial` node.
        main: whether this is the main process (it alone opens the study and reports).
        rewards: the rewards of the steps a resumed trial has run already (metrics.jsonl), so that its smoothing
            goes on where it paused.
    """

    def __init__(self, trial_cfg: Trial, main: bool = True, rewards: Sequence[float] = ()):
        self.study, self.trial, self.search = open_trial(trial_cfg) if main else (None, None, {})
        self.main = main
        self.pause_at = trial_cfg.pause_at
        self.rewards: list[float] = list(rewards)  # a resumed trial's rewards so far: the smoothing goes on
        self.objective: float | None = None
        self.pruned: dict[str, Any] | None = None
        self.paused: dict[str, Any] | None = None

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not logs or "reward" not in logs or self.pruned or self.paused:
            return
        self.rewards.append(logs["reward"])
        prune = 0
        if self.main:
            self.objective = studies.smoothed(self.rewards, int(self.search.get("smoothing", 3)))
            if self.objective is not None:
                self.trial.report(self.objective, step=state.global_step)
        if self.pause_at is not None and int(self.pause_at) <= state.global_step < state.max_steps:
            # every rank knows pause_at: no collective; the Trainer saves the checkpoint right after this log
            self.paused = {"step": state.global_step, "objective": self.objective}
            control.should_save = True
            control.should_training_stop = True
            return
        if self.main:
            if self.objective is not None:
                # a trial at its last step has paid for every step: it completes, whatever a rung placed there says
                # (Optuna's SuccessiveHalvingPruner would prune at step min_resource * reduction_factor**k == max_steps)
                prune = int(state.global_step < state.max_steps and self.trial.should_prune())
        if any(every_rank(prune, args.device)):
            self.pruned = self._explain(state.global_step) if self.main else {"step": state.global_step}
            control.should_training_stop = True

    def _explain(self, step: int) -> dict[str, Any]:
        name = self.search.get("pruner", "none")
        rung = threshold = None
        if name == "asha":
            reached = studies.rungs(int(self.search["min_resource"]), int(self.search["reduction_factor"]), step + 1)
            rung = len(reached) - 1 if reached else None
            if rung is not None:
                threshold = studies.rung_threshold(self.study.get_trials(deepcopy=False), rung,
                                                   int(self.search["reduction_factor"]))
        return {"step": step, "objective": self.objective, "rung": rung, "threshold": threshold, "pruner": name}

    def reason(self) -> str:
        """The summary's `reason` of a pruned run, e.g. `pruned by asha at step 6 (rung 1): objective 0.12 below
        the rung's threshold 0.31`."""
        p = self.pruned or {}
        at = f"at step {p.get('step')}" + (f" (rung {p['rung']})" if p.get("rung") is not None else "")
        value = "" if p.get("objective") is None else f": objective {p['objective']:.4g}"
        bar = "" if p.get("threshold") is None else f" below the rung's threshold {p['threshold']:.4g}"
        return f"pruned by {p.get('pruner', 'the pruner')} {at}{value}{bar}"
