"""`rlvr sweep SEARCH.yaml`: a learning-rate search. Each optimizer's learning rate is searched on a log scale by an
Optuna study (a sampler asks the learning rates, a pruner stops hopeless trials early), instead of a grid that runs
every point to the end. A search file (see sweeps/search_smoke.yaml, sweeps/lr_search.yaml):

    name: lr_search
    base: [grpo.max_steps=30]
    search:
      optimizer:                                   # per optimizer, the range searched on a log scale, in (0, 1]
        sgd: {lr: {min: 1.0e-3, max: 1.0e-1}}
        adamw: {lr: {min: 1.0e-6, max: 1.0e-4}}
      trials: 6               # trials per optimizer (and per cell of the fixed axes)
      sampler: tpe            # tpe | grid (per_decade points over the range) | random
      per_decade: 2           # the grid sampler's points per decade, and the grid the budget is compared with
      pruner: asha            # asha | sha | hyperband | median | none (sha: trials pause and the best resume)
      min_resource: 5         # optimizer steps of the first rung
      reduction_factor: 3     # each rung keeps the best 1/3
      objective: reward       # reward: mean reward over the last quarter of the steps; eval: avg@k of eval.benchmarks
      smoothing: 3            # the running mean over the last 3 steps is what a trial reports to the pruner
      seed: 0                 # the sampler's seed (study i: seed + i): the same file asks the same learning rates
    axes:                     # fixed axes, as in a grid (no optimizer axis: the search owns it)
      seed: [0]

Every optimizer x cell of the fixed axes is one study (`<name>/<optimizer>/<cell>`) in the sweep directory's
`study.journal` (Optuna's journal storage: safe for the processes of one host, and for SLURM jobs on a shared file
system). Trials are ordinary cells: each is one `rlvr train` run in `runs/`, launched through the sweep's launcher
(`rlvr_cli.sweeps.launch.launch_cells`), `--max-parallel` at a time; the sweep asks the study for that many trials,
runs them, tells the study how each ended, and asks again until every study has its trials. A running trial reports
its smoothed reward after every optimizer step and stops when the pruner says so (`rlvr_cli.training.pruning`:
status `pruned`, exit code 4).

With `pruner: sha` (the promotion variant of successive halving, `rlvr_cli.sweeps.promotion`) every trial of a
study is asked at once and runs to the first rung, where it pauses with a checkpoint; the best of each complete rung
are resumed to the next, and the others are cut: each optimizer step is paid once.

Nothing is lost: the manifest lists every trial asked; on `--resume` a trial whose run ended is told as it ended
(the sweep may have died before telling it), one that was running when the sweep died is closed as failed in the
study and its budget asked again, and a study holding another search (another range, sampler or pruner) is refused.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from rlvr_cli.core import study as studies
from rlvr_cli.core.errors import BadInput
from rlvr_cli.core.run_dir import COMPLETED, DEAD, INTERRUPTED, PAUSED, PENDING, PRUNED, UNKNOWN, run_state
from rlvr_cli.sweeps import launch, promotion
from rlvr_cli.sweeps.grid import MAX_PER_DECADE, Cell, Sweep, log_grid
from rlvr_cli.sweeps.manifest import Manifest, ManifestCell, manifest_path, read_manifest, write_manifest

#: The keys of a `search` section, with their defaults (None: required).
#: The largest sampler seed: study i is seeded `seed + i`, and numpy's generators take seeds below 2**32.
MAX_SAMPLER_SEED = 2**31 - 1
SEARCH_KEYS: dict[str, Any] = {"optimizer": None, "trials": None, "sampler": "tpe", "per_decade": 2,
                               "pruner": "asha", "min_resource": None, "reduction_factor": 3, "objective": "reward",
                               "smoothing": 3, "seed": 0}
#: `search.objective` values.
OBJECTIVES = ("reward", "eval")
#: The user attribute a trial's way of closing is kept under, when it did not run to its end (`interrupted`: the
#: sweep was stopped; `dead`: the sweep died while it ran). Such a trial does not count against the budget.
CLOSED = "closed"


@dataclass(frozen=True)
class Search:
    """A parsed `search` section (see the module docstring for each field).

    Attributes:
        ranges: optimizer -> (min, max) learning rate, searched on a log scale.
        trials: trials per study (optimizer x cell of the fixed axes), >= 1.
        sampler, per_decade, pruner, min_resource, reduction_factor, objective, smoothing, seed: as in the file.
    """

    ranges: Mapping[str, tuple[float, float]]
    trials: int
    sampler: str = "tpe"
    per_decade: int = 2
    pruner: str = "asha"
    min_resource: int = 1
    reduction_factor: int = 3
    objective: str = "reward"
    smoothing: int = 3
    seed: int = 0

    def grid(self, optimizer: str) -> list[float]:
        """The log grid over an optimizer's range at `per_decade` points per decade (`log_grid`): the grid sampler's
        learning rates, and the grid the search's budget is compared with."""
        lo, hi = self.ranges[optimizer]
        return log_grid(lo, hi, self.per_decade)


