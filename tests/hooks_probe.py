"""A `hooks` module for tests/test_axes.py: every hook of `rlvr_cli.training.axes.HOOKS`, each appending its name
(and what it saw) to the file `$RLVR_HOOKS_PROBE`."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def _record(event: str, **seen: Any) -> None:
    with open(os.environ["RLVR_HOOKS_PROBE"], "a") as f:
        f.write(json.dumps({"event": event, **seen}) + "\n")


def check(cfg: Any) -> None:
    _record("check", adapter=cfg.adapter.name)


def trainer_fields(cfg: Any) -> dict[str, Any]:
    _record("trainer_fields")
    return {"logging_first_step": True}


def trainer_class(cls: type, cfg: Any) -> type:
    _record("trainer_class", base=cls.__name__)

    class ProbedTrainer(cls):
        pass

    return ProbedTrainer


def after_model_load(model: Any, cfg: Any, run_path: Path, main: bool) -> None:
    _record("after_model_load", model=type(model).__name__, run=str(run_path), main=main)


def on_save(model: Any, cfg: Any, out: Path) -> None:
    _record("on_save", files=sorted(p.name for p in out.iterdir()))


def summary_fields(model: Any, cfg: Any) -> dict[str, Any]:
    _record("summary_fields")
    return {"probe_trainable": sum(p.numel() for p in model.parameters() if p.requires_grad)}
