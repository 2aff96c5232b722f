"""`rlvr train distributed=... distributed.num_processes=2`: the run starts its own two processes through torch's
launcher and ends as one run; DDP and DeepSpeed ZeRO-2/3 over gloo on the CPU, real signals and a real dead rank.
The composed DeepSpeed and accelerate settings are checked with DeepSpeed's and accelerate's own config classes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import CHARS, REPO, TINY

from rlvr_cli.core.compose import compose_run
from rlvr_cli.core.errors import BadInput
from rlvr_cli.core.run_dir import read_metrics
from rlvr_cli.training import parallelism

TWO = ["distributed.num_processes=2", "distributed.timeout_s=120"]


def _env() -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "tests"), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1"}
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "SLURM_PROCID", "SLURM_NTASKS", "SLURM_STEP_NUM_TASKS"):
        env.pop(key, None)
    return env


def _train(tmp_path: Path, *overrides: str, timeout: int = 300) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "rlvr_cli.cli", "train", *TINY, *CHARS, f"output_dir={tmp_path}", *overrides]
    return subprocess.run(cmd, capture_output=True, text=True, env=_env(), timeout=timeout, cwd=REPO)


def _one_run(tmp_path: Path) -> tuple[Path, dict]:
    runs = [p for p in tmp_path.iterdir() if p.is_dir()]
    assert len(runs) == 1, runs
    return runs[0], json.loads((runs[0] / "summary.json").read_text())


def _children(pid: int) -> list[int]:
    """Every live descendant of `pid` (from /proc)."""
    kids: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            kids.setdefault(ppid, []).append(int(d.name))
    out, todo = [], [pid]
    while todo:
        for k in kids.get(todo.pop(), []):
            out.append(k)
            todo.append(k)
    return out


def _rank_of(pid: int) -> int | None:
    try:
        env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return None
    ranks = [int(e.split(b"=", 1)[1]) for e in env if e.startswith(b"RANK=")]
    return ranks[0] if ranks else None


# --- settings, checked without starting anything ---------------------------------------------------------------


def test_zero_configs_pass_deepspeeds_own_config_class_after_transformers_fills_auto():
    pytest.importorskip("deepspeed")
    from trl import GRPOConfig

    for name in ("zero1", "zero2", "zero3"):
        cfg = compose_run([*TINY, f"distributed={name}", "distributed.offload_optimizer=true"])
        fields = parallelism.trainer_fields(cfg.distributed, cuda=False)
        assert fields["ddp_timeout"] == 1800 and "bf16" not in fields  # no mixed precision on CPU
        ds = fields["deepspeed"]
        assert ds["zero_optimization"]["stage"] == int(name[-1])
        assert ds["zero_optimization"]["offload_optimizer"]["device"] == "cpu"
        args = GRPOConfig(output_dir="/tmp/unused", use_cpu=True, per_device_train_batch_size=4,
                          num_generations=2, **fields)
        assert args.hf_deepspeed_config.config["train_micro_batch_size_per_gpu"] == 4  # "auto" filled
        parallelism.check_deepspeed(args)  # DeepSpeed's DeepSpeedConfig accepts it
        args.hf_deepspeed_config.config["zero_optimization"]["stage"] = "three"
        with pytest.raises(BadInput, match="DeepSpeed rejects the config"):
            parallelism.check_deepspeed(args)


def test_a_deepspeed_config_with_its_own_optimizer_or_scheduler_is_refused(tmp_path):
    for section in ("optimizer", "scheduler"):
        path = tmp_path / f"{section}.json"
        path.write_text(json.dumps({"zero_optimization": {"stage": 2}, section: {"type": "AdamW", "params": {}}}))
        cfg = compose_run([*TINY, "distributed=zero2", f"distributed.deepspeed={path}"])
        with pytest.raises(BadInput, match=f"DeepSpeed `{section}` section, which would silently replace"):
            parallelism.check(cfg)


def test_the_accelerate_config_of_a_run_is_one_accelerate_reads(tmp_path):
    from accelerate.commands.config.config_args import load_config_from_file

    cfg = compose_run([*TINY, "distributed=zero3", "distributed.num_processes=4", "distributed.num_machines=2",
                       "distributed.main_process_ip=10.0.0.1"])
    files = parallelism.launch_files(tmp_path, cfg, ["distributed=zero3", "run_name=x"], processes=8)
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    loaded = load_config_from_file(str(tmp_path / parallelism.ACCELERATE_FILE))
    assert (loaded.distributed_type.value, loaded.num_processes, loaded.num_machines) == ("DEEPSPEED", 8, 2)
    assert loaded.main_process_ip == "10.0.0.1" and loaded.deepspeed_config["zero3_init_flag"] is True
    assert json.loads((tmp_path / parallelism.DEEPSPEED_FILE).read_text())["zero_optimization"]["stage"] == 3
    assert "run_name=x" not in files[parallelism.ACCELERATE_FILE]  # starting it again must not reuse the name


# --- real two-process runs ---------------------------------------------------------------------------------------


@pytest.mark.slow  # ~30 s of make test's 10 minutes; a two-rank DDP run of SGD starts and saves in the SIGTERM test
def test_ddp_sgd_starts_its_two_processes_and_ends_as_one_run(tmp_path):
    proc = _train(tmp_path, "distributed=ddp", *TWO, "optimizer=sgd", "optimizer.lr=0.1")
    assert proc.returncode == 0, proc.stderr[-3000:]
    run, summary = _one_run(tmp_path)
    assert summary["status"] == "completed" and (summary["world_size"], summary["distributed"]) == (2, "ddp")
    assert [r["step"] for r in read_metrics(run / "metrics.jsonl")] == [1, 2]
    assert summary["update_sparsity"]["changed_frac_exact"] > 0  # the weights trained
    assert proc.stdout.count("optimizer steps") == 1  # one summary table, rank 0's
    assert (run / "accelerate_config.yaml").is_file() and "--nproc-per-node 2" in proc.stderr


@pytest.mark.slow  # ~45 s each: two DeepSpeed ranks; make test keeps the two-rank DDP runs
@pytest.mark.parametrize("mode", ["zero1", "zero2"])
def test_zero_adamw_holds_half_the_optimizer_state_on_each_rank(tmp_path, mode):
    pytest.importorskip("deepspeed")
    proc = _train(tmp_path, f"distributed={mode}", *TWO, "optimizer=adamw", "optimizer.lr=1e-3", "--json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout)
    assert summary["distributed"] == mode and summary["world_size"] == 2
    # rlvr's AdamW, partitioned by ZeRO-1 and ZeRO-2 alike: each rank holds exp_avg and exp_avg_sq of half the fp32
    # parameters (plus one step counter per parameter group); a DeepSpeed optimizer would have been refused.
    per_rank, analytic = summary["optimizer_state_bytes_per_rank"], summary["optimizer_state_bytes_analytic"]
    assert len(per_rank) == 2 and all(abs(b - analytic / 2) <= 64 for b in per_rank), (per_rank, analytic)
    assert summary["update_sparsity"]["changed_frac_exact"] > 0


@pytest.mark.slow
def test_zero3_gathers_the_final_weights_for_sparsity_and_a_sparse_delta(tmp_path):
    pytest.importorskip("deepspeed")
    from rlvr_cli.models import sparse_delta

    proc = _train(tmp_path, "distributed=zero3", *TWO, "optimizer=sgd", "optimizer.lr=0.1",
                  "save_format=sparse_delta", "--json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    run, summary = _one_run(tmp_path)
    assert summary["distributed"] == "zero3" and summary["status"] == "completed"
    assert summary["trainable_params"] == summary["total_params"] > 3_000_000  # whole parameters, not slices
    sparsity = summary["update_sparsity"]
    assert summary["update_sparsity_skipped"] is None and sparsity["changed_frac_exact"] > 0
    meta = sparse_delta.read_meta(run / "final")
    assert meta["n_changed"] == round(sparsity["changed_frac_exact"] * sparsity["n_params"])  # the same weights


def _start(tmp_path: Path, sparsity: bool = False) -> tuple[subprocess.Popen, Path]:
    """A two-process DDP run of SGD for many steps, started; returns once both ranks train (a metrics line exists).
    `sparsity`: measure the update sparsity (at the end only), else off."""
    cmd = [sys.executable, "-m", "rlvr_cli.cli", "train", *TINY, *CHARS, f"output_dir={tmp_path}", "run_name=r",
           "distributed=ddp", *TWO, "grpo.max_steps=500", "optimizer=sgd", "optimizer.lr=0.1",
           "sparsity.every_n_steps=0" if sparsity else "sparsity=null"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(), cwd=REPO)
    metrics = tmp_path / "r" / "metrics.jsonl"
    deadline = time.monotonic() + 240
    while not (metrics.is_file() and metrics.read_text().strip()):
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[1][-3000:]
        time.sleep(0.2)
    return proc, tmp_path / "r"


def test_sigterm_to_the_launching_process_stops_every_rank_after_its_step_and_saves(tmp_path):
    """`rlvr train distributed=ddp` of SGD starts its two ranks through torch's launcher and, SIGTERMed, ends as one
    interrupted run whose weights trained (the completed two-rank run: tests/test_distributed.py)."""
    proc, run = _start(tmp_path, sparsity=True)
    workers = _children(proc.pid)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=180)
    summary = json.loads((run / "summary.json").read_text())
    assert proc.returncode == 130 and summary["status"] == "interrupted", err[-3000:]
    assert summary["weights_dir"] and list(Path(summary["weights_dir"]).glob("*.safetensors"))
    assert 0 < summary["global_step"] < 500 and summary["world_size"] == 2
    assert summary["update_sparsity"]["changed_frac_exact"] > 0  # full fine-tuning: the weights trained
    assert out.count("optimizer steps") == 1  # one summary table, rank 0's
    assert (run / "accelerate_config.yaml").is_file() and "--nproc-per-node 2" in err
    assert not [p for p in workers if Path(f"/proc/{p}").exists()]  # no process left behind


@pytest.mark.slow  # ~30 s of make test's 10 minutes; a SIGTERM reaching every rank at once runs in the test above
def test_sigterm_to_one_rank_stops_every_rank_after_the_same_step_naming_it(tmp_path):
    """Issue 19, item 1: a signal to rank 1 alone (kill -TERM of its pid) stopped rank 1 while rank 0 went on into
    the next step's collective and hung there for the collective timeout. The ranks agree on it at the step's end."""
    proc, run = _start(tmp_path)
    rank1 = [p for p in _children(proc.pid) if _rank_of(p) == 1]
    assert rank1
    started = time.monotonic()
    os.kill(rank1[0], signal.SIGTERM)
    _, err = proc.communicate(timeout=180)
    summary = json.loads((run / "summary.json").read_text())
    assert proc.returncode == 130 and summary["status"] == "interrupted", err[-3000:]
    assert summary["reason"] == "stopped by SIGTERM (rank 1)"
    assert summary["weights_dir"] and list(Path(summary["weights_dir"]).glob("*.safetensors"))
    lines = (run / "metrics.jsonl").read_text().splitlines()
    assert summary["global_step"] == json.loads(lines[-1])["step"] == len(lines)  # one last step, the same for all
    assert time.monotonic() - started < 120  # seconds, not the collective timeout


@pytest.mark.slow  # ~25 s of make test's 10 minutes; a failing rank's ending runs in tests/test_distributed.py
def test_a_rank_that_dies_fails_the_run_naming_it_and_leaves_no_process(tmp_path):
    proc, run = _start(tmp_path)
    workers = _children(proc.pid)
    rank1 = [p for p in workers if _rank_of(p) == 1]
    assert rank1, workers
    os.kill(rank1[0], signal.SIGKILL)
    _, err = proc.communicate(timeout=240)
    summary = json.loads((run / "summary.json").read_text())
    assert proc.returncode == 1 and summary["status"] == "failed", err[-3000:]
    assert "rank 1 died (SIGKILL)" in summary["reason"]
    assert "rank 1 died" in err
    records = read_metrics(run / "metrics.jsonl")
    assert summary["global_step"] == (records[-1]["step"] if records else 0)  # what metrics.jsonl says
    assert not [p for p in workers if Path(f"/proc/{p}").exists()]


@pytest.mark.slow  # ~25 s; the SIGTERM-to-one-rank test stays in make test
def test_sigkill_of_the_launcher_ends_every_rank(tmp_path):
    """Issue 19, item 9: the ranks were orphans after a SIGKILL of the launcher (parent 1, each in its own session);
    a parent-death signal now stops each after its step."""
    proc, run = _start(tmp_path)
    workers = _children(proc.pid)
    assert len([p for p in workers if _rank_of(p) is not None]) == 2, workers
    proc.kill()
    proc.communicate(timeout=60)
    deadline = time.monotonic() + 120
    while [p for p in workers if Path(f"/proc/{p}").exists()] and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not [p for p in workers if Path(f"/proc/{p}").exists()]  # no rank left running
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "interrupted" and summary["reason"].startswith("stopped by SIGTERM"), summary


def test_a_launch_whose_ranks_all_refused_bad_input_exits_2_and_leaves_anothers_summary(tmp_path):
    """Issue 19, item 7: two `rlvr train ... run_name=same distributed=ddp` at once. The loser's launcher checked
    before the winner's rank 0 created the directory; its own rank 0 then finds it taken and every rank exits 2.
    The launcher read the winner's summary (`running`), wrote it `failed` and exited 1; it now exits 2 and leaves it."""
    from torch.distributed.elastic.multiprocessing.errors import ProcessFailure

    from rlvr_cli.core import run_dir
    from rlvr_cli.training.launcher import finish

    run = tmp_path / "same"
    run.mkdir()
    (run / "summary.json").write_text(json.dumps({"status": "running", "run_dir": str(run)}))
    before = (run / "summary.json").read_text()
    failures = {r: ProcessFailure(local_rank=r, pid=1000 + r, exitcode=2, error_file="") for r in (0, 1)}
    assert finish(run, failures, None) == 2
    assert (run / "summary.json").read_text() == before and run_dir.read_summary(run)["status"] == "running"

