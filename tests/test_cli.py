"""The `rlvr` command line: bad input fails in one line before any model loads; signals stop a run cleanly."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import TINY
from typer.testing import CliRunner

from rlvr_cli.cli.main import app
from rlvr_cli.core.run_dir import read_metrics

runner = CliRunner()


def _bad_rows(tmp_path: Path) -> str:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"problem": "1+1?", "answer": "2"}\n{"problem": "2+2?"}\n')
    return str(path)


BAD = {
    "lr_zero": (["optimizer.lr=0"], "optimizer.lr must be a finite number > 0, got 0"),
    "lr_negative": (["optimizer=adamw", "optimizer.lr=-1e-5"], "optimizer.lr must be a finite number > 0, got -1e-05"),
    "lr_nan": (["optimizer.lr=nan"], "optimizer.lr must be a finite number > 0, got nan"),
    "lr_inf": (["optimizer.lr=inf"], "optimizer.lr must be a finite number > 0, got inf"),
    "rank_zero": (["adapter=lora", "adapter.r=0"], "adapter.r (adapter rank) must be an integer >= 1, got 0"),
    "one_generation": (["grpo.num_generations=1"], "grpo.num_generations must be an integer >= 2"),
    "indivisible_batch": (["grpo.num_generations=4", "grpo.per_device_train_batch_size=6"],
                          "= 6 is not divisible by grpo.num_generations = 4"),
    "missing_file": (["data=gsm8k", "data.path=no-such-file.jsonl"], "data file not found: "),
    "unknown_option": (["optimizer=adam_w"], "unknown optimizer 'adam_w'; valid options: adafactor, adagrad, adam,"),
    "unknown_reward": (["+rewards.style=1.0"], "unknown reward 'style'; valid rewards: correctness, correctness_any, "
                       "format"),
    "unknown_grpo_field": (["+grpo.num_generation=4"], "grpo: "),
    "missing_model_dir": (["model.name_or_path=/no/such/model"], "model directory not found: /no/such/model"),
    "negative_tolerance": (["sparsity.tolerance=-1e-5"],
                           "sparsity.tolerance must be a finite number >= 0 (absolute difference; arXiv 2505.11711 "
                           "uses 1e-5), got -1e-05"),
    "sparsity_steps": (["sparsity.every_n_steps=-1"], "sparsity.every_n_steps must be an integer >= 0"),
    "save_format": (["save_format=zip"], "save_format must be one of full, sparse_delta, got 'zip'"),
    "sparse_adapter": (["save_format=sparse_delta", "adapter=lora"], "save_format=sparse_delta is for full "
                                                                     "fine-tuning; adapter=lora runs"),
}


@pytest.mark.parametrize("case", BAD)
def test_bad_input_is_one_line_and_exit_2_before_any_model_loads(case, tmp_path):
    overrides, message = BAD[case]
    result = runner.invoke(app, ["train", *TINY, f"output_dir={tmp_path / 'runs'}", *overrides])
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("error: ") and message in result.stderr
    assert result.stderr.count("\n") == 1
    assert not (tmp_path / "runs").exists()  # the run directory comes before the model, and it never came


def test_jsonl_row_without_answer_names_the_line(tmp_path):
    result = runner.invoke(app, ["train", *TINY, f"output_dir={tmp_path / 'runs'}", "data=jsonl",
                                 f"data.path={_bad_rows(tmp_path)}"])
    assert result.exit_code == 2
    assert f"error: {tmp_path / 'bad.jsonl'}:2: row has no 'answer'" in result.stderr
    assert not (tmp_path / "runs").exists()


def test_diverged_run_exits_3_and_keeps_its_metrics(tmp_path, monkeypatch):
    result = runner.invoke(app, ["train", *TINY, f"output_dir={tmp_path}", "run_name=div", "~rewards.correctness",
                                 "~rewards.format", "+rewards.test_train.huge_reward=1.0",  # by import path
                                 "grpo.scale_rewards=none", "grpo.max_steps=4"])
    assert result.exit_code == 3, result.output
    assert "diverged" in result.stdout
    summary = json.loads((tmp_path / "div" / "summary.json").read_text())
    assert summary["status"] == "diverged" and len(read_metrics(tmp_path / "div" / "metrics.jsonl")) == 1


def test_config_show_prints_the_composed_config():
    result = runner.invoke(app, ["config", "show", "optimizer=nesterov", "adapter=dora", "adapter.r=2"])
    assert result.exit_code == 0
    assert "nesterov: true" in result.stdout and "name: dora" in result.stdout and "r: 2" in result.stdout


def test_version():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.stdout.startswith("rlvr 0.")


@pytest.mark.parametrize("sig", [signal.SIGTERM, pytest.param(signal.SIGINT, marks=pytest.mark.slow)])  # SIGINT: slow
def test_signal_stops_after_the_step_and_keeps_everything(sig, tmp_path):
    run = tmp_path / "run"
    proc = subprocess.Popen(
        [sys.executable, "-m", "rlvr_cli.cli", "train", *TINY, "grpo.max_steps=500", f"output_dir={tmp_path}",
         "run_name=run"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=os.environ.copy())
    deadline = time.time() + 120
    while time.time() < deadline and not (run / "metrics.jsonl").is_file() or not read_metrics(run / "metrics.jsonl"):
        assert proc.poll() is None, "the run ended before the signal"
        time.sleep(0.2)
    proc.send_signal(sig)
    assert proc.wait(timeout=120) == 130
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "interrupted" and summary["reason"] == f"stopped by {sig.name}"
    assert 1 <= summary["global_step"] < 500
    assert [r["step"] for r in read_metrics(run / "metrics.jsonl")] == list(range(1, summary["global_step"] + 1))
    assert (run / "final" / "model.safetensors").is_file()


@pytest.mark.parametrize(("args", "message"), [
    (["eval", "tiny-random", "--k", "abc"], "error: Invalid value for '--k': Input should be a valid integer, unable "
                                            "to parse string as an integer. See 'rlvr eval --help'."),
    (["memory", "70e9", "--num-gpus", "abc"], "error: Invalid value for '--num-gpus': Input should be a valid integer"),
    (["eval", "tiny-random", "--no-such-option"], "error: No such option: --no-such-option"),
])
def test_a_usage_error_of_the_installed_command_is_one_line(args, message):
    """Issue 19, item 8: `--k abc` printed Typer's six-line box; the `rlvr` entry point prints one line, exit 2."""
    proc = subprocess.run([sys.executable, "-m", "rlvr_cli.cli", *args], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stdout == "", proc.stderr
    assert proc.stderr.startswith(message) and proc.stderr.count("\n") == 1, proc.stderr


def test_rlvr_alone_prints_the_help():
    proc = subprocess.run([sys.executable, "-m", "rlvr_cli.cli"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "rlvr train" not in proc.stderr and "train" in proc.stdout, proc.stderr


def test_rlvr_env_reports_what_is_installed():
    """Issue 28, item 4: `rlvr env` (TRL's `trl env`): the versions a bug report needs, as installed."""
    import importlib.metadata
    import platform

    import torch

    done = runner.invoke(app, ["env", "--json"])
    assert done.exit_code == 0, done.output
    info = json.loads(done.stdout)
    assert info["python"] == platform.python_version() and info["cuda_available"] == torch.cuda.is_available()
    for name in ("torch", "transformers", "trl", "peft", "optuna", "hydra-core", "wandb"):
        assert info["packages"][name] == importlib.metadata.version(name)
    assert len(info["gpus"]) == (torch.cuda.device_count() if torch.cuda.is_available() else 0)
    table = runner.invoke(app, ["env"])
    assert table.exit_code == 0 and "transformers" in table.stdout and info["packages"]["trl"] in table.stdout


def test_shell_completion_completes_commands():
    """Issue 28, item 4: completion is on (Typer's `--install-completion`); bash asks the console script itself."""
    env = {**os.environ, "_RLVR_COMPLETE": "complete_bash", "COMP_WORDS": "rlvr sp", "COMP_CWORD": "1"}
    rlvr = Path(sys.executable).parent / "rlvr"
    done = subprocess.run([str(rlvr)], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.split() == ["sparsity"], done.stderr
    assert "--install-completion" in runner.invoke(app, ["--help"]).stdout