def _int(section: Mapping[str, Any], key: str, lo: int, where: str, hi: int | None = None) -> int:
    value = section.get(key, SEARCH_KEYS[key])
    if not isinstance(value, int) or isinstance(value, bool) or value < lo or (hi is not None and value > hi):
        bound = f">= {lo}" if hi is None else f"in {lo}..{hi}"
        raise BadInput(f"{where}.{key} must be an integer {bound}, got {value!r}")
    return value


def parse_search(section: Any, axes: Mapping[str, Any], source: str) -> Search:
    """The `Search` of a sweep file's `search` section.

    Args:
        section: the parsed `search` mapping.
        axes: the file's `axes` (the fixed axes), checked against the search's keys.
        source: the file name, for messages.

    Raises:
        BadInput: one line naming the key: an unknown key, sampler, pruner or objective; no optimizer; a learning-rate
            range that is not `{min, max}` with 0 < min < max <= 1; trials, smoothing or min_resource < 1;
            reduction_factor < 2; a grid axis over a key the search owns (`axes.optimizer`, an `optimizer.lr`
            override).
    """
    where = f"{source}: search"
    if not isinstance(section, Mapping):
        raise BadInput(f"{where}: give a mapping (optimizer, trials, sampler, pruner, ...)")
    unknown = [k for k in section if k not in SEARCH_KEYS]
    if unknown:
        raise BadInput(f"{where}.{unknown[0]}: unknown key; valid keys: {', '.join(SEARCH_KEYS)}")
    if "optimizer" in axes:
        raise BadInput(f"{source}: axes.optimizer and search.optimizer both set the optimizers; the search owns "
                       f"the optimizer and its learning rate: drop axes.optimizer")
    if any(str(k) in ("optimizer.lr", "optimizer") for k in (axes.get("overrides") or {})):
        raise BadInput(f"{source}: axes.overrides sets the optimizer or its learning rate, which search.optimizer "
                       f"searches: drop it")
    optimizers = section.get("optimizer")
    if not isinstance(optimizers, Mapping) or not optimizers:
        raise BadInput(f"{where}.optimizer: give each optimizer's range, e.g. {{sgd: {{lr: {{min: 1.0e-3, max: "
                       f"1.0e-1}}}}}}")
    from rlvr_cli.core.config import group_options

    ranges = {}
    for name, spec in optimizers.items():
        here = f"{where}.optimizer.{name}"
        if name not in group_options("optimizer"):
            raise BadInput(f"{here}: unknown optimizer; valid: {', '.join(group_options('optimizer'))}")
        lr = spec.get("lr") if isinstance(spec, Mapping) else None
        if not isinstance(lr, Mapping) or set(lr) != {"min", "max"}:
            raise BadInput(f"{here}.lr: give the range searched on a log scale, {{min: LO, max: HI}}")
        lo, hi = lr["min"], lr["max"]
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in (lo, hi)) \
                or not 0 < lo < hi <= 1:
            raise BadInput(f"{here}.lr: a range needs 0 < min < max <= 1, got min={lo!r}, max={hi!r}")
        ranges[str(name)] = (float(lo), float(hi))
    if "trials" not in section:
        raise BadInput(f"{where}.trials: give the number of trials per optimizer, e.g. trials: 6")
    choices = {"sampler": studies.SAMPLERS, "pruner": studies.PRUNERS, "objective": OBJECTIVES}
    for key, valid in choices.items():
        value = section.get(key, SEARCH_KEYS[key])
        if value not in valid:
            raise BadInput(f"{where}.{key}: unknown {key} {value!r}; valid: {', '.join(valid)}")
    if section.get("min_resource") is None:
        raise BadInput(f"{where}.min_resource: give the optimizer steps of the first rung (a trial's first chance "
                       f"to be pruned), e.g. min_resource: 5")
    return Search(ranges=ranges, trials=_int(section, "trials", 1, where), sampler=section.get("sampler", "tpe"),
                  per_decade=_int(section, "per_decade", 1, where, MAX_PER_DECADE),
                  pruner=section.get("pruner", "asha"),
                  min_resource=_int(section, "min_resource", 1, where),
                  reduction_factor=_int(section, "reduction_factor", 2, where),
                  objective=section.get("objective", "reward"), smoothing=_int(section, "smoothing", 1, where),
                  seed=_int(section, "seed", 0, where, MAX_SAMPLER_SEED))


