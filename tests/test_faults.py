"""Faults during a run, injected for real on tiny-random: weights that turn non-finite, a lost output directory,
a full disk (a 4 MB tmpfs), a signal the moment the run directory appears, and the CLI's one-line failure.
The real-model divergence of SmolLM2 at lr 1e10 is under `make test-slow`."""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import CHARS, TINY
from transformers import TrainerCallback

from rlvr_cli.core import run_dir
from rlvr_cli.core.compose import compose_run
from rlvr_cli.training import recipe


def _train(tmp_path, *overrides, callbacks=()):
    args = [*TINY, f"output_dir={tmp_path}", "run_name=run", "sparsity=null", *CHARS, *overrides]
    return recipe.train(compose_run(args), args, progress=False, callbacks=list(callbacks))


class Poison(TrainerCallback):
    """Set one trainable weight to NaN at the given event of optimizer step `step`."""

    def __init__(self, event: str, step: int = 1):
        def poison(args, state, control, model=None, **kwargs):
            if state.global_step in (step, step - 1) and not getattr(self, "done", False):
                self.done = True
                with torch.no_grad():
                    next(p for p in model.parameters() if p.requires_grad).view(-1)[0] = math.nan

        setattr(self, event, poison)


def test_weights_that_turn_nan_in_a_step_end_the_run_diverged(tmp_path):
    summary = _train(tmp_path, "grpo.max_steps=4", callbacks=[Poison("on_optimizer_step")])
    assert summary["status"] == run_dir.DIVERGED
    assert summary["reason"].startswith("non-finite weights after step 1 (")
    assert summary["global_step"] == 1 and summary["weights_dir"] is None  # non-finite weights are not saved
    assert not (tmp_path / "run" / "final").exists()


def test_sampling_from_broken_weights_is_a_divergence_not_a_failure(tmp_path):
    # NaN weights after the guard has looked: the next generation samples from NaN probabilities and raises
    summary = _train(tmp_path, "grpo.max_steps=4", callbacks=[Poison("on_step_end")])
    assert summary["status"] == run_dir.DIVERGED, summary["reason"]
    assert summary["reason"].startswith("non-finite weights after step 1 (") and "; then " in summary["reason"]
    assert summary["weights_dir"] is None


class RemoveRunDir(TrainerCallback):
    def on_step_end(self, args, state, control, **kwargs):
        shutil.rmtree(args.output_dir)


def test_a_lost_output_directory_ends_failed_with_one_line_on_stderr(tmp_path, capsys):
    summary = _train(tmp_path, "grpo.max_steps=3", callbacks=[RemoveRunDir()])
    assert summary["status"] == run_dir.FAILED and summary["reason"].startswith("training: FileNotFoundError")
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error")]
    assert len(errors) == 1 and errors[0].startswith("error: cannot write ") and "the run ended failed" in errors[0]


@pytest.fixture
def tiny_disk(tmp_path):
    """A 4 MB tmpfs: room for the run directory, not for tiny-random's 13 MB of weights."""
    mount = tmp_path / "disk"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_full_disk_while_saving_ends_failed_without_partial_weights(tiny_disk):
    summary = _train(tiny_disk)
    assert summary["status"] == run_dir.FAILED
    assert summary["reason"].startswith("saving: ") and "No space left on device" in summary["reason"]
    assert not (tiny_disk / "run" / "final").exists()  # the partial checkpoint is removed, freeing the disk
    assert json.loads((tiny_disk / "run" / "summary.json").read_text())["status"] == run_dir.FAILED


def _cli(*args: str, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "rlvr_cli.cli", "train", *TINY, *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)


@pytest.mark.parametrize("sig", [signal.SIGTERM, pytest.param(signal.SIGINT, marks=pytest.mark.slow)])  # SIGINT: slow
def test_a_signal_the_moment_the_run_directory_appears_ends_interrupted(tmp_path, sig):
    proc = _cli(f"output_dir={tmp_path}", "run_name=run", "grpo.max_steps=50")
    summary = tmp_path / "run" / "summary.json"
    deadline = time.monotonic() + 120
    while not summary.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    proc.send_signal(sig)
    proc.communicate(timeout=120)
    assert proc.returncode == 130
    final = json.loads(summary.read_text())
    assert final["status"] == run_dir.INTERRUPTED and final["reason"].startswith(f"stopped by {sig.name}")


def test_a_failed_run_prints_one_line_and_no_traceback(tmp_path):
    from rlvr_cli.models.embedded import tiny_random_dir

    no_weights = tmp_path / "no-weights"
    shutil.copytree(tiny_random_dir(), no_weights, ignore=shutil.ignore_patterns("*.safetensors"))
    proc = _cli(f"output_dir={tmp_path / 'runs'}", "run_name=run", f"model.name_or_path={no_weights}")
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 1
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith("error: run failed: model load: BadInput")
    assert "Traceback" not in err
    assert "Traceback" in (tmp_path / "runs" / "run" / "traceback.txt").read_text()


def test_a_reason_that_looks_like_rich_markup_prints_as_it_is(tmp_path):
    """Issue 19, item 4: a reason holding `[/...]` (every gloo error names its source file so; here a model path)
    is printed as the one line it is, not parsed as Rich markup (which raised MarkupError and printed a traceback)."""
    from rlvr_cli.models.embedded import tiny_random_dir

    no_weights = tmp_path / "models[" / "tiny]"  # the path holds "[/tiny]": a closing tag to Rich
    shutil.copytree(tiny_random_dir(), no_weights, ignore=shutil.ignore_patterns("*.safetensors"))
    proc = _cli(f"output_dir={tmp_path / 'runs'}", "run_name=run", f"model.name_or_path='{no_weights}'")
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 1, err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and str(no_weights) in errors[0] and "Traceback" not in err


@pytest.mark.slow
def test_a_real_divergence_of_the_embedded_model_ends_diverged(tmp_path):
    """SmolLM2-135M at lr 1e10: the weights break in a step whose loss and gradient norm are finite. A dense reward
    (completion length) beside the demo's gives every step a gradient: with the demo's rewards alone, seed 0 in
    bf16-mixed drew groups of equal rewards for all 5 steps (zero advantages, gradient norm 0), so nothing broke."""
    env = {**os.environ, "WANDB_MODE": "offline"}
    proc = subprocess.run([sys.executable, "-m", "rlvr_cli.cli", "train", "logger=none", "optimizer.lr=1e10",
                           "grpo.max_steps=5", f"output_dir={tmp_path}", "run_name=run",
                           "+rewards.rlvr_cli.training.rewards.completion_length_reward=1.0"],
                          capture_output=True, text=True, env=env, timeout=1200)
    assert proc.returncode == 3, proc.stderr[-2000:]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["status"] == run_dir.DIVERGED and summary["weights_dir"] is None
    assert "non-finite" in summary["reason"] or "nan" in summary["reason"]
    assert Path(tmp_path / "run" / "metrics.jsonl").read_text()
