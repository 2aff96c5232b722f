"""`manifest.json`: a sweep directory's list of cells. The one definition of its format, writer and reader.

    {
      "name": "smoke",                         # the sweep's name
      "cells": [                               # in cell-index order (`python -m rlvr_cli.sweeps.job cell=i`)
        {
          "name": "sgd-lr0.01_s0",             # the cell's name, also its run directory's
          "overrides": ["optimizer=sgd", ...], # the `rlvr train` overrides the cell runs with
          "axes": {"optimizer": "sgd", ...},   # its axis values (for the report)
          "run_dir": "runs/sgd-lr0.01_s0"      # its run directory, relative to the sweep directory
        }
      ]
    }

`rlvr sweep` makes it from its `rlvr_cli.sweeps.grid.Sweep` (`manifest_of`) and writes it once, atomically
(`write_manifest`); `rlvr sweep --resume`, each sweep job and `rlvr report` read it through `read_manifest`, which
checks it and fails in one line naming the file.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict

from rlvr_cli.core.errors import BadInput, one_line

if TYPE_CHECKING:
    from rlvr_cli.sweeps.grid import Cell, Sweep

FILENAME = "manifest.json"


class ManifestCell(TypedDict):
    """One cell: `name`, `overrides` (Hydra overrides of its `rlvr train`), `axes` (axis -> value) and `run_dir`
    (relative to the sweep directory)."""

    name: str
    overrides: list[str]
    axes: dict[str, Any]
    run_dir: str


class Manifest(TypedDict):
    """The whole file: the sweep's `name` and its `cells` in index order."""

    name: str
    cells: list[ManifestCell]


def manifest_cells(cells: Iterable[Cell], extra: Sequence[str]) -> list[ManifestCell]:
    """The cells as manifest.json lists them: name, the overrides a cell runs with (its own, then the command
    line's `extra`), axes and run_dir.

    Args:
        cells: `rlvr_cli.sweeps.grid.Cell`s, in index order.
        extra: override strings of every cell (not `hydra.*`).
    """
    return [{**asdict(c), "overrides": [*c.overrides, *extra], "run_dir": c.run_dir} for c in cells]


def manifest_of(sweep: Sweep) -> Manifest:
    """The manifest of a sweep (`rlvr_cli.sweeps.grid.Sweep`): its name and its cells with the command line's
    overrides (`manifest_cells`)."""
    return Manifest(name=sweep.name, cells=manifest_cells(sweep.cells, sweep.extra))


def manifest_path(sweep_dir: Path) -> Path:
    """`SWEEP_DIR/manifest.json`."""
    return Path(sweep_dir) / FILENAME


def write_manifest(sweep_dir: Path, manifest: Manifest) -> Path:
    """Write `SWEEP_DIR/manifest.json` atomically (a temporary file beside it, then `os.replace`): a reader, or a
    sweep killed while writing, never leaves half a file.

    Args:
        sweep_dir: an existing sweep directory.
        manifest: `{"name": ..., "cells": [...]}`, written as indented JSON in the given key order.

    Returns:
        The path written.

    Raises:
        OSError: the directory does not exist or is not writable.
    """
    path = manifest_path(sweep_dir)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{FILENAME}-", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(json.dumps(manifest, indent=2) + "\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _check_utf8(text: str, where: str) -> None:
    """Refuse a string that cannot be written as UTF-8 (a lone surrogate, which JSON's `\\udcff` escapes carry):
    it could be neither printed nor written into a report.

    Raises:
        BadInput: naming `where` and the string, escaped.
    """
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        shown = text.encode("utf-8", "backslashreplace").decode("ascii", "backslashreplace")
        raise BadInput(f"{where}: '{shown}' is not valid UTF-8 (a lone surrogate); rename it") from None


def read_manifest(sweep_dir: Path) -> Manifest:
    """Read and check `SWEEP_DIR/manifest.json`.

    Required: an object with a list `cells`, each cell an object with a string `name` and `run_dir`. Optional
    (hand-written manifests may lack them): the sweep's `name` (default: the directory's name), a cell's
    `overrides` (a list of strings, default `[]`) and `axes` (an object, default `{}`); the defaults are filled
    in, so every cell of the result has all four keys.

    Args:
        sweep_dir: a sweep directory written by `rlvr sweep`.

    Returns:
        The manifest.

    Raises:
        BadInput: the directory does not exist, holds no `manifest.json`, or the file does not parse (truncated,
            not JSON, not UTF-8) or has the wrong shape: a string that is no valid UTF-8 (a lone surrogate), an
            axis value that is nan or infinite. The message is one line and names the file.
    """
    sweep_dir = Path(sweep_dir)
    if not sweep_dir.is_dir():
        raise BadInput(f"sweep directory not found: {sweep_dir}")
    path = manifest_path(sweep_dir)
    if not path.is_file():
        raise BadInput(f"{sweep_dir} is not a sweep directory: it has no {FILENAME} (`rlvr sweep` writes one)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, OSError) as e:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise BadInput(f"{path} does not parse: {one_line(e)}") from None
    if not isinstance(data, dict) or not isinstance(data.get("cells"), list):
        raise BadInput(f"{path} does not parse: expected an object with a list of cells")
    name = data.get("name")
    if name is not None and not isinstance(name, str):
        raise BadInput(f"{path} does not parse: name must be a string")
    if name is not None:
        _check_utf8(name, f"{path} does not parse: name")
    cells: list[ManifestCell] = []
    for i, cell in enumerate(data["cells"]):
        if not isinstance(cell, dict) or not isinstance(cell.get("name"), str) \
                or not isinstance(cell.get("run_dir"), str):
            raise BadInput(f"{path} does not parse: cells[{i}] needs a string name and run_dir")
        overrides = cell.get("overrides")
        if overrides is None:
            overrides = []
        if not isinstance(overrides, list) or not all(isinstance(o, str) for o in overrides):
            raise BadInput(f"{path} does not parse: cells[{i}].overrides must be a list of strings")
        axes = cell.get("axes")
        if axes is None:
            axes = {}
        if not isinstance(axes, dict):
            raise BadInput(f"{path} does not parse: cells[{i}].axes must be an object")
        for text in (cell["name"], cell["run_dir"], *overrides, *map(str, axes)):
            _check_utf8(text, f"{path} does not parse: cells[{i}]")
        for key, value in axes.items():
            if isinstance(value, float) and not math.isfinite(value):
                raise BadInput(f"{path} does not parse: cells[{i}].axes.{key} is {value}; a sweep's axis values are "
                               "finite numbers (rlvr sweep refuses nan and inf): fix or remove the cell")
        cells.append({**cell, "name": cell["name"], "overrides": overrides, "axes": axes, "run_dir": cell["run_dir"]})
    return {**data, "name": name or sweep_dir.resolve().name, "cells": cells}
