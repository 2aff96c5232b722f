"""Issue 26, item 2: the cases of the second failure probe that ended in a traceback, each now one line that names
the value and the fix (exit 2 for bad input), before a model loads wherever the value can be checked then, and
nothing made on the way. Through the real CLI (`rlvr_cli.cli.main.app`), on real files."""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import REPO, TINY
from typer.testing import CliRunner

from rlvr_cli.cli.main import app

runner = CliRunner()

#: `rlvr eval tiny-random` on two GSM8K problems (the shared data), then the case's options.
EVAL = ["eval", "tiny-random", "--benchmarks", "gsm8k", "--limit", "2"]

#: case -> (arguments, text the one-line error holds). `{tmp}` is the test's temporary directory.
CASES = {
    # rlvr eval
    "eval_temperature_nan": ([*EVAL, "--temperature", "nan"],
                             "--temperature must be a finite number >= 0 (0: greedy), got nan"),
    "eval_top_p_nan": ([*EVAL, "--top-p", "nan"], "--top-p must be in (0, 1], got nan"),
    "eval_seed_huge": ([*EVAL, "--seed", str(2**64)], "--seed must be an integer in 0..4294967295"),
    "eval_k_huge": ([*EVAL, "--k", "1000000000"], "--k 1000000000 is more completions per problem than rlvr keeps"),
    "eval_k_times_problems": ([*EVAL, "--limit", "20", "--k", "1000000"],
                              "k x problems = 20,000,000 completions, more than rlvr keeps (10,000,000)"),
    "eval_max_new_tokens_past_context": ([*EVAL, "--max-new-tokens", "99999999999"],
                                         "--max-new-tokens 99999999999 is past the model's context of 1024 tokens"),
    "eval_output_dir_file": ([*EVAL, "--output-dir", "{tmp}/file"], "--output-dir {tmp}/file is a file"),
    "eval_output_dir_proc": ([*EVAL, "--output-dir", "/proc/rlvr-x"], "--output-dir /proc/rlvr-x is not writable"),
    # rlvr memory
    "memory_count_overflow": (["memory", "1e400"], "parameter count must be a whole number >= 1 and <= 1e15"),
    "memory_count_huge": (["memory", "1e16"], "parameter count must be a whole number >= 1 and <= 1e15"),
    "memory_gpu_overflow": (["memory", "7e9", "--gpu-memory", "1e400"], "at most 1PB, got '1e400'"),
    "memory_rank_huge": (["memory", "tiny-random", "--adapter", "lora", "--r", "1000000000"],
                         "--r 1000000000 is above the largest rank of any weight matrix of tiny-random (64)"),
    # rlvr sparsity
    "sparsity_output_dir_file": (["sparsity", "tiny-random", "tiny-random", "--output-dir", "{tmp}/file"],
                                 "--output-dir {tmp}/file is a file"),
    "sparsity_shapes": (["sparsity", "tiny-random", "{tmp}/wide"],
                        "BASE and TARGET differ in shape at model.layers.0.mlp.gate_proj.weight"),
    # rlvr train on a hub dataset (a local dataset directory: no network) without the split asked for
    "hub_split": (["train", *TINY, "output_dir={tmp}/out", "data=hub", "data.hub.id={tmp}/dataset",
                   "data.hub.split=validation"], "split 'validation'): Unknown split"),
}


def _wide_model(path: Path) -> None:
    """tiny-random with MLPs twice as wide: a model whose shapes differ from tiny-random's."""
    from transformers import AutoConfig, AutoModelForCausalLM

    from rlvr_cli.models.embedded import tiny_random_dir

    config = AutoConfig.from_pretrained(tiny_random_dir())
    config.intermediate_size *= 2
    AutoModelForCausalLM.from_config(config).save_pretrained(path)


