"""Sweep files: parsing, and the expansion of their axes into cells (one `rlvr train` override list each).

The axes (`rlvr_cli.sweeps.launch` shows a whole file):

    axes:
      optimizer:                       # each optimizer with its learning-rate grid ({}: the optimizer file's lr)
        adamw: {lr: [1.0e-5, 1.0e-4]}  #   a list, or {min: 1.0e-6, max: 1.0e-4, per_decade: 1}
      adapter:                         # each adapter with
        full: {lr: [1.0e-6]}           #   lr: its own grid, replacing the optimizer's for its cells (or a mapping
                                       #       optimizer -> grid, e.g. {adamw: [1.0e-6]}: the others keep theirs)
        lora: {r: [8, 32],             #   r: its ranks (an axis; none for full, ia3, ln_tuning)
               base: [adapter.alpha=64]}  # base: overrides of its cells only, not an axis (alpha, dropout, ...)
        ia3: {}
      seed: [0, 1]
      overrides: {grpo.beta: [0.0, 0.04]}

Cells are the product of the axes, except that an adapter with its own `lr` runs at those learning rates only:
adapters and full fine-tuning want different ones (sweeps/peft_methods.yaml).

A sweep is read once: `load_sweep` parses the file, `expand` makes its cells, and `make_sweep` (or `read_sweep`,
both at once) holds them with the command line's overrides and launcher in one `Sweep`, which `rlvr sweep` hands
to the launch (`rlvr_cli.sweeps.launch`) and the manifest (`rlvr_cli.sweeps.manifest.manifest_of`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from itertools import product
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from rlvr_cli.core.checks import check_lr, check_path_component, check_rank
from rlvr_cli.core.compose import group_options
from rlvr_cli.core.errors import BadInput

TOP_KEYS = ("name", "base", "axes", "search")  # search: a learning-rate search (rlvr_cli.sweeps.search)


AXES = ("optimizer", "adapter", "seed", "overrides")
#: The keys of one adapter of `axes.adapter`: its ranks, its own learning rates, its own base overrides.
ADAPTER_KEYS = ("r", "lr", "base")


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


#: The most points per decade of a log grid (a search's `per_decade` too): past it a grid is a list too long to hold.
MAX_PER_DECADE = 1000


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
        if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= MAX_PER_DECADE:
            raise _where(where, f"per_decade must be an integer in 1..{MAX_PER_DECADE}, got {k!r}")
        return log_grid(lo, hi, k)
    if not isinstance(spec, list):
        raise _where(where, "give a list of learning rates or {min, max, per_decade}")
    if not spec:
        raise _where(where, "empty learning-rate grid")
    return [check_lr(v, where) for v in spec]


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


def _adapter_lrs(spec: Any, optimizers: list[str], where: str) -> dict[str, list[float]]:
    """An adapter's own learning rates, per optimizer of the sweep: `spec` is a list or log grid (`_lrs`) for
    every optimizer, or a mapping optimizer name -> list or log grid for some of them."""
    if not optimizers:
        raise _where(where, "a learning rate per adapter needs an optimizer axis (it replaces that optimizer's "
                            "lr grid); add e.g. axes.optimizer: {adamw: {}}")
    if isinstance(spec, dict) and not set(spec) & {"min", "max", "per_decade"}:
        for name in spec:
            if name not in optimizers:
                raise _where(f"{where}.{name}", f"not an optimizer of this sweep; its optimizers: "
                                                f"{', '.join(optimizers)}")
        return {name: _lrs(lrs, f"{where}.{name}") for name, lrs in spec.items()}
    lrs = _lrs(spec, where)
    return dict.fromkeys(optimizers, lrs)


def expand(sweep: dict[str, Any], source: str = "sweep") -> list[Cell]:
    """The cells of a parsed sweep file, in a stable order (optimizer, lr, adapter, r, other overrides, seed).

    Each optimizer has its learning-rate grid (`axes.optimizer.NAME.lr`); an adapter may carry its own
    (`axes.adapter.NAME.lr`: a list, a log grid, or a mapping optimizer -> either), which replaces the optimizer's
    grid for that adapter's cells (adapters and full fine-tuning want different learning rates: LoRA Without
    Regret, Thinking Machines 2025; arXiv 2602.04998 shows that tuning them per method changes the ranking). Its
    learning rates follow the optimizer's own in the order. An adapter may also carry `base`: overrides of its
    cells only (e.g. `[adapter.alpha=64]` where the method has a scale), which are not axes and not in the names.

    Args:
        sweep: the parsed sweep file (`load_sweep`): `name`, `base` (override strings), `axes`.
        source: the file name, for messages.

    Returns:
        The cells; each has `overrides` = top-level base, `optimizer=`, `optimizer.lr=`, `adapter=`, `adapter.r=`,
        the adapter's base, the other axes, `seed=`, then the W&B group and tags.

    Raises:
        BadInput: naming the place (`sweep.yaml: axes.optimizer.sgd.lr`) of an unknown key, axis or
            option, an empty grid, a learning rate <= 0, a per-adapter learning rate without an optimizer axis
            or for an optimizer the sweep lacks, an adapter base that is not a list of strings, or two cells with
            one name.
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

    optimizers: dict[str, list[float | None]] = {}  # name -> its lr grid ([None]: the optimizer file's lr)
    for name, spec in _choices(axes, "optimizer", f"{source}: axes.optimizer").items():
        extra = [k for k in spec if k != "lr"]
        if extra:
            raise _where(f"{source}: axes.optimizer.{name}.{extra[0]}", "unknown key; valid keys: lr")
        optimizers[name] = _lrs(spec["lr"], f"{source}: axes.optimizer.{name}.lr") if "lr" in spec else [None]
    ad_points: list[dict[str, Any]] = []
    ad_lrs: list[dict[str, list[float]]] = []  # per adapter point: optimizer -> its own lr grid
    ad_base: list[list[str]] = []
    for name, spec in _choices(axes, "adapter", f"{source}: axes.adapter").items():
        where = f"{source}: axes.adapter.{name}"
        extra = [k for k in spec if k not in ADAPTER_KEYS]
        if extra:
            raise _where(f"{where}.{extra[0]}", f"unknown key; valid keys: {', '.join(ADAPTER_KEYS)}")
        ranks = spec.get("r", [None])
        if not isinstance(ranks, list) or not ranks:
            raise _where(f"{where}.r", "give a non-empty list of ranks")
        for r in ranks:
            if r is not None:
                check_rank(r, f"{where}.r")
        lrs = _adapter_lrs(spec["lr"], list(optimizers), f"{where}.lr") if "lr" in spec else {}
        own = spec.get("base") or []
        if not isinstance(own, list) or not all(isinstance(o, str) for o in own):
            raise _where(f"{where}.base", "give a list of override strings, e.g. [adapter.alpha=64]")
        for r in ranks:
            ad_points.append({"adapter": name, "r": None if name == "full" else r})
            ad_lrs.append(lrs)
            ad_base.append(own)
    seeds = axes.get("seed", [None])
    if not isinstance(seeds, list) or not seeds or not all(s is None or isinstance(s, int) for s in seeds):
        raise _where(f"{source}: axes.seed", "give a non-empty list of integer seeds")
    others = axes.get("overrides") or {}
    if not isinstance(others, dict) or any(not isinstance(v, list) or not v for v in others.values()):
        raise _where(f"{source}: axes.overrides", "give a mapping of override key -> non-empty list of values")
    other_points = [dict(zip(others, values, strict=True)) for values in product(*others.values())]

    # (optimizer point, adapter index) in order: per optimizer, its lrs then the adapters' own, each lr with
    # the adapters that run it
    pairs: list[tuple[dict[str, Any], int | None]] = []
    for opt, opt_lrs in (optimizers or {None: [None]}).items():
        lrs_of = [lrs.get(opt, opt_lrs) if opt is not None else opt_lrs for lrs in ad_lrs] or [opt_lrs]
        for lr in dict.fromkeys([*opt_lrs, *(lr for lrs in lrs_of for lr in lrs)]):
            point = {"optimizer": opt, "lr": lr} if opt is not None else {}
            pairs += [(point, i if ad_points else None) for i, lrs in enumerate(lrs_of) if lr in lrs]

    cells = []
    for (opt, i), other, seed in product(pairs, other_points, seeds):
        ad = ad_points[i] if i is not None else {}
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
        if i is not None:
            overrides += ad_base[i]
        for key, value in other.items():
            overrides.append(f"{key}={_fmt(value)}")
            parts.append(f"{key.rsplit('.', 1)[-1]}{_fmt(value)}")
        if seed is not None:
            overrides.append(f"seed={seed}")
            parts.append(f"s{seed}")
        name = check_path_component("_".join(parts) or "base", f"{source}: a cell's name",
                                    "an axis value with '/' cannot name a run directory: list it without one")
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


