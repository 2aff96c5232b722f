"""`rlvr sweep`: a grid of `rlvr train` runs (optimizer x learning rate x adapter x rank x seed x any override).

A sweep file (YAML, see `sweeps/`):

    name: sgd_vs_adamw
    base: [grpo.max_steps=30]                  # overrides of every cell
    axes:
      optimizer:                               # each optimizer with its own learning-rate grid:
        sgd: {lr: [0.01, 0.1]}                 #   a list, or
        adamw: {lr: {min: 1e-6, max: 1e-4, per_decade: 1}}   # a log grid: 1e-6, 1e-5, 1e-4
      adapter:                                 # each adapter with its rank list (full: none)
        full: {}
        lora: {r: [1, 8]}
      seed: [0, 1]
      overrides: {grpo.beta: [0.0, 0.04]}      # any other override, as a list

Cells are the product of the axes. The runs go through Hydra's multirun: `rlvr sweep` writes the
sweep directory and starts `python -m rlvr_cli.sweep_job --multirun cell=0,1,...` with the chosen
launcher plugin (basic: one after another in one process; submitit_local: separate processes, several
at a time; submitit_slurm: SLURM jobs). Each job runs one cell as a `rlvr train` subprocess, so a
cell's crash or Ctrl-C is contained and recorded in its own run directory.

Sweep directory: `sweep.yaml` (the file's copy), `manifest.json` (the cells: name, run_dir,
overrides, axes), `runs/<cell>/` (one `rlvr train` run directory each), `.hydra/` (launcher files).
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from itertools import product
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from rlvr_cli.config import compose, group_options, validate
from rlvr_cli.errors import BadInput
from rlvr_cli.run_dir import read_summary

TOP_KEYS = ("name", "base", "axes")
AXES = ("optimizer", "adapter", "seed", "overrides")
#: Launcher -> its Hydra config (conf/hydra/launcher/local.yaml and slurm.yaml hold rlvr's settings).
LAUNCHER_CONFIGS = {"basic": "basic", "submitit_local": "local", "submitit_slurm": "slurm"}
LAUNCHERS = tuple(LAUNCHER_CONFIGS)
#: Statuses that count as a result: --resume keeps them.
DONE = ("completed", "diverged")


@dataclass(frozen=True)
class Cell:
    """One run of a sweep: its `name` (also its run directory's), Hydra `overrides`, and `axes` values."""

    name: str
    overrides: list[str]
    axes: dict[str, Any] = field(default_factory=dict)

    @property
    def run_dir(self) -> str:
        """The run directory, relative to the sweep directory."""
        return f"runs/{self.name}"


def log_grid(lo: float, hi: float, per_decade: int) -> list[float]:
    """Learning rates from `lo` to `hi` (both > 0), `per_decade` points per factor of ten, 3 significant digits.

    `log_grid(1e-6, 1e-4, 1)` -> `[1e-06, 1e-05, 0.0001]`; `log_grid(0.01, 0.1, 2)` -> `[0.01, 0.0316, 0.1]`.
    """
    n = round(math.log10(hi / lo) * per_decade)
    return [float(f"{lo * 10 ** (i / per_decade):.3g}") for i in range(n + 1)]


def _where(path: str, msg: str) -> BadInput:
    return BadInput(f"{path}: {msg}")


def _lrs(spec: Any, where: str) -> list[float]:
    if isinstance(spec, dict) and set(spec) == {"min", "max", "per_decade"}:
        lo, hi, k = spec["min"], spec["max"], spec["per_decade"]
        if not (isinstance(lo, (int, float)) and isinstance(hi, (int, float)) and 0 < lo <= hi):
            raise _where(where, f"a log grid needs 0 < min <= max, got min={lo}, max={hi}")
        if not isinstance(k, int) or k < 1:
            raise _where(where, f"per_decade must be an integer >= 1, got {k!r}")
        return log_grid(lo, hi, k)
    if not isinstance(spec, list):
        raise _where(where, "give a list of learning rates or {min, max, per_decade}")
    if not spec:
        raise _where(where, "empty learning-rate grid")
    for v in spec:
        if not isinstance(v, (int, float)) or isinstance(v, bool) or v <= 0:
            raise _where(where, f"learning rate must be a number > 0, got {v!r}")
    return [float(v) for v in spec]


def _choices(axes: dict[str, Any], axis: str, where: str) -> dict[str, dict]:
    value = axes.get(axis)
    if value is None:
        return {}
    if isinstance(value, list):  # a bare list of option names
        value = {name: {} for name in value}
    if not isinstance(value, dict) or not value:
        raise _where(where, f"give a non-empty mapping of {axis} options")
    valid = group_options(axis)
    for name, spec in value.items():
        if name not in valid:
            raise _where(f"{where}.{name}", f"unknown {axis} '{name}'; valid options: {', '.join(valid)}")
        if spec is not None and not isinstance(spec, dict):
            raise _where(f"{where}.{name}", "give a mapping, e.g. {lr: [0.01]} or {r: [8]}")
    return {name: spec or {} for name, spec in value.items()}


def _fmt(v: Any) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def expand(sweep: dict[str, Any], source: str = "sweep") -> list[Cell]:
    """The cells of a parsed sweep file, in a stable order (optimizer, lr, adapter, r, other overrides, seed).

    Raises:
        BadInput: naming the place (`sweep.yaml: axes.optimizer.sgd.lr`) of an unknown key, axis or
            option, an empty grid, or a learning rate <= 0.
    """
    unknown = [k for k in sweep if k not in TOP_KEYS]
    if unknown:
        raise _where(f"{source}: {unknown[0]}", f"unknown key; valid keys: {', '.join(TOP_KEYS)}")
    if not isinstance(sweep.get("name"), str) or not sweep["name"]:
        raise _where(f"{source}: name", "the sweep needs a name")
    base = sweep.get("base") or []
    if not isinstance(base, list) or not all(isinstance(o, str) for o in base):
        raise _where(f"{source}: base", "give a list of override strings")
    axes = sweep.get("axes") or {}
    if not isinstance(axes, dict):
        raise _where(f"{source}: axes", "give a mapping of axes")
    for axis in axes:
        if axis not in AXES:
            raise _where(f"{source}: axes.{axis}", f"unknown axis; valid axes: {', '.join(AXES)}")

    opt_points: list[dict[str, Any]] = []
    for name, spec in _choices(axes, "optimizer", f"{source}: axes.optimizer").items():
        extra = [k for k in spec if k != "lr"]
        if extra:
            raise _where(f"{source}: axes.optimizer.{name}.{extra[0]}", "unknown key; valid keys: lr")
        lrs = _lrs(spec["lr"], f"{source}: axes.optimizer.{name}.lr") if "lr" in spec else [None]
        opt_points += [{"optimizer": name, "lr": lr} for lr in lrs]
    ad_points: list[dict[str, Any]] = []
    for name, spec in _choices(axes, "adapter", f"{source}: axes.adapter").items():
        extra = [k for k in spec if k != "r"]
        if extra:
            raise _where(f"{source}: axes.adapter.{name}.{extra[0]}", "unknown key; valid keys: r")
        ranks = spec.get("r", [None])
        if not isinstance(ranks, list) or not ranks:
            raise _where(f"{source}: axes.adapter.{name}.r", "give a non-empty list of ranks")
        for r in ranks:
            if r is not None and (not isinstance(r, int) or isinstance(r, bool) or r < 1):
                raise _where(f"{source}: axes.adapter.{name}.r", f"rank must be an integer >= 1, got {r!r}")
        ad_points += [{"adapter": name, "r": None if name == "full" else r} for r in ranks]
    seeds = axes.get("seed", [None])
    if not isinstance(seeds, list) or not seeds or not all(s is None or isinstance(s, int) for s in seeds):
        raise _where(f"{source}: axes.seed", "give a non-empty list of integer seeds")
    others = axes.get("overrides") or {}
    if not isinstance(others, dict) or any(not isinstance(v, list) or not v for v in others.values()):
        raise _where(f"{source}: axes.overrides", "give a mapping of override key -> non-empty list of values")
    other_points = [dict(zip(others, values, strict=True)) for values in product(*others.values())]

    cells = []
    for opt, ad, other, seed in product(opt_points or [{}], ad_points or [{}], other_points, seeds):
        axes_values = {**opt, **ad, **other, **({"seed": seed} if seed is not None else {})}
        overrides = list(base)
        parts = []
        for point, group, key in ((opt, "optimizer", "lr"), (ad, "adapter", "r")):
            if point:  # e.g. optimizer=sgd optimizer.lr=0.01 -> name part "sgd-lr0.01"
                overrides.append(f"{group}={point[group]}")
                parts.append(point[group])
                if point[key] is not None:
                    overrides.append(f"{group}.{key}={point[key]!r}")
                    parts[-1] += f"-{key}{point[key]:g}"
        for key, value in other.items():
            overrides.append(f"{key}={_fmt(value)}")
            parts.append(f"{key.rsplit('.', 1)[-1]}{_fmt(value)}")
        if seed is not None:
            overrides.append(f"seed={seed}")
            parts.append(f"s{seed}")
        name = "_".join(parts) or "base"
        tags = ",".join(p.replace("=", "") for p in parts)
        overrides += [f"++logger.group={sweep['name']}", f"++logger.tags=[{tags}]"]
        cells.append(Cell(name, overrides, axes_values))
    if len({c.name for c in cells}) != len(cells):
        raise _where(f"{source}: axes", "two cells get the same name; a value is listed twice")
    return cells


def load_sweep(path: Path) -> dict[str, Any]:
    """Parse a sweep file into plain Python values.

    Raises:
        BadInput: the file is missing or is not valid YAML (with the parser's line and column).
    """
    if not path.is_file():
        raise BadInput(f"sweep file not found: {path}")
    try:
        data = OmegaConf.to_container(OmegaConf.load(path), resolve=True)
    except Exception as e:
        raise BadInput(f"{path}: not a valid sweep file: {' '.join(str(e).split())[:200]}") from None
    if not isinstance(data, dict):
        raise BadInput(f"{path}: not a valid sweep file: expected a mapping at the top")
    return data


def check_cells(cells: list[Cell], extra: list[str]) -> None:
    """Compose and validate every cell's config (with the command line's `extra` overrides) before anything runs.

    Raises:
        BadInput: prefixed with the cell's name.
    """
    for cell in cells:
        try:
            validate(compose([*cell.overrides, *extra]))
        except BadInput as e:
            raise BadInput(f"cell {cell.name}: {e}") from None


def status(sweep_dir: Path, cell: dict[str, Any]) -> str:
    """A cell's status: its run's summary.json `status`, or `pending` when it has none."""
    summary = read_summary(sweep_dir / cell["run_dir"])
    return "pending" if summary is None else summary["status"]


def manifest_cells(cells: list[Cell], extra: list[str]) -> list[dict[str, Any]]:
    """The cells as manifest.json lists them: name, axes, run_dir, and the overrides a cell runs with (its own,
    then the command line's `extra`)."""
    return [{**asdict(c), "overrides": [*c.overrides, *extra], "run_dir": c.run_dir} for c in cells]


def prepare(sweep_file: Path, sweep_dir: Path, extra: list[str], resume: bool) -> tuple[list[dict], list[int]]:
    """Create or reopen a sweep directory; return the manifest's cells and the indices of those to run.

    A new directory gets `sweep.yaml` and `manifest.json`. With `resume`, completed and diverged cells
    are kept and every other cell is run again; the old run directory of a failed or interrupted cell
    is moved to `runs/.attempts/<cell>-<time>` first, so nothing is lost.

    Raises:
        BadInput: the directory already holds a sweep and `resume` is off, or `resume` is on and the
            sweep file's cells differ from the manifest's.
    """
    sweep = load_sweep(sweep_file)
    cells = expand(sweep, sweep_file.name)
    manifest_path = sweep_dir / "manifest.json"
    fresh = manifest_cells(cells, extra)
    if manifest_path.is_file():
        if not resume:
            raise BadInput(f"{sweep_dir} already holds a sweep; add --resume to finish it, or pick another "
                           "--output-dir")
        manifest = json.loads(manifest_path.read_text())
        if [c["overrides"] for c in manifest["cells"]] != [c["overrides"] for c in fresh]:
            raise BadInput(f"{sweep_dir} holds a different sweep than {sweep_file}; pick another --output-dir")
    else:
        check_cells(cells, extra)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(sweep_file, sweep_dir / "sweep.yaml")
        manifest = {"name": sweep["name"], "cells": fresh}
        manifest_path.write_text(json.dumps(manifest, indent=2) + "\n")
    todo = []
    for i, cell in enumerate(manifest["cells"]):
        state = status(sweep_dir, cell)
        if state in DONE:
            continue
        old = sweep_dir / cell["run_dir"]
        if old.exists():
            attempts = sweep_dir / "runs" / ".attempts"
            attempts.mkdir(parents=True, exist_ok=True)
            old.rename(attempts / f"{cell['name']}-{time.strftime('%Y%m%d-%H%M%S')}")
        todo.append(i)
    return manifest["cells"], todo


def multirun_command(sweep_dir: Path, todo: list[int], launcher: str, max_parallel: int,
                     launcher_overrides: list[str]) -> list[str]:
    """The `python -m rlvr_cli.sweep_job --multirun ...` command that runs cells `todo` through Hydra
    with `launcher` (one of `LAUNCHERS`, checked by `run`)."""
    cmd = [sys.executable, "-m", "rlvr_cli.sweep_job", "--multirun", f"sweep_dir={sweep_dir.resolve()}",
           f"cell={','.join(map(str, todo))}", f"hydra/launcher={LAUNCHER_CONFIGS[launcher]}"]
    if launcher == "submitit_local":  # submitit runs a whole batch at once; Hydra's sweeper cuts the batches
        cmd.append(f"hydra.sweeper.max_batch_size={max_parallel}")  # time limit, GPUs: conf/hydra/launcher/local.yaml
    if launcher == "submitit_slurm":  # partition, GPUs, time limit: conf/hydra/launcher/slurm.yaml
        cmd.append(f"hydra.launcher.array_parallelism={max_parallel}")
    return cmd + launcher_overrides


def run(sweep_file: Path, sweep_dir: Path, overrides: list[str], launcher: str = "basic", max_parallel: int = 1,
        resume: bool = False, dry_run: bool = False) -> tuple[list[dict], list[int], int]:
    """`rlvr sweep`: check every cell, write the sweep directory, run what is left through Hydra's multirun.

    Args:
        sweep_file: the sweep YAML.
        sweep_dir: where the sweep lives.
        overrides: extra overrides for every cell; those starting with `hydra.` go to the launcher
            (e.g. `hydra.launcher.partition=gpu` for SLURM).
        launcher: basic | submitit_local | submitit_slurm.
        max_parallel: jobs at a time (submitit launchers).
        resume: finish a sweep directory that exists: skip completed and diverged cells.
        dry_run: expand and check the cells, write nothing, run nothing.

    Returns:
        `(cells, indices run, exit code of the multirun)`; the exit code is 0 for a dry run.

    Raises:
        BadInput: before any run starts.
    """
    launcher_overrides = [o for o in overrides if o.startswith("hydra.")]
    extra = [o for o in overrides if not o.startswith("hydra.")]
    if max_parallel < 1:
        raise BadInput(f"--max-parallel must be >= 1, got {max_parallel}")
    if launcher not in LAUNCHERS:
        raise BadInput(f"unknown launcher '{launcher}'; valid launchers: {', '.join(LAUNCHERS)}")
    if dry_run:
        cells = expand(load_sweep(sweep_file), sweep_file.name)
        check_cells(cells, extra)
        return manifest_cells(cells, extra), [], 0
    cells, todo = prepare(sweep_file, sweep_dir, extra, resume)
    if not todo:
        return cells, todo, 0
    cmd = multirun_command(sweep_dir, todo, launcher, max_parallel, launcher_overrides)
    return cells, todo, subprocess.run(cmd).returncode
