"""Sweep files: parsing, and the expansion of their axes into cells (one `rlvr train` override list each)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from itertools import product
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from rlvr_cli.core.checks import check_lr, check_rank
from rlvr_cli.core.config import group_options
from rlvr_cli.core.errors import BadInput

TOP_KEYS = ("name", "base", "axes")


AXES = ("optimizer", "adapter", "seed", "overrides")


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
            if r is not None:
                check_rank(r, f"{source}: axes.adapter.{name}.r")
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