@dataclass(frozen=True)
class Study:
    """One study of a search: an optimizer at one cell of the fixed axes (`cell`), and its Optuna study's `name`."""

    optimizer: str
    cell: Cell
    name: str


def plan_studies(sweep: Sweep, search: Search) -> list[Study]:
    """The studies of a search: every optimizer at every cell of the fixed axes (`sweep.cells`), in that order."""
    return [Study(opt, cell, f"{sweep.name}/{opt}/{cell.name}") for opt in search.ranges for cell in sweep.cells]


def max_steps_of(sweep: Sweep, studies_: Sequence[Study], objective: str = "reward") -> int:
    """`grpo.max_steps` of the search's runs (the same for all: each trial runs them unless pruned), composed from
    every study's cell.

    Raises:
        BadInput: a cell's config is bad (`launch.check_cells`), the runs' max_steps differ, or the objective is
            `eval` and the runs list no `eval.benchmarks`.
    """
    configs = launch.check_cells([Cell(s.cell.name, [*s.cell.overrides, f"optimizer={s.optimizer}"], {})
                                  for s in studies_], sweep.extra)
    if objective == "eval" and not all(c.eval.benchmarks for c in configs):
        raise BadInput(f"{sweep.path.name}: search.objective=eval needs runs that evaluate: add "
                       "eval.benchmarks=[...] to base (the trials are pruned on their smoothed reward meanwhile)")
    steps = {int(c.grpo.max_steps) for c in configs}
    if len(steps) != 1:
        raise BadInput(f"{sweep.path.name}: the search's runs have different grpo.max_steps ({sorted(steps)}); "
                       "a search compares trials at the same steps: set grpo.max_steps in base")
    return steps.pop()


def describe(sweep: Sweep, search: Search, max_steps: int) -> dict[str, Any]:
    """What a search will do, for `--dry-run` and the report: the search space, the pruning schedule and its budget.

    Returns:
        `{"studies": [{"study", "optimizer", "cell", "lr_min", "lr_max", "trials"}], "sampler", "pruner",
        "rungs": [steps], "max_steps", "max_optimizer_steps": the most the search can spend (every trial to the
        end), "min_optimizer_steps": the least (`least_steps`), "grid_optimizer_steps": what the grid over the same
        ranges at per_decade points spends, "search": the section}`; steps are optimizer steps.
    """
    plan = plan_studies(sweep, search)
    rows = [{"study": s.name, "optimizer": s.optimizer, "cell": s.cell.name, "lr_min": search.ranges[s.optimizer][0],
             "lr_max": search.ranges[s.optimizer][1], "trials": trial_budget(search, s.optimizer),
             "grid_points": len(search.grid(s.optimizer))} for s in plan]
    rungs = studies.rungs(search.min_resource, search.reduction_factor, max_steps) \
        if search.pruner in ("asha", "sha", "hyperband") else []
    return {"studies": rows, "sampler": search.sampler, "pruner": search.pruner, "rungs": rungs,
            "max_steps": max_steps, "max_optimizer_steps": sum(r["trials"] for r in rows) * max_steps,
            "min_optimizer_steps": sum(least_steps(search, r["trials"], max_steps) for r in rows),
            "grid_optimizer_steps": sum(r["grid_points"] for r in rows) * max_steps, "search": asdict(search)}