@pytest.mark.parametrize("case", CASES)
def test_a_probe_case_is_one_line_and_exit_2(case, tmp_path, monkeypatch, request):
    args, message = CASES[case]
    (tmp_path / "file").write_text("a file where a directory would go")
    if case == "sparsity_shapes":
        _wide_model(tmp_path / "wide")
    if case == "hub_split":
        (tmp_path / "dataset").mkdir()
        (tmp_path / "dataset" / "train.jsonl").write_text('{"problem": "1+1", "answer": "2"}\n')
        monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf"))
        monkeypatch.delenv("RLVR_DATA_DIR")  # no data directory: data=hub takes the dataset from data.hub.id
        import datasets

        datasets.disable_progress_bars()  # datasets' "Generating train split" bars: the refusal itself is one line
        request.addfinalizer(datasets.enable_progress_bars)
    before = sorted(p.name for p in tmp_path.iterdir())
    r = runner.invoke(app, [a.replace("{tmp}", str(tmp_path)) for a in args])
    assert r.exit_code == 2, r.output
    assert r.stderr.startswith("error: ") and r.stderr.count("\n") == 1, r.stderr
    assert message.replace("{tmp}", str(tmp_path)) in r.stderr, r.stderr
    made = sorted(p.name for p in tmp_path.iterdir())
    assert set(made) - set(before) <= {"hf"}, made  # no output or run directory made on the way


def test_a_sweep_file_in_its_own_output_directory_named_with_hydra_grammar_runs(tmp_path):
    """Two probe cases in one sweep (a cell costs about 10 s): `shutil.copyfile` refused to copy a sweep file kept in
    its output directory onto itself (SameFileError), and `[`, `,` and `=` in the output directory's name broke
    Hydra's override grammar (`sweep_dir=...`)."""
    out = tmp_path / "runs [a,b] x=1 it's"
    out.mkdir()
    sweep_file = out / "sweep.yaml"
    sweep_file.write_text("name: one\nbase: [" + ", ".join(TINY) + ", sparsity=null]\naxes:\n  optimizer:\n"
                          "    sgd: {lr: [0.01]}\n  seed: [0]\n")
    r = runner.invoke(app, ["sweep", str(sweep_file), "--output-dir", str(out), "--json"])
    assert r.exit_code == 0, r.output
    assert [c["status"] for c in json.loads(r.stdout)["cells"]] == ["completed"]
    assert (out / "runs" / "sgd-lr0.01_s0" / "summary.json").is_file()


def _search_dir(tmp_path: Path, journal: bytes) -> tuple[Path, Path]:
    """A search file (sweeps/search_smoke.yaml) and a sweep directory of it holding a manifest without trials and
    the study journal `journal`."""
    sweep_file = tmp_path / "s.yaml"
    shutil.copy(REPO / "sweeps" / "search_smoke.yaml", sweep_file)
    out = tmp_path / "sw"
    out.mkdir()
    shutil.copy(sweep_file, out / "sweep.yaml")
    (out / "manifest.json").write_text(json.dumps({"name": "search_smoke", "cells": []}))
    (out / "study.journal").write_bytes(journal)
    return sweep_file, out


@pytest.mark.parametrize("journal", [bytes(range(256)) * 4, b'{"op_code": 0, "worker_id": "w"}\n{"op_code": 1}\n'],
                         ids=["binary", "records_without_fields"])
def test_a_damaged_study_journal_is_named_and_never_rewritten(tmp_path, journal):
    sweep_file, out = _search_dir(tmp_path, journal)
    for args in (["report", str(out)], ["sweep", str(sweep_file), "--output-dir", str(out), "--resume"]):
        r = runner.invoke(app, args)
        assert r.exit_code == 2, r.output
        assert r.stderr.count("\n") == 1 and f"{out / 'study.journal'} is damaged and was left as it is" in r.stderr
        assert "restore it from a copy, or run the search again into a new --output-dir" in r.stderr
        assert (out / "study.journal").read_bytes() == journal


@pytest.mark.parametrize(("name", "make", "message"), [
    ("plots", lambda p: p.write_text("mine"), "plots is a file, where rlvr report writes its plots; move it away"),
    ("report.csv", lambda p: p.mkdir(), "report.csv is a directory, where rlvr report writes a file; move it away"),
])
def test_report_outputs_of_the_wrong_kind_are_refused_before_anything_is_written(tmp_path, name, make, message):
    sweep_file, out = _search_dir(tmp_path, b"")
    make(out / name)
    (out / "notes.bin").write_bytes(b"\xff\xfe\x00 a user's own file, not UTF-8")
    r = runner.invoke(app, ["report", str(out)])
    assert r.exit_code == 2 and r.stderr.count("\n") == 1 and message in r.stderr, r.output
    assert not (out / "report.json").exists()


