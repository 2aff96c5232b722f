"""A `hooks` module for tests/test_axes.py: every hook of `rlvr_cli.training.axes.HOOKS`, each appending its name
(and what it saw) to the file `$RLVR_HOOKS_PROBE`."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def _record(event: str, **seen: Any) -> None:
    with open(os.environ["RLVR_HOOKS_PROBE"], "a") as f:
        f.write(json.dumps({"event": event, **seen}) + "\n")


def check(run: Any) -> None:
    _record("check", adapter=run.cfg.adapter.name, world_size=run.world_size, main=run.main)


def trainer_fields(run: Any) -> dict[str, Any]:
    _record("trainer_fields")
    return {"logging_first_step": True}


def trainer_class(cls: type, run: Any) -> type:
    _record("trainer_class", base=cls.__name__)

    class ProbedTrainer(cls):
        pass

    return ProbedTrainer


def callbacks(run: Any, run_path: Path) -> list[Any]:
    from transformers import TrainerCallback

    class StepProbe(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            _record("step", step=state.global_step)

    _record("callbacks", exists=run_path.is_dir())
    return [StepProbe()]


@contextmanager
def serve(run: Any, run_path: Path) -> Iterator[None]:
    _record("serve")
    try:
        yield
    finally:
        _record("serve ends")


def after_model_load(model: Any, run: Any, run_path: Path) -> None:
    _record("after_model_load", model=type(model).__name__, run=str(run_path), main=run.main)


def after_train(trainer: Any, run: Any, run_path: Path, status: str) -> dict[str, Any]:
    _record("after_train", status=status, step=trainer.state.global_step)
    return {"probe_status_seen": status}


def on_save(model: Any, run: Any, out: Path) -> None:
    _record("on_save", files=sorted(p.name for p in out.iterdir()))


def summary_fields(model: Any, run: Any) -> dict[str, Any]:
    _record("summary_fields")
    return {"probe_trainable": sum(p.numel() for p in model.parameters() if p.requires_grad)}
