"""What a search file asks (its `search:` block, described in `rlvr_cli.sweeps.search`), checked before anything
runs: `parse_search` reads it into a `Search`, `check` holds it against the sweep's base config, `plan_studies` gives
one `Study` per optimizer x cell of the fixed axes, and `least_steps`, `trial_budget` and `describe` give its budget
in optimizer steps beside the grid over the same range. Running it: `rlvr_cli.sweeps.search`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from rlvr_cli.core import study as studies
from rlvr_cli.core.errors import BadInput
from rlvr_cli.sweeps import launch, promotion
from rlvr_cli.sweeps.grid import MAX_PER_DECADE, Cell, Sweep, log_grid

#: The keys of a `search` section, with their defaults (None: required).
#: The largest sampler seed: study i is seeded `seed + i`, and numpy's generators take seeds below 2**32.
MAX_SAMPLER_SEED = 2**31 - 1


SEARCH_KEYS: dict[str, Any] = {"optimizer": None, "trials": None, "sampler": "tpe", "per_decade": 2,
                               "pruner": "asha", "min_resource": None, "reduction_factor": 3, "objective": "reward",
                               "smoothing": 3, "seed": 0}


#: `search.objective` values.
OBJECTIVES = ("reward", "eval")


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
    from rlvr_cli.core.compose import group_options

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
