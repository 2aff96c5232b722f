"""Every failure after the run directory exists ends with a final status in summary.json and a closed W&B run.

Real GRPO on tiny-random, with a fault injected at each stage of the recipe (rlvr_cli/training/recipe.py):
model load, training, saving, evaluation, memory accounting, and a second Ctrl-C.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
from pathlib import Path

import pytest
from conftest import TINY
from transformers import TrainerCallback

from rlvr_cli.core import run_dir
from rlvr_cli.core.compose import compose_run
from rlvr_cli.core.errors import BadInput
from rlvr_cli.models.embedded import tiny_random_dir
from rlvr_cli.training import recipe


def _train(tmp_path, *overrides, callbacks=(), logger="wandb"):
    args = [*TINY, f"output_dir={tmp_path}", "run_name=run", f"logger={logger}", *overrides]
    return recipe.train(compose_run(args), args, progress=False, callbacks=list(callbacks))


def _summary(tmp_path) -> dict:
    return json.loads((tmp_path / "run" / "summary.json").read_text())


def _assert_wandb_closed(tmp_path):
    import wandb

    assert wandb.run is None, "the W&B run was left open"
    assert list((tmp_path / "run" / "wandb").glob("offline-run-*/run-*.wandb")), "no W&B run file"


class Raise(TrainerCallback):
    """Raise `error` at the named trainer event."""

    def __init__(self, event: str, error: BaseException):
        def fail(*args, **kwargs):
            raise error

        setattr(self, event, fail)


class BlockFinal(TrainerCallback):
    """A plain file where the weights directory goes: saving fails as on a full or read-only disk."""

    def on_train_end(self, args, state, control, **kwargs):
        (Path(args.output_dir) / "final").write_text("not a directory")


class CtrlCTwice(TrainerCallback):
    """Two SIGINTs in a row at the first step: the first asks for a stop, the second interrupts at once."""

    def on_step_end(self, args, state, control, **kwargs):
        os.kill(os.getpid(), signal.SIGINT)
        os.kill(os.getpid(), signal.SIGINT)


def test_a_model_that_cannot_exist_is_bad_input_and_keeps_nothing(tmp_path):
    broken = tmp_path / "broken-model"
    broken.mkdir()
    (broken / "config.json").write_text("{not json")
    with pytest.raises(BadInput, match="cannot read model"):
        _train(tmp_path, f"model.name_or_path={broken}")
    assert not (tmp_path / "run").exists()


def test_model_load_failure_ends_failed(tmp_path):
    no_weights = tmp_path / "no-weights"  # a valid config and tokenizer, but the weights are missing
    shutil.copytree(tiny_random_dir(), no_weights, ignore=shutil.ignore_patterns("*.safetensors"))
    summary = _train(tmp_path, f"model.name_or_path={no_weights}")
    assert summary == _summary(tmp_path)
    assert summary["status"] == run_dir.FAILED and summary["reason"].startswith("model load: BadInput")
    assert summary["global_step"] == 0 and summary["weights_dir"] is None
    _assert_wandb_closed(tmp_path)


def test_training_failure_ends_failed_with_its_metrics(tmp_path):
    summary = _train(tmp_path, "grpo.max_steps=3", callbacks=[Raise("on_step_end", RuntimeError("injected"))])
    assert summary == _summary(tmp_path)
    assert "RuntimeError: injected" in Path(summary["traceback"]).read_text()  # the traceback is kept
    assert summary["status"] == run_dir.FAILED
    assert summary["reason"] == "training: RuntimeError: injected"
    assert summary["trainable_params"] == summary["total_params"]  # the figures are still there
    _assert_wandb_closed(tmp_path)


def test_saving_failure_ends_failed(tmp_path):
    summary = _train(tmp_path, callbacks=[BlockFinal()])
    assert summary == _summary(tmp_path)
    assert summary["status"] == run_dir.FAILED and summary["reason"].startswith("saving: ")
    assert summary["global_step"] == 2 and summary["weights_dir"] is None
    assert len(run_dir.read_metrics(tmp_path / "run" / "metrics.jsonl")) == 2  # what was logged is kept
    _assert_wandb_closed(tmp_path)


def test_evaluation_failure_ends_failed_with_the_weights_kept(tmp_path, monkeypatch):
    def broken_eval(*args, **kwargs):
        raise RuntimeError("grader crashed")

    monkeypatch.setattr(recipe, "evaluate_model", broken_eval)  # the fault: evaluation raises
    summary = _train(tmp_path, "eval.benchmarks=[gsm8k]", "eval.limit=1", "eval.k=1", "eval.max_new_tokens=4")
    assert summary == _summary(tmp_path)
    assert summary["status"] == run_dir.FAILED
    assert summary["reason"] == "evaluation: RuntimeError: grader crashed"
    assert (Path(summary["weights_dir"]) / "model.safetensors").is_file()
    _assert_wandb_closed(tmp_path)


def test_memory_accounting_failure_ends_failed(tmp_path, monkeypatch):
    def no_model(*args, **kwargs):
        raise BadInput("optimizer=sgd: no memory model")

    monkeypatch.setattr(recipe.memory, "run_memory_analytic", no_model)  # the fault: the analytic memory raises
    summary = _train(tmp_path)
    assert summary == _summary(tmp_path)
    assert summary["status"] == run_dir.FAILED
    assert summary["reason"] == "memory accounting: BadInput: optimizer=sgd: no memory model"
    assert summary["figures_error"] == "BadInput: optimizer=sgd: no memory model"
    _assert_wandb_closed(tmp_path)


def test_second_ctrl_c_ends_interrupted(tmp_path):
    summary = _train(tmp_path, "grpo.max_steps=5", callbacks=[CtrlCTwice()])
    assert summary == _summary(tmp_path)
    assert summary["status"] == run_dir.INTERRUPTED
    assert summary["reason"] == "KeyboardInterrupt during training"
    _assert_wandb_closed(tmp_path)


def test_ctrl_c_after_training_returned_ends_interrupted(tmp_path, monkeypatch):
    def ctrl_c(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(recipe, "save_weights", ctrl_c)  # the fault: Ctrl-C while the weights are saved
    summary = _train(tmp_path, logger="none")
    assert summary["status"] == run_dir.INTERRUPTED and summary["global_step"] == 2
    assert summary["reason"] == "KeyboardInterrupt during saving"
    assert _summary(tmp_path) == summary