def least_steps(search: Search, trials: int, max_steps: int) -> int:
    """The fewest optimizer steps a study of `trials` trials can spend: its first trial runs to the end (Optuna's
    pruners compare a trial with the others that reached the same step, and the first has none), every other one
    could stop at the first step a pruner may stop it (`min_resource`); with no pruner, every trial runs to the end.
    Exact for asha and median; a lower bound for hyperband, whose brackets each run a first trial to the end. For
    sha, what the promotion schedule spends when no rung has a tie (`promotion.planned_steps`).
    """
    if search.pruner == "none":
        return trials * max_steps
    if search.pruner == "sha":
        return promotion.planned_steps(trials, studies.rungs(search.min_resource, search.reduction_factor,
                                                             max_steps), search.reduction_factor, max_steps)
    return max_steps + (trials - 1) * min(search.min_resource, max_steps)


def trial_budget(search: Search, optimizer: str) -> int:
    """Trials a study runs: `search.trials`, at most the grid's points under the grid sampler."""
    return min(search.trials, len(search.grid(optimizer))) if search.sampler == "grid" else search.trials


def check(sweep: Sweep) -> tuple[Search, int]:
    """Parse and check a search sweep before anything runs: its section, and its runs' configs.

    Returns:
        `(search, max_steps)`.

    Raises:
        BadInput: as `parse_search` and `max_steps_of`; a `min_resource` at or beyond `grpo.max_steps`, or of 1 (a
            rung at step 1 cannot separate trials: no optimizer step has changed the weights).
    """
    search = parse_search(sweep.search, sweep.axes, sweep.path.name)
    max_steps = max_steps_of(sweep, plan_studies(sweep, search), search.objective)
    if search.min_resource < 2 and search.pruner != "none":
        raise BadInput(f"{sweep.path.name}: search.min_resource=1 places a rung at step 1, whose reward every trial "
                       f"of a cell shares (it is sampled before the first optimizer step): give min_resource >= 2")
    if search.min_resource >= max_steps:
        raise BadInput(f"{sweep.path.name}: search.min_resource={search.min_resource} is not below grpo.max_steps="
                       f"{max_steps}: a trial at its last step completes, so no trial could be pruned; give "
                       f"min_resource < max_steps")
    return search, max_steps


# --- the study ------------------------------------------------------------------------------------------------------


def study_attrs(search: Search, max_steps: int, optimizer: str) -> dict[str, Any]:
    """The `search` user attribute of a study: what its trials' runs read (`rlvr_cli.training.pruning`: pruner,
    min_resource, reduction_factor, max_steps, smoothing) and what tells two searches apart."""
    lo, hi = search.ranges[optimizer]
    return {"pruner": search.pruner, "min_resource": search.min_resource,
            "reduction_factor": search.reduction_factor, "max_steps": max_steps, "smoothing": search.smoothing,
            "sampler": search.sampler, "seed": search.seed, "objective": search.objective, "lr_min": lo,
            "lr_max": hi, "per_decade": search.per_decade, "trials": search.trials}