def _search_on(tmp_path: Path, model: Path) -> Path:
    """sweeps/search_smoke.yaml with 1 SGD trial on the model directory `model`."""
    path = tmp_path / "s.yaml"
    data = yaml.safe_load((REPO / "sweeps" / "search_smoke.yaml").read_text())
    data["search"].update(optimizer={"sgd": {"lr": {"min": 1e-3, "max": 1e-1}}}, trials=1)
    data["base"].append(f"model.name_or_path={model}")
    path.write_text(yaml.safe_dump(data))
    return path


def test_a_search_whose_trials_all_failed_reports_without_a_plot_of_nothing(tmp_path):
    """matplotlib's log scale had no positive value to draw when every trial had failed."""
    from conftest import damaged_model

    model, weights = damaged_model(tmp_path, "garbage")
    weights.unlink()  # missing weights: every trial fails at its model load, after its run directory exists
    out = tmp_path / "sw"
    r = runner.invoke(app, ["sweep", str(_search_on(tmp_path, model)), "--output-dir", str(out), "--json"])
    assert r.exit_code == 0, r.output  # the search ran; its trials' failures are in the report
    assert {t["state"] for t in json.loads(r.stdout)["report"]["search"][0]["trials"]} == {"fail"}
    r = runner.invoke(app, ["report", str(out)])
    assert r.exit_code == 0, r.output
    assert "no trial of the search has completed or been pruned with an objective yet" in r.stdout


def test_a_search_whose_trial_is_refused_stops_instead_of_asking_forever(tmp_path):
    """A trial refused before its run directory existed was closed and asked again, forever (found writing the
    test above: 63 trials in a minute)."""
    out = tmp_path / "sw"
    r = runner.invoke(app, ["sweep", str(_search_on(tmp_path, tmp_path / "no-model")), "--output-dir", str(out)])
    assert r.exit_code == 2, r.output
    assert r.stderr.strip().splitlines()[-1].startswith("error: trial sgd-t00-"), r.stderr
    assert "never started: its rlvr train refused its input" in r.stderr
    assert len(json.loads((out / "manifest.json").read_text())["cells"]) == 1


