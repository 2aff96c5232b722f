"""The value checks that several commands share, each written once. Every one raises `BadInput` with a
one-line message that names the value as the user wrote it (`where`: `optimizer.lr`, `--r`,
`sweep.yaml: axes.adapter.lora.r`) and, where one exists, the fix.

Checks of a single command's own values stay beside the code that uses them.
"""

from __future__ import annotations

import math
from typing import Any

from rlvr_cli.core.errors import BadInput


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _example(where: str, value: str) -> str:
    """`; e.g. optimizer.lr=0.01` where `where` is an override, else nothing (a place in a file)."""
    return "" if " " in where or ":" in where else f"; e.g. {where.lstrip('-')}{'=' if '.' in where else ' '}{value}"


def check_lr(value: Any, where: str = "optimizer.lr") -> float:
    """A learning rate: a finite number > 0 (optimizer steps scale with it; NaN or inf would train nothing).

    Returns:
        The value as a float.

    Raises:
        BadInput: anything else.
    """
    if not _is_number(value) or not math.isfinite(value) or value <= 0:
        raise BadInput(f"{where} must be a finite number > 0, got {value!r}{_example(where, '0.01')}")
    return float(value)


def check_rank(value: Any, where: str = "adapter.r") -> int:
    """An adapter rank r: an integer >= 1 (LoRA, arXiv 2106.09685: the inner dimension of B A).

    Raises:
        BadInput: anything else.
    """
    if not _is_int(value) or value < 1:
        raise BadInput(f"{where} (adapter rank) must be an integer >= 1, got {value!r}{_example(where, '8')}")
    return value


def check_tolerance(value: Any, where: str = "--tolerance") -> float:
    """An update-sparsity tolerance: a finite number >= 0, the absolute difference at or below which a weight
    counts as unchanged (arXiv 2505.11711 uses 1e-5).

    Raises:
        BadInput: anything else.
    """
    if not _is_number(value) or not math.isfinite(value) or value < 0:
        raise BadInput(f"{where} must be a finite number >= 0 (absolute difference; arXiv 2505.11711 uses 1e-5), "
                       f"got {value!r}")
    return float(value)


def check_path_component(value: str, where: str = "run_name",
                         fix: str = "e.g. run_name=sgd-lr0.1, and output_dir=DIR for where it goes") -> str:
    """A name that becomes one directory inside another (a run name inside `output_dir`, a sweep cell's run
    directory inside its sweep): not empty, not `.` or `..`, no `/` (so neither absolute nor nested), no NUL.

    Raises:
        BadInput: naming the value and `fix` (`run_name=../../etc/x` would create the run two levels up).
    """
    name = str(value)
    if name in ("", ".", "..") or "/" in name or "\0" in name:
        raise BadInput(f"{where} must be one directory name (no '/', not '.' or '..'), got {name!r}; {fix}")
    return name


def check_betas(value: Any, where: str) -> list[float]:
    """Adam-style `betas`: two numbers in [0, 1) (Kingma & Ba, arXiv 1412.6980).

    Raises:
        BadInput: anything else.
    """
    ok = isinstance(value, (list, tuple)) and len(value) == 2 and all(
        isinstance(b, (int, float)) and not isinstance(b, bool) and 0 <= b < 1 for b in value)
    if not ok:
        raise BadInput(f"{where} must be two numbers in [0, 1), got {value!r}; e.g. {where}=[0.9,0.999]")
    return [float(b) for b in value]
