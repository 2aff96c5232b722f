"""Optuna studies of a learning-rate search (`rlvr sweep` with a `search:` section): where a study lives, its
samplers and pruners by name, the rungs of successive halving, and the smoothed objective a trial reports. Shared by
the sweep that asks the trials (`rlvr_cli.sweeps.search`) and the runs that report to them
(`rlvr_cli.training.pruning`). Optuna (https://optuna.readthedocs.io) is imported only when a study is opened.

Pruners: `asha` is Optuna's `SuccessiveHalvingPruner`, asynchronous successive halving (Li et al., "A System for
Massively Parallel Hyperparameter Tuning", arXiv 1810.05934): a trial reaching rung k (step `min_resource *
reduction_factor**k`) goes on only if its value is in the top 1/`reduction_factor` of the values trials reached at that
rung; `hyperband` is `HyperbandPruner` (Li et al., arXiv 1603.06560), several such brackets; `median` is
`MedianPruner` (a trial below the median of the others at the same step, after `min_resource` steps); `none` never
prunes. These are the *stopping* variant of successive halving: a stopped trial is lost. `sha` is the *promotion*
variant (Li et al., arXiv 1810.05934, section 3; `rlvr_cli.sweeps.promotion`): every trial pauses at a rung with a
checkpoint, and the sweep resumes the best of the rung; its trials' study has no pruner of its own (`NopPruner`).
Samplers: `tpe` (`TPESampler`, Bergstra et al., NeurIPS 2011, with `constant_liar` for trials run in
parallel), `qmc` (`QMCSampler`, a scrambled Sobol sequence over the log range: trials asked at once, as `sha` asks
them, spread over the range instead of clustering), `grid` (`GridSampler` over a log grid), `random`
(`RandomSampler`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rlvr_cli.core.errors import BadInput, one_line

#: `search.sampler` values.
SAMPLERS = ("tpe", "qmc", "grid", "random")
#: `search.pruner` values.
PRUNERS = ("asha", "sha", "hyperband", "median", "none")
#: The study storage file of a sweep directory: Optuna's journal storage, safe for processes of one host and, on a
#: shared file system, for SLURM jobs (`JournalFileBackend`'s file lock).
STORAGE_FILE = "study.journal"
#: Optuna's name of the system attribute a trial's value at rung k is kept under (`SuccessiveHalvingPruner`).
RUNG_KEY = "completed_rung_{}"


def storage(path: Path) -> Any:
    """Optuna's journal storage in the file `path` (created when missing): `JournalStorage(JournalFileBackend)`.
    Several processes may open it at once; each write takes the file's lock.

    Raises:
        BadInput: the file is damaged (Optuna cannot replay it: not UTF-8, not its JSON records); it is left as it
            is, and the message says how to recover.
    """
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    try:
        return JournalStorage(JournalFileBackend(str(path)))
    except OSError:
        raise
    except Exception as e:  # UnicodeDecodeError, JSONDecodeError, KeyError, TypeError: Optuna's replay of bad records
        raise BadInput(f"{path} is damaged and was left as it is ({type(e).__name__}: {one_line(e, 120)}); restore it "
                       f"from a copy, or run the search again into a new --output-dir (each trial's run directory "
                       f"under runs/ keeps its metrics)") from None


def pruner(name: str, min_resource: int, reduction_factor: int, max_steps: int) -> Any:
    """The Optuna pruner called `name` (`PRUNERS`).

    Args:
        name: asha | hyperband | median | none.
        min_resource: optimizer steps of the first rung (asha, hyperband), or steps before any pruning (median).
        reduction_factor: 1 / the share of trials each rung keeps (asha, hyperband), >= 2.
        max_steps: a trial's optimizer steps (`grpo.max_steps`), hyperband's largest resource.
    """
    import optuna

    if name == "asha":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=min_resource, reduction_factor=reduction_factor)
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=min_resource, max_resource=max_steps,
                                              reduction_factor=reduction_factor)
    if name == "median":
        # Optuna prunes from the step equal to n_warmup_steps on (`step < n_warmup_steps` is skipped), and steps here
        # are optimizer steps from 1: the first chance to prune is step `min_resource`
        return optuna.pruners.MedianPruner(n_startup_trials=1, n_warmup_steps=min_resource)
    return optuna.pruners.NopPruner()


def sampler(name: str, seed: int, grid: Sequence[float] = ()) -> Any:
    """The Optuna sampler called `name` (`SAMPLERS`), seeded so that the asked learning rates repeat.

    Args:
        name: tpe | qmc | grid | random.
        seed: the sampler's seed.
        grid: the learning rates of `grid` (`GridSampler`'s search space `{"lr": grid}`).
    """
    import optuna

    if name == "grid":
        return optuna.samplers.GridSampler({"lr": list(grid)}, seed=seed)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "qmc":
        import warnings

        with warnings.catch_warnings():  # "experimental" since Optuna 3.0; its API is what rlvr uses
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.samplers.QMCSampler(qmc_type="sobol", scramble=True, seed=seed)
    return optuna.samplers.TPESampler(seed=seed, constant_liar=True, n_startup_trials=3)


def rungs(min_resource: int, reduction_factor: int, max_steps: int) -> list[int]:
    """The optimizer steps at which successive halving compares trials: `min_resource * reduction_factor**k` below
    `max_steps`, e.g. `rungs(2, 3, 30)` -> `[2, 6, 18]`. A rung at `max_steps` itself is not one: a trial that
    reaches its last step completes, it is never pruned there (`rlvr_cli.training.pruning.TrialPruning`)."""
    out, step = [], min_resource
    while step < max_steps:
        out.append(step)
        step *= reduction_factor
    return out


def smoothed(values: Sequence[float], window: int) -> float | None:
    """The running mean of the last `window` values (a trial's objective at a step: one noisy GRPO step does not
    decide); None when there are none or they are not finite."""
    tail = [float(v) for v in values[-window:] if v is not None]
    if not tail or not all(math.isfinite(v) for v in tail):
        return None
    return sum(tail) / len(tail)


def rung_threshold(trials: Sequence[Any], rung: int, reduction_factor: int) -> float | None:
    """The value a trial needed at `rung` to go on, by `SuccessiveHalvingPruner`'s rule (the `len // eta`-th best of
    the values trials reached there, the best while fewer than `eta` did); None when no trial reached it.

    Args:
        trials: the study's `FrozenTrial`s.
        rung: the rung's index (0: `min_resource` steps).
        reduction_factor: the pruner's.
    """
    key = RUNG_KEY.format(rung)
    values = sorted(t.system_attrs[key] for t in trials if key in t.system_attrs)
    if not values:
        return None
    return values[-(max(len(values) // reduction_factor - 1, 0) + 1)]