def _full_disk(tmp_path: Path) -> Path:
    """A 256 KiB tmpfs, filled up; skips where mounting is not allowed (not root, a container without it)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(disk)], capture_output=True).returncode:
        pytest.skip("cannot mount a small tmpfs here (needs root)")
    with open(disk / "filler", "wb") as f:
        try:
            f.write(b"\0" * (1 << 20))
        except OSError:
            pass
    return disk


def test_a_sweep_on_a_full_disk_is_one_line_and_exit_1(tmp_path):
    disk = _full_disk(tmp_path)
    try:
        sweep_file = tmp_path / "one.yaml"
        sweep_file.write_text("name: one\nbase: [" + ", ".join(TINY) + "]\naxes:\n  seed: [0]\n")
        proc = subprocess.run([sys.executable, "-m", "rlvr_cli.cli", "sweep", str(sweep_file), "--output-dir",
                               str(disk / "sw")], capture_output=True, text=True, cwd=REPO, timeout=300,
                              env={**os.environ, "RLVR_CACHE": str(disk / "cache")})
    finally:
        subprocess.run(["umount", str(disk)], check=False)
    assert proc.returncode == 1, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "No space left on device" in lines[0] and "Traceback" not in proc.stderr, proc.stderr


# ---------------------------------------------------------------- vLLM's engine arguments, from the model's config
# `--kv-cache-memory-bytes 1` and `--tensor-parallel-size 2` on a CPU were refused by vLLM's engine after the model
# loaded, in a traceback; `VllmEngine.check_fits` refuses them from config.json (through the CLI: tests/test_vllm.py,
# which needs vLLM installed).

ENGINE_CASES = {
    "kv_cache_one_byte": (dict(kv_cache_memory_bytes=1), False, 0,
                          "--kv-cache-memory-bytes 1 cannot hold one sequence of 1024 tokens"),
    "kv_cache_below_one_sequence": (dict(kv_cache_memory_bytes=100_000, max_model_len=1024), False, 0,
                                    "cannot hold one sequence of 1024 tokens (at least 262144 bytes)"),
    "tp_on_a_cpu": (dict(tensor_parallel_size=2), False, 0, "--tensor-parallel-size 2 on a CPU needs one CPU set"),
    "tp_above_the_gpus": (dict(tensor_parallel_size=2), True, 1,
                          "--tensor-parallel-size 2 is more than the 1 GPU(s) this process sees"),
    "max_model_len_past_context": (dict(max_model_len=4096), False, 0,
                                   "--max-model-len 4096 is past the model's context of 1024 tokens"),
}


@pytest.mark.parametrize("case", ENGINE_CASES)
def test_engine_arguments_vllm_would_refuse_after_loading_are_refused_from_the_config(case, monkeypatch):
    from rlvr_cli.core.errors import BadInput
    from rlvr_cli.evaluation.sampling import VllmEngine
    from rlvr_cli.models.loading import context_length, model_config

    monkeypatch.delenv("VLLM_CPU_OMP_THREADS_BIND", raising=False)
    kwargs, cuda, gpus, message = ENGINE_CASES[case]
    config = model_config("tiny-random")
    with pytest.raises(BadInput) as e:
        VllmEngine(**kwargs).check_fits(config, context_length("tiny-random", config), cuda, gpus)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_engine_arguments_that_fit_are_kept(monkeypatch):
    """The defaults, a KV cache of exactly one sequence, and tensor parallelism with one CPU set per worker."""
    from rlvr_cli.evaluation.sampling import VllmEngine, kv_bytes_per_token
    from rlvr_cli.models.loading import model_config

    config = model_config("tiny-random")
    one_sequence = 1024 * kv_bytes_per_token(config)
    VllmEngine().check_fits(config, 1024, cuda=False, gpus=0)
    VllmEngine(kv_cache_memory_bytes=one_sequence).check_fits(config, 1024, cuda=False, gpus=0)
    VllmEngine(kv_cache_memory_bytes=0).check_fits(config, 1024, cuda=False, gpus=0)  # 0: vLLM sizes it
    VllmEngine(tensor_parallel_size=2).check_fits(config, 1024, cuda=True, gpus=2)
    monkeypatch.setenv("VLLM_CPU_OMP_THREADS_BIND", "0|1")
    VllmEngine(tensor_parallel_size=2).check_fits(config, 1024, cuda=False, gpus=0)
    VllmEngine(kv_cache_memory_bytes=1).check_fits(None, 1024, cuda=False, gpus=0)  # no config: vLLM decides


@pytest.mark.parametrize("model", ["tiny-random", "smollm2-135m"])
def test_kv_bytes_per_token_is_what_transformers_caches(model):
    """Checked against a cache nobody here wrote: the keys and values `transformers` keeps for 5 tokens in
    bfloat16 are 5 x `kv_bytes_per_token` bytes (grouped-query attention included: SmolLM2 has 3 KV heads of 9).
    The model is built from its real config.json cut to 2 layers (the cache is per layer; loading SmolLM2's GGUF
    weights would take 30 s and change no cache size)."""
    import torch
    from transformers import AutoModelForCausalLM

    from rlvr_cli.evaluation.sampling import kv_bytes_per_token
    from rlvr_cli.models.loading import model_config

    real = model_config(model)
    cut = copy.deepcopy(real)
    cut.num_hidden_layers = 2
    lm = AutoModelForCausalLM.from_config(cut, dtype=torch.bfloat16)
    with torch.no_grad():
        cache = lm(torch.arange(1, 6)[None], use_cache=True).past_key_values
    cached = sum(t.numel() * t.element_size() for layer in cache.layers for t in (layer.keys, layer.values))
    assert cached == 5 * kv_bytes_per_token(cut)
    assert kv_bytes_per_token(real) == real.num_hidden_layers * cached // (5 * 2)  # the same bytes in every layer
