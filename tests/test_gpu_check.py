"""benchmarks/gpu_check.py (the prepared GPU check, issue 18 item 4) on CPU: `--shape tiny` runs the same legs as on
the GPU with a tiny Qwen3 (2 optimizer steps per run) and writes one JSON file whose figures are real; plus the
pieces that pick the defaults and read the figures."""

from __future__ import annotations

import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "gpu_check.py"


@pytest.fixture(scope="module")
def gpu_check():
    """The script as a module (it is no package)."""
    spec = importlib.util.spec_from_file_location("rlvr_benchmarks_gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclass resolves annotations through sys.modules
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop(spec.name, None)


@pytest.mark.slow  # ~40 s: three rlvr train processes
def test_tiny_check_writes_every_figure(tmp_path):
    out = tmp_path / "gpu_check.json"
    proc = subprocess.run([sys.executable, str(SCRIPT), "--shape", "tiny", "--steps", "2", "--fsdp-steps", "2",
                           "--out", str(out), "--work", str(tmp_path / "work")],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r = json.loads(out.read_text())
    assert r["schema"] == "rlvr-gpu-check/1" and r["out"] == str(out) and r["wall_time_s"] > 0
    assert all(r["versions"][k] for k in ("torch", "transformers", "trl", "peft"))
    s = r["settings"]
    assert (s["shape"], s["steps"], s["fsdp_steps"], s["per_device_train_batch_size"]) == ("tiny", 2, 2, 4)
    assert s["precision"] is None and s["precision_overrides"] == []  # tiny passes no precision: rlvr's auto applies
    assert not any(o.startswith("precision=") for o in s["common_overrides"])
    assert {"logger=none", "generation=hf", "sparsity=null"} <= set(s["common_overrides"])
    assert r["model"]["config"]["num_hidden_layers"] == 2 and r["model"]["config"]["vocab_size"] == 65536
    assert (Path(r["model"]["dir"]) / "config.json").is_file()

    est = r["estimate"]
    seq_len = math.ceil(max(run["tokens_per_sequence"] for run in r["runs"].values()))
    ran = {run["precision"]["precision"] for run in r["runs"].values()}  # what auto resolved to on this machine
    assert {run["precision"]["precision_requested"] for run in r["runs"].values()} == {"auto"} and len(ran) == 1
    assert est["command"][:3] == ["rlvr", "memory", r["model"]["dir"]] and est["command"][-2:] == ["--precision", *ran]
    assert est["precision_used"] in ran  # the estimate is for the precision that ran
    assert est["seq_len"] == seq_len > 8 and est["micro_batch"] == 4  # prompt + 8 completion tokens
    for name in ("sgd", "adamw"):
        run = r["runs"][name]
        assert run["status"] == "completed" and run["completed"] and run["exit_code"] == 0, run.get("stderr_tail")
        assert run["steps"] == 2 and len(run["step_times_s"]) == 2 and all(t > 0 for t in run["step_times_s"])
        assert run["step_time_s"] == run["step_times_s"][1] and run["step_time_first_s"] > 0  # median after the first
        assert run["tokens_per_s"] > 0 and run["wall_time_s"] > run["step_time_s"]
        assert isinstance(run["peak_memory_bytes"], int) and run["peak_memory_bytes"] > 0
        assert run["estimate_bytes"] == est["per_gpu"][name]["total"] > 0
        assert run["peak_over_estimate"] == round(run["peak_memory_bytes"] / run["estimate_bytes"], 4)
        assert isinstance(run["within_5pct"], bool)
        assert run["optimizer_state_bytes"] == run["optimizer_state_bytes_analytic"]
        assert run["distributed"] == "none" and f"optimizer={name}" in run["overrides"]
        assert not (Path(run["run_dir"]) / "final").exists()  # weights deleted after the figures were read
    assert r["runs"]["sgd"]["optimizer_state_bytes"] == 0 < r["runs"]["adamw"]["optimizer_state_bytes"]
    assert est["per_gpu"]["sgd"]["optimizer_states"] == 0 < est["per_gpu"]["adamw"]["optimizer_states"]
    if not r["device"]["cuda"]:
        assert r["fsdp"]["status"] == "skipped: needs CUDA" and r["fsdp"]["completed"] is False
        assert {"distributed=fsdp", "distributed.num_processes=1"} <= set(r["fsdp"]["overrides"])
    assert all(leg in proc.stdout for leg in ("sgd", "adamw", "fsdp", "peak/est"))


def test_defaults_come_from_the_shape(gpu_check):
    qwen, tiny = gpu_check.parse_args([]), gpu_check.parse_args(["--shape", "tiny", "--steps", "3"])
    assert (qwen.precision, qwen.steps, qwen.batch, qwen.budget_s) == ("bf16-mixed", 20, 16, 420)
    assert (tiny.precision, tiny.steps, tiny.fsdp_steps, tiny.batch) == (None, 3, 2, 4)
    assert gpu_check.parse_args(["--shape", "tiny", "--precision", "fp32"]).precision == "fp32"


def test_figures_and_wheel_list(gpu_check):
    assert gpu_check.median_after_first([9.0, 1.0, 3.0, 2.0]) == 2.0
    assert gpu_check.median_after_first([4.0]) == 4.0 and gpu_check.median_after_first([]) is None
    assert gpu_check.ratio_fields(104, 100) == {"peak_over_estimate": 1.04, "within_5pct": True}
    assert gpu_check.ratio_fields(None, 100) == {"peak_over_estimate": None, "within_5pct": None}
    # --wheels downloads the versions installed here: every one of them must be installed
    assert all(gpu_check.dist_version(n) for n in (*gpu_check.WHEELS, *gpu_check.BUILT_WHEELS))
    assert gpu_check.SHAPES["qwen3-1.7b"].config["num_hidden_layers"] == 28
    assert gpu_check.SHAPES["qwen3-1.7b"].precision == "bf16-mixed" and gpu_check.SHAPES["tiny"].precision is None