def open_study(store: Any, sweep_dir: Path, st: Study, search: Search, max_steps: int, index: int = 0) -> Any:
    """Create or load the Optuna study `st` in the sweep's storage `store` (`SWEEP_DIR/study.journal`; direction:
    maximize), with the search's pruner and its sampler seeded `search.seed + index` (`index`: the study's place in
    `plan_studies`), so that the studies of one search start from different learning rates and a resumed search
    asks what it would have asked.

    Raises:
        BadInput: the study exists and holds another search (`study_attrs` differ): two searches never share a
            study by accident.
    """
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    attrs = study_attrs(search, max_steps, st.optimizer)
    study = optuna.create_study(study_name=st.name, storage=store,
                                sampler=studies.sampler(search.sampler, search.seed + index,
                                                        search.grid(st.optimizer)),
                                pruner=studies.pruner(search.pruner, search.min_resource, search.reduction_factor,
                                                      max_steps),
                                direction="maximize", load_if_exists=True)
    held = study.user_attrs.get("search")
    if held is None:
        study.set_user_attr("search", attrs)
    elif held != attrs:
        changed = sorted(k for k in attrs if held.get(k) != attrs[k])
        raise BadInput(f"{sweep_dir} holds study {st.name} of another search ({', '.join(changed)} differ); resume "
                       f"it with the same file, or pick another --output-dir")
    return study


def counts_against_budget(trial: Any) -> bool:
    """Whether a trial used its study's budget: it ran (complete, pruned, failed or diverged) or runs now; not one
    closed because the sweep was stopped or died while it ran (`CLOSED`)."""
    return CLOSED not in trial.user_attrs


def objective_of(summary: Mapping[str, Any], objective: str) -> float | None:
    """A completed trial's objective from its summary.json: for `reward`, `reward_mean_last_quarter`, the mean
    reward over the last quarter of its steps, the figure a grid's cells are ranked by (`rlvr report`), so that the
    search's best learning rate and the grid's answer the same question (the smoothed reward a run reports while
    it trains is what the pruner compares at the rungs); for `eval`, the overall avg@k of its final evaluation."""
    if objective == "eval":
        overall = (summary.get("eval") or {}).get("overall") or {}
        value = next((v for k, v in overall.items() if k.startswith("avg@")), None)
    else:
        value = summary.get("reward_mean_last_quarter")
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


def set_trial_attr(store: Any, study: Any, number: int, key: str, value: Any) -> None:
    """Set a user attribute of trial `number` of `study` through its storage (Optuna's storage API: the study's id
    by name, the trial's id by number)."""
    study_id = store.get_study_id_from_name(study.study_name)
    store.set_trial_user_attr(store.get_trial_id_from_study_id_trial_number(study_id, number), key, value)


def tell(store: Any, study: Any, number: int, run: Path, objective: str) -> str:
    """Tell the study how trial `number` ended, from its run directory; return the run's status.

    completed -> its objective (a completed run without one, e.g. no eval, fails); pruned -> pruned; failed,
    diverged -> failed (they count against the budget); interrupted, dead, pending, unknown -> failed and marked
    `CLOSED` (asked again); paused (sha) -> nothing told yet. A final trial's checkpoints are deleted, their bytes
    kept in its `checkpoint_bytes` attribute.
    """
    from optuna.trial import TrialState

    state = run_state(run)
    status, summary = state.status, state.summary or {}
    set_trial_attr(store, study, number, "run_dir", str(run))
    set_trial_attr(store, study, number, "status", status)
    if summary.get("global_step") is not None:
        set_trial_attr(store, study, number, "optimizer_steps", int(summary["global_step"]))
    if status == PAUSED:  # a promotion's trial at its rung: it stays running in the study until promoted or cut
        return status
    if freed := promotion.delete_checkpoints(run):  # a promoted trial that is final now: its paused checkpoints
        set_trial_attr(store, study, number, "checkpoint_bytes", freed)
    if status == COMPLETED and (value := objective_of(summary, objective)) is not None:
        study.tell(number, value, skip_if_finished=True)
    elif status == PRUNED:
        study.tell(number, state=TrialState.PRUNED, skip_if_finished=True)
    else:
        if status in (INTERRUPTED, DEAD, PENDING, UNKNOWN):
            set_trial_attr(store, study, number, CLOSED, status)
        study.tell(number, state=TrialState.FAIL, skip_if_finished=True)
    return status