@dataclass(frozen=True)
class Sweep:
    """One sweep as `rlvr sweep` runs it: its file's grid, made once (`make_sweep`), with the command line's
    overrides and launcher. What the launch (`rlvr_cli.sweeps.launch.run`) and the manifest
    (`rlvr_cli.sweeps.manifest.manifest_of`) are made from.

    Attributes:
        name: the file's `name`: the W&B group of its cells, and the default sweep directory `sweeps_out/<name>`.
        path: the sweep file (copied into the sweep directory as `sweep.yaml`).
        base: the file's `base`: override strings of every cell, before the axes'.
        axes: the file's `axes`, as parsed (plain values: `{"optimizer": {"sgd": {"lr": [0.01]}}, ...}`).
        cells: the expanded cells (`expand`), in index order; their overrides without the command line's.
        extra: the command line's overrides of every cell (not `hydra.*`), applied after each cell's own.
        launcher: the `--launcher` value: basic | submitit_local | submitit_slurm.
        max_parallel: `--max-parallel`, jobs at a time under the submitit launchers (>= 1).
        launcher_overrides: the command line's `hydra.*` overrides, for the multirun.
        launcher_settings: the multirun's `hydra.launcher` settings (`rlvr_cli.sweeps.slurm.launcher_settings`),
            read for submitit_slurm or when there are launcher overrides; None otherwise.
        search: the file's `search` section as parsed (a learning-rate search, `rlvr_cli.sweeps.search`), whose
            trials run at each of `cells` (the fixed axes); None for a grid.
    """

    name: str
    path: Path
    base: tuple[str, ...]
    axes: Mapping[str, Any]
    cells: tuple[Cell, ...]
    extra: tuple[str, ...] = ()
    launcher: str = "basic"
    max_parallel: int = 1
    launcher_overrides: tuple[str, ...] = ()
    launcher_settings: Mapping[str, Any] | None = None
    search: Mapping[str, Any] | None = None

    def overrides(self, i: int) -> list[str]:
        """The overrides cell `i` (0-based index into `cells`) runs with: its own, then `extra`."""
        return [*self.cells[i].overrides, *self.extra]


