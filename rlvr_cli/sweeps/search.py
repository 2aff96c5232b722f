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
from pathlib import Path
from typing import Any

from rlvr_cli.core import study as studies
from rlvr_cli.core.errors import BadInput
from rlvr_cli.core.run_dir import COMPLETED, DEAD, INTERRUPTED, PAUSED, PENDING, PRUNED, UNKNOWN, run_state
from rlvr_cli.sweeps import launch, promotion
from rlvr_cli.sweeps.grid import Cell, Sweep
from rlvr_cli.sweeps.manifest import Manifest, ManifestCell, manifest_path, read_manifest, write_manifest
from rlvr_cli.sweeps.search_spec import Search, Study, check, describe, plan_studies, trial_budget

#: The user attribute a trial's way of closing is kept under, when it did not run to its end (`interrupted`: the
#: sweep was stopped; `dead`: the sweep died while it ran). Such a trial does not count against the budget.
CLOSED = "closed"


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