def trial_cell(st: Study, number: int, lr: float, sweep_dir: Path, pause_at: int | None = None) -> Cell:
    """The cell of trial `number` of study `st` at learning rate `lr`: the fixed axes' cell with the optimizer, the
    learning rate and the trial (`trial.storage`, `trial.study`, `trial.number`, `trial.pause_at`: the first rung
    under sha, else null) set."""
    name = f"{st.optimizer}-t{number:02d}-lr{lr:.3g}_{st.cell.name}"
    storage = (Path(sweep_dir) / studies.STORAGE_FILE).resolve()
    overrides = [*st.cell.overrides, f"optimizer={st.optimizer}", f"optimizer.lr={lr!r}",
                 promotion.trial_override(storage, st.name, number, pause_at, resume=False)]
    return Cell(name, overrides, {"optimizer": st.optimizer, "lr": lr, **st.cell.axes, "trial": number,
                                  "study": st.name})


# --- running it -------------------------------------------------------------------------------------------------


def run(sweep: Sweep, sweep_dir: Path, resume: bool = False, dry_run: bool = False) -> dict[str, Any]:
    """`rlvr sweep SEARCH.yaml`: check the search, then ask, run and tell trials until every study has its budget.

    The sweep directory is locked (`launch.sweep_lock`) from before it is read until the last trial is told, also
    on Ctrl-C: the running trials end `interrupted`, are told as closed (asked again on `--resume`), and the
    `KeyboardInterrupt` goes on to the caller.

    Args:
        sweep: the sweep (`launch.plan`) with its `search` section, launcher and `--max-parallel`.
        sweep_dir: where it lives: `sweep.yaml`, `manifest.json` (every trial asked), `study.journal`, `runs/`.
        resume: continue the search a directory holds.
        dry_run: check and describe it (`describe`), write nothing, run nothing.

    Returns:
        `{"describe": describe(...), "cells": the manifest's cells, "ran": [indices run now], "code": the first
        non-zero exit code of the multiruns}`.

    Raises:
        BadInput: before any trial runs: a bad section or config (`check`); a directory holding another sweep
            (without `resume`) or another search; another `rlvr sweep` holding the directory.
    """
    search, max_steps = check(sweep)
    info = describe(sweep, search, max_steps)
    if dry_run:
        return {"describe": info, "cells": [], "ran": [], "code": 0}
    if manifest_path(sweep_dir).is_file() and not resume:
        raise launch.already_a_sweep(sweep_dir)
    plan = plan_studies(sweep, search)
    with launch.sweep_lock(sweep_dir):
        if manifest_path(sweep_dir).is_file():
            manifest = read_manifest(sweep_dir)
        else:
            launch.copy_sweep_file(sweep.path, sweep_dir)
            manifest = Manifest(name=sweep.name, cells=[])
            write_manifest(sweep_dir, manifest)
        store = studies.storage(sweep_dir / studies.STORAGE_FILE)
        opened = {st.name: open_study(store, sweep_dir, st, search, max_steps, i) for i, st in enumerate(plan)}
        close_stale(store, sweep_dir, manifest, opened, search.objective)
        if search.pruner == "sha":
            ran, code = run_promotion(sweep, sweep_dir, plan, opened, search, max_steps, manifest, store)
            return {"describe": info, "cells": manifest["cells"], "ran": ran, "code": code}
        ran: list[int] = []
        code = 0
        while batch := ask(sweep_dir, plan, opened, search, sweep.max_parallel, manifest, sweep.extra):
            code = code or run_batch(sweep, sweep_dir, manifest, batch, store, opened, search.objective)
            ran += batch
    return {"describe": info, "cells": manifest["cells"], "ran": ran, "code": code}