def make_sweep(data: dict[str, Any], path: Path, overrides: Sequence[str] = (), launcher: str = "basic",
               max_parallel: int = 1, launcher_settings: Mapping[str, Any] | None = None) -> Sweep:
    """The `Sweep` of a parsed sweep file: its cells expanded once (`expand`), the command line's overrides split
    into those of the cells and the launcher's (`hydra.*`).

    Args:
        data: the parsed file (`load_sweep`).
        path: the file, named in messages (by its file name) and copied into the sweep directory.
        overrides: the command line's overrides; those starting with `hydra.` go to the launcher.
        launcher, max_parallel, launcher_settings: as `Sweep` holds them (checked by the caller:
            `rlvr_cli.sweeps.launch.plan`).

    Raises:
        BadInput: `expand`'s errors, naming the place in the file.
    """
    cells = expand(data, path.name)
    return Sweep(name=data["name"], path=Path(path), base=tuple(data.get("base") or ()), axes=data.get("axes") or {},
                 cells=tuple(cells), extra=tuple(o for o in overrides if not o.startswith("hydra.")),
                 launcher=launcher, max_parallel=max_parallel,
                 launcher_overrides=tuple(o for o in overrides if o.startswith("hydra.")),
                 launcher_settings=launcher_settings, search=data.get("search"))


def read_sweep(path: Path, overrides: Sequence[str] = ()) -> Sweep:
    """The `Sweep` of a sweep file under the basic launcher: `make_sweep(load_sweep(path), path, overrides)`.

    Raises:
        BadInput: the file is missing or not YAML (`load_sweep`), or its grid is bad (`expand`).
    """
    return make_sweep(load_sweep(Path(path)), Path(path), overrides)
