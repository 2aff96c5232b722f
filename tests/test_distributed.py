"""Runs under a real multi-process launcher (`python -m torch.distributed.run`, i.e. torchrun): two ranks of DDP
over gloo on the CPU give one run directory, one metrics line per step, one summary, one checkpoint, and the same
exit code on every rank."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys

import pytest
from conftest import CHARS, REPO, TINY

from rlvr_cli.core.errors import BadInput
from rlvr_cli.core.run_dir import read_metrics
from rlvr_cli.training.distributed import Launch, launch_env, use_slurm_env


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch(tmp_path, *overrides: str) -> subprocess.CompletedProcess:
    """`torchrun --nproc_per_node 2 -m rlvr_cli.cli train` on tiny-random, 3 optimizer steps."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "tests"), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1"}
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "SLURM_PROCID", "SLURM_NTASKS"):
        env.pop(key, None)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
           str(_free_port()), "-m", "rlvr_cli.cli", "train", *TINY, "grpo.max_steps=3", "sparsity=null",
           f"output_dir={tmp_path}", *overrides]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300, cwd=REPO)


def _one_run(tmp_path) -> tuple[object, dict]:
    runs = [p for p in tmp_path.iterdir() if p.is_dir()]
    assert len(runs) == 1, runs
    return runs[0], json.loads((runs[0] / "summary.json").read_text())


def test_two_ranks_give_one_run_directory_one_line_per_step_and_one_summary(tmp_path):
    """One two-rank run (about 20 s) for both: the run's directory, metrics and summary, and AdamW + LoRA's state
    counted on each rank (full fine-tuning with SGD on two ranks: tests/test_launch.py)."""
    proc = _launch(tmp_path, "optimizer=adamw", "adapter=lora")  # a default run name: both ranks must agree on it
    assert proc.returncode == 0, proc.stderr[-3000:]
    run, summary = _one_run(tmp_path)
    assert summary["status"] == "completed" and summary["global_step"] == 3
    assert summary["world_size"] == 2 and summary["distributed"] == "ddp"  # not accelerate's one-process fallback
    assert [r["step"] for r in read_metrics(run / "metrics.jsonl")] == [1, 2, 3]
    states, peaks = summary["optimizer_state_bytes_per_rank"], summary["peak_memory_bytes_per_rank"]
    assert states[0] == states[1] == summary["optimizer_state_bytes"] > 0  # DDP: a whole AdamW state per rank
    assert summary["optimizer_state_bytes_total"] == sum(states) == 2 * states[0]
    assert len(peaks) == 2 and summary["peak_memory_bytes"] == max(peaks) > 0
    assert sorted(p.name for p in (run / "final").glob("*.safetensors")) == ["adapter_model.safetensors"]
    assert summary["weights_dir"] == str(run / "final")
    assert proc.stdout.count("optimizer steps") == 1  # the summary table, from rank 0 alone
    assert not list(run.glob("traceback*"))


@pytest.mark.slow  # ~16 s of make test's 10 minutes; the ranks' agreement on a refusal runs in the test below
def test_a_divergence_ends_both_ranks_diverged_with_exit_code_3(tmp_path):
    # SGD at lr 1e38: the gradient norm of step 2 is NaN. The logged loss and grad norm are the same on every
    # rank (reduced over ranks), so both guards stop after the same step.
    proc = _launch(tmp_path, "optimizer.lr=1e38", "run_name=nan", *CHARS)
    run, summary = _one_run(tmp_path)
    assert summary["status"] == "diverged" and summary["weights_dir"] is None, summary.get("reason")
    assert proc.returncode != 0
    codes = [int(c) for c in re.findall(r"exitcode\s*:\s*(-?\d+)", proc.stderr)]
    assert codes and set(codes) == {3}, proc.stderr[-3000:]  # every failed rank torchrun lists exited 3
    steps = [r["step"] for r in read_metrics(run / "metrics.jsonl")]
    assert steps == sorted(set(steps))  # one line per step


def test_an_existing_run_directory_is_refused_on_every_rank(tmp_path):
    """What a user of torchrun sees: one refusal, nothing written, and torchrun naming exit code 2 as the root cause.
    Each rank refuses; the first to exit gets torchrun to SIGTERM the others, and a rank still starting then (a
    loaded machine) ends -15 before its own refusal (issue 26: this test asserted every rank's code, and failed so)."""
    (tmp_path / "taken").mkdir()
    proc = _launch(tmp_path, "run_name=taken")
    assert proc.returncode != 0
    assert len([line for line in proc.stderr.splitlines() if "already exists" in line]) == 1, proc.stderr[-3000:]
    assert list((tmp_path / "taken").iterdir()) == []  # nothing written into it
    root = proc.stderr.split("Root Cause (first observed failure):", 1)[-1]
    assert re.search(r"exitcode\s*:\s*2\b", root), proc.stderr[-3000:]  # the first rank to end refused the input
    codes = {int(c) for c in re.findall(r"exitcode\s*:\s*(-?\d+)", proc.stderr)}
    assert codes <= {2, -15}, proc.stderr[-3000:]  # the others refused too, or torchrun ended them first


@pytest.mark.parametrize(("env", "expected"), [
    ({}, Launch()),
    ({"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1"}, Launch(1, 2, 1, "torchrun")),
    ({"SLURM_PROCID": "3", "SLURM_NTASKS": "4", "SLURM_LOCALID": "1"}, Launch(3, 4, 1, "slurm")),
    ({"SLURM_PROCID": "0", "SLURM_NTASKS": "1"}, Launch()),  # one task: no launch
    ({"SLURM_PROCID": "0", "SLURM_NTASKS": "4", "SLURM_STEP_NUM_TASKS": "1"}, Launch()),  # a batch script's step
    ({"RANK": "0", "WORLD_SIZE": "8", "SLURM_PROCID": "1", "SLURM_NTASKS": "2"}, Launch(0, 8, 0, "torchrun")),
])
def test_the_launch_comes_from_the_launchers_environment(env, expected):
    assert launch_env(env) == expected


def test_a_plain_srun_gets_torchs_variables_or_a_one_line_refusal():
    env = {"SLURM_PROCID": "1", "SLURM_NTASKS": "2", "SLURM_LOCALID": "1"}
    with pytest.raises(BadInput, match="MASTER_ADDR and MASTER_PORT not set"):
        use_slurm_env(dict(env))
    env.update(MASTER_ADDR="node1", MASTER_PORT="29500")
    assert use_slurm_env(env) == Launch(1, 2, 1, "slurm")
    assert (env["RANK"], env["WORLD_SIZE"], env["LOCAL_RANK"]) == ("1", "2", "1")


def test_the_most_severe_status_of_any_rank_is_the_runs(monkeypatch):
    from rlvr_cli.training import distributed

    ranks = [{"status": "completed", "reason": None, "figures": {"n": 1}},
             {"status": "diverged", "reason": "loss=nan at step 2", "figures": {"n": 2}},
             {"status": "interrupted", "reason": "stopped by SIGTERM", "figures": {"n": 3}}]
    monkeypatch.setattr(distributed, "gather", lambda value: ranks)
    assert distributed.agree("completed", None, {"n": 1}) == \
        ("diverged", "rank 1: loss=nan at step 2", [{"n": 1}, {"n": 2}, {"n": 3}])
    assert distributed.agree("completed", None, {})[:2] == ("diverged", "rank 1: loss=nan at step 2")
    ranks[0].update(status="diverged", reason="loss=nan at step 2")
    assert distributed.agree("diverged", "loss=nan at step 2", {})[:2] == ("diverged", "loss=nan at step 2")