def run_batch(sweep: Sweep, sweep_dir: Path, manifest: Manifest, batch: Sequence[int], store: Any,
              opened: Mapping[str, Any], objective: str) -> int:
    """Write the manifest, run the trials `batch` (indices into its cells) through the sweep's launcher and tell
    each study how its trials' runs ended, on Ctrl-C too; return the multiruns' first non-zero exit code.

    Raises:
        KeyboardInterrupt: Ctrl-C, once the running trials have ended `interrupted` and been told.
        BadInput: a trial never started (its `rlvr train` refused its input, exit 2, before making its run
            directory): asking more trials would only repeat the refusal. It is closed, so `--resume` asks it again.
    """
    write_manifest(sweep_dir, manifest)
    statuses: dict[int, str] = {}
    try:
        exit_code, _ = launch.launch_cells(sweep, sweep_dir, manifest["cells"], batch)
    finally:  # Ctrl-C too: every trial of the batch is told how its run ended
        for i in batch:
            cell = manifest["cells"][i]
            statuses[i] = tell(store, opened[cell["axes"]["study"]], cell["axes"]["trial"],
                               sweep_dir / cell["run_dir"], objective)
    never = [manifest["cells"][i]["name"] for i in batch if statuses[i] == PENDING]
    if never:  # refused before its run directory existed: every trial asked again would be refused the same way
        raise BadInput(f"trial {never[0]} never started: its rlvr train refused its input (its error is above); fix "
                       f"the search file, then rlvr sweep FILE --resume --output-dir {sweep_dir}")
    return exit_code


def close_stale(store: Any, sweep_dir: Path, manifest: Manifest, opened: Mapping[str, Any], objective: str) -> None:
    """Tell every trial still `running` in its study (the sweep that asked it died before telling it) how its run
    ended: a run that finished is told its result; one that never finished is closed (`CLOSED`), and its budget is
    asked again. A trial the manifest lacks (asked, then the sweep died before writing it) is closed the same."""
    from optuna.trial import TrialState

    cells = {(c["axes"].get("study"), c["axes"].get("trial")): c for c in manifest["cells"]}
    for name, study in opened.items():
        for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING, TrialState.WAITING)):
            cell = cells.get((name, trial.number))
            if cell is None:
                set_trial_attr(store, study, trial.number, CLOSED, DEAD)
                study.tell(trial.number, state=TrialState.FAIL, skip_if_finished=True)
                continue
            tell(store, study, trial.number, sweep_dir / cell["run_dir"], objective)


def ask(sweep_dir: Path, plan: Sequence[Study], opened: Mapping[str, Any], search: Search, max_parallel: int,
        manifest: Manifest, extra: Sequence[str], pause_at: int | None = None) -> list[int]:
    """Ask up to `max_parallel` new trials, round robin over the studies that have budget left, and append their
    cells to `manifest` (in memory; `pause_at`: their `trial.pause_at`); return their indices. An empty list: every
    study has its trials."""
    from optuna.distributions import FloatDistribution

    batch: list[int] = []
    left = {st.name: trial_budget(search, st.optimizer)
            - sum(counts_against_budget(t) for t in opened[st.name].get_trials(deepcopy=False)) for st in plan}
    while len(batch) < max_parallel and any(v > 0 for v in left.values()):
        for st in plan:
            if len(batch) >= max_parallel or left[st.name] <= 0:
                continue
            lo, hi = search.ranges[st.optimizer]
            trial = opened[st.name].ask({"lr": FloatDistribution(lo, hi, log=True)})
            lr = float(trial.params["lr"])
            cell = trial_cell(st, trial.number, lr, sweep_dir, pause_at)
            manifest["cells"].append(ManifestCell(name=cell.name, overrides=[*cell.overrides, *extra],
                                                  axes=cell.axes, run_dir=cell.run_dir))
            batch.append(len(manifest["cells"]) - 1)
            left[st.name] -= 1
    return batch


def read_search(sweep_dir: Path) -> dict[str, Any] | None:
    """The studies of a search sweep directory, for `rlvr report`: study name -> `{"attrs": its search attribute,
    "trials": [{"number", "state", "lr", "value", "status", "closed", "run_dir", "optimizer_steps",
    "checkpoint_bytes": the paused checkpoints deleted once it was final (sha), "intermediate": {step: value}}]}`; None
    when the directory holds no study (a grid)."""
    path = Path(sweep_dir) / studies.STORAGE_FILE
    if not path.is_file():
        return None
    store = studies.storage(path)
    out = {}
    for frozen in store.get_all_studies():
        trials = store.get_all_trials(frozen._study_id, deepcopy=False)
        out[frozen.study_name] = {
            "attrs": frozen.user_attrs.get("search", {}),
            "trials": [{"number": t.number, "state": t.state.name.lower(), "lr": t.params.get("lr"),
                        "value": t.value, "status": t.user_attrs.get("status"), "closed": t.user_attrs.get(CLOSED),
                        "run_dir": t.user_attrs.get("run_dir"), "optimizer_steps": t.user_attrs.get("optimizer_steps"),
                        "checkpoint_bytes": t.user_attrs.get("checkpoint_bytes"),
                        "intermediate": dict(t.intermediate_values)} for t in trials]}
    return json.loads(json.dumps(out))  # plain values (int keys become strings, as in report.json)



def run_promotion(sweep: Sweep, sweep_dir: Path, plan: Sequence[Study], opened: Mapping[str, Any], search: Search,
                  max_steps: int, manifest: Manifest, store: Any) -> tuple[list[int], int]:
    """The rounds of a `pruner: sha` search (`rlvr_cli.sweeps.promotion`): ask every study's trials at once (to
    pause at the first rung), then, round after round, cut the trials a complete rung leaves behind and run the
    rest to their next rung (resumed from their checkpoints), all studies' runs of a round in one launch
    (`--max-parallel` at a time); every run is told how it ended. Returns `(indices run, first non-zero exit code
    of the multiruns)`.

    Raises:
        KeyboardInterrupt: Ctrl-C, once the running trials have ended `interrupted` and been told.
    """
    from optuna.trial import TrialState

    rungs = studies.rungs(search.min_resource, search.reduction_factor, max_steps)
    storage = (Path(sweep_dir) / studies.STORAGE_FILE).resolve()
    ran: list[int] = []
    code = 0
    while True:
        ask(sweep_dir, plan, opened, search, len(plan) * search.trials, manifest, sweep.extra,
            pause_at=rungs[0] if rungs else None)  # synchronous: a study's trials all start at once
        index = {(c["axes"].get("study"), c["axes"].get("trial")): i for i, c in enumerate(manifest["cells"])}
        batch: list[int] = []
        for st in plan:
            study = opened[st.name]
            runs = {t.number: sweep_dir / manifest["cells"][index[(st.name, t.number)]]["run_dir"]
                    for t in study.get_trials(deepcopy=False) if (st.name, t.number) in index}
            views = {t.number: promotion.view(t, runs.get(t.number))
                     for t in study.get_trials(deepcopy=False) if counts_against_budget(t)}
            step = promotion.plan_study(list(views.values()), rungs, search.reduction_factor)
            for cut in step.cut:
                freed = promotion.mark_cut(runs[cut.number], cut)
                for key, value in (("status", PRUNED), ("cut", cut.reason()), ("checkpoint_bytes", freed)):
                    set_trial_attr(store, study, cut.number, key, value)
                study.tell(cut.number, state=TrialState.PRUNED, skip_if_finished=True)
            for number, pause_at in step.run:
                cell = manifest["cells"][index[(st.name, number)]]
                cell["overrides"] = promotion.with_trial(cell["overrides"], promotion.trial_override(
                    storage, st.name, number, pause_at, resume=views[number].step > 0))
                batch.append(index[(st.name, number)])
        if not batch:
            return ran, code
        code = code or run_batch(sweep, sweep_dir, manifest, batch, store, opened, search.objective)
        ran += batch
