"""`rlvr eval` end to end on real models and the shared benchmark files."""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from rlvr_cli.cli.main import app
from rlvr_cli.core.compose import group_options
from rlvr_cli.evaluation.benchmarks import BENCHMARKS, load_benchmark, parse_benchmarks
from rlvr_cli.models.loading import load_model

runner = CliRunner()
pytestmark = pytest.mark.skipif(not (Path(os.environ["RLVR_DATA_DIR"]) / "math500.jsonl").is_file(),
                                reason="the shared benchmark files are not beside this checkout")
FAST = ["--max-new-tokens", "8", "--batch-size", "8"]


def _eval(*args: str):
    return runner.invoke(app, ["eval", *args])


def test_eval_tiny_random_on_math500_and_gsm8k(tmp_path):
    out = tmp_path / "ev"
    r = _eval("tiny-random", "--benchmarks", "math500,gsm8k", "--limit", "4", "--k", "2", *FAST,
              "--output-dir", str(out))
    assert r.exit_code == 0, r.output
    results = json.loads((out / "results.json").read_text())
    assert list(results["benchmarks"]) == ["math500", "gsm8k"]
    for s in results["benchmarks"].values():
        assert (s["n_problems"], s["k"]) == (4, 2)
        assert {"avg@2", "pass@1", "pass@2", "maj@2", "avg@2_stderr", "tokens_per_s"} <= set(s)
    assert results["overall"]["n_problems"] == 8
    assert results["protocol"]["k"] == 2 and "boxed" in results["protocol"]["instruction"]
    samples = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    assert len(samples) == 16
    assert {s["benchmark"] for s in samples} == {"math500", "gsm8k"} and {s["sample"] for s in samples} == {0, 1}
    assert all(0 < s["tokens"] <= 8 for s in samples)
    # the scores are what the samples say
    gsm = [s for s in samples if s["benchmark"] == "gsm8k"]
    assert results["benchmarks"]["gsm8k"]["avg@2"] == pytest.approx(sum(s["correct"] for s in gsm) / 8)
    assert "gsm8k" in r.stdout and "overall" in r.stdout


def test_the_extraction_rule_is_an_option_recorded_in_the_results(tmp_path):
    r = _eval("tiny-random", "--benchmarks", "amc23", "--limit", "2", "--k", "2", *FAST, "--extract", "any",
              "--output-dir", str(tmp_path / "any"))
    assert r.exit_code == 0, r.output
    results = json.loads((tmp_path / "any" / "results.json").read_text())
    assert results["protocol"]["extract"] == "any"
    samples = [json.loads(line) for line in (tmp_path / "any" / "samples.jsonl").read_text().splitlines()]
    assert all((s["answer_class"] == -1) == (s["extracted"] is None) for s in samples)
    r = _eval("tiny-random", "--benchmarks", "amc23", "--extract", "last", "--output-dir", str(tmp_path / "bad"))
    assert r.exit_code == 2 and "--extract must be one of boxed, any, got 'last'" in r.output
    assert not (tmp_path / "bad").exists()


def test_eval_a_trained_run_directory(tmp_path):
    from conftest import TINY

    from rlvr_cli.core.compose import compose_run
    from rlvr_cli.training.recipe import train

    for adapter in ("full", "lora"):
        args = [*TINY, f"adapter={adapter}", f"output_dir={tmp_path}", f"run_name={adapter}"]
        train(compose_run(args), args, progress=False)
        r = _eval(str(tmp_path / adapter), "--benchmarks", "amc23", "--limit", "2", "--k", "1", *FAST)
        assert r.exit_code == 0, r.output
        results = json.loads((tmp_path / adapter / "eval" / "results.json").read_text())
        assert results["model"]["kind"] == f"run-{'full' if adapter == 'full' else 'adapter'}"
        assert results["model"]["params"] == sum(p.numel() for p in load_model("tiny-random")[0].parameters())
        # an adapter is merged into its base: the base's parameter count


@pytest.mark.parametrize("name", group_options("benchmark"))
def test_every_benchmark_file_reads_whole(name):
    """The shared data file holds as many problems as the benchmark's file says were published, each answered."""
    rows = load_benchmark(name, None)
    assert BENCHMARKS[name].problems and len(rows) == BENCHMARKS[name].problems and all(r["answer"] for r in rows)


def _bad_rundir(tmp_path: Path) -> str:
    run = tmp_path / "run"
    run.mkdir()
    (run / "summary.json").write_text('{"status": "diverged"}')
    (run / "config.yaml").write_text("model: {name_or_path: tiny-random, dtype: float32}\n")
    return str(run)


@pytest.mark.parametrize("args,message", [
    (["tiny-random", "--benchmarks", "math500,aime26"], "unknown benchmark 'aime26'; valid benchmarks: "
                                                        + ", ".join(parse_benchmarks(None))),
    (["tiny-random", "--k", "0"], "--k must be >= 1"),
    (["tiny-random", "--limit", "0"], "--limit must be >= 1"),
    (["/no/such/model"], "model directory not found: /no/such/model"),
    (["tiny-random", "--data-dir", "/no/data"], "data file not found: /no/data/math500.jsonl"),
    pytest.param(["tiny-random", "--backend", "vllm"], "--backend vllm needs vLLM",
                 marks=pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="vLLM is installed")),
    (["tiny-random", "--backend", "tgi"], "unknown backend 'tgi'"),
])
def test_bad_input_is_one_line_before_any_model_loads(args, message, tmp_path):
    r = _eval(*args, "--output-dir", str(tmp_path / "out"))
    assert r.exit_code == 2
    assert r.stderr.startswith("error: ") and message in r.stderr and r.stderr.count("\n") == 1
    assert not (tmp_path / "out").exists()


def test_run_directory_without_weights_is_refused(tmp_path):
    r = _eval(_bad_rundir(tmp_path), "--output-dir", str(tmp_path / "out"))
    assert r.exit_code == 2
    assert "has no weights in final/ (status: diverged)" in r.stderr


def test_train_evaluates_its_final_model(run_tiny):
    from test_train import _wandb_records

    summary = run_tiny("eval.benchmarks=[gsm8k,aime25]", "eval.limit=2", "eval.k=2", "eval.max_new_tokens=8",
                       "logger=wandb")
    run = Path(summary["run_dir"])
    results = json.loads((run / "eval" / "results.json").read_text())
    assert set(summary["eval"]) == {"gsm8k", "aime25", "overall"}
    assert summary["eval"]["gsm8k"] == {k: results["benchmarks"]["gsm8k"][k] for k in ("avg@2", "pass@1", "pass@2",
                                                                                       "maj@2")}
    assert json.loads((run / "summary.json").read_text())["eval"] == summary["eval"]
    [run_file] = run.glob("wandb/offline-run-*/run-*.wandb")
    logged = {item.key: json.loads(item.value_json) for rec in _wandb_records(run_file) if rec.HasField("summary")
              for item in rec.summary.update}
    assert logged["eval/gsm8k/avg@2"] == summary["eval"]["gsm8k"]["avg@2"]
    assert logged["update_sparsity/changed_frac_tol"] == summary["update_sparsity"]["changed_frac_tol"]


def test_train_refuses_an_unknown_eval_benchmark_before_loading(tmp_path):
    from conftest import TINY

    r = runner.invoke(app, ["train", *TINY, f"output_dir={tmp_path / 'runs'}", "eval.benchmarks=[gsm9k]"])
    assert r.exit_code == 2 and "unknown benchmark 'gsm9k'" in r.stderr
    assert not (tmp_path / "runs").exists()


def test_eval_logs_its_scores_to_wandb_offline(tmp_path):
    from test_train import _wandb_records

    out = tmp_path / "ev"
    r = _eval("tiny-random", "--benchmarks", "amc23", "--limit", "2", "--k", "2", *FAST, "--output-dir", str(out),
              "--wandb")
    assert r.exit_code == 0, r.output
    results = json.loads((out / "results.json").read_text())
    [run_file] = out.glob("wandb/offline-run-*/run-*.wandb")
    summary = {item.key: json.loads(item.value_json) for rec in _wandb_records(run_file) if rec.HasField("summary")
               for item in rec.summary.update}
    assert summary["amc23/avg@2"] == results["benchmarks"]["amc23"]["avg@2"]
    assert summary["overall/n_problems"] == 2


def test_eval_a_local_model_directory(tmp_path):
    from rlvr_cli.models.loading import model_path

    r = _eval(model_path("tiny-random"), "--benchmarks", "aime24", "--limit", "2", "--k", "1", *FAST,
              "--output-dir", str(tmp_path / "ev"), "--temperature", "0")
    assert r.exit_code == 0, r.output
    results = json.loads((tmp_path / "ev" / "results.json").read_text())
    assert results["model"]["kind"] == "dir" and results["protocol"]["temperature"] == 0


@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_a_damaged_weights_file_is_one_line_naming_it(damage, tmp_path):
    """Issue 19, item 8: a truncated or garbage model.safetensors is one line and exit 2 in rlvr eval and rlvr
    sparsity (safetensors raised its SafetensorError, a 52-line traceback)."""
    from conftest import damaged_model

    model, weights = damaged_model(tmp_path, damage)
    for args in (["eval", str(model), "--benchmarks", "amc23", "--limit", "1", "--output-dir", str(tmp_path / "o")],
                 ["sparsity", "tiny-random", str(model)]):
        r = runner.invoke(app, args)
        assert r.exit_code == 2, r.output
        assert r.stderr.startswith(f"error: cannot read the weights of '{model}': a .safetensors file there is "
                                   "damaged") and r.stderr.count("\n") == 1, r.stderr


def test_batched_greedy_generation_equals_one_at_a_time():
    """Left padding and the end-token cut do not change what a prompt gets: batch 8 == batch 1, greedy."""
    from rlvr_cli.data.problems import user_message
    from rlvr_cli.evaluation.sampling import Sampling, chat_prompts, generate_hf
    from rlvr_cli.models.loading import load_model

    model, tokenizer = load_model("tiny-random")
    prompts = chat_prompts(tokenizer, [user_message(p) for p in ("1+1?", "What is 12 times 13, plus 7?", "2?")])
    one, batched = (generate_hf(model, tokenizer, prompts, Sampling.protocol(k=2, temperature=0, max_new_tokens=12,
                                                                             batch_size=b)) for b in (1, 8))
    assert [[c.text for c in cs] for cs in one] == [[c.text for c in cs] for cs in batched]
    assert all(c.tokens == 12 for cs in one for c in cs)  # a random model never says EOS: the full budget


def test_rlvr_eval_and_rlvr_train_share_one_protocol():
    """Issue 20: the eval protocol is stated once (train.yaml's `eval`); `rlvr eval`'s options and `Sampling`'s
    defaults are read from it (they once disagreed on k)."""
    import inspect

    from rlvr_cli.cli.eval import eval_
    from rlvr_cli.core.compose import compose
    from rlvr_cli.evaluation.sampling import PROTOCOL_FIELDS, Sampling

    train = compose([]).eval
    options = {name: p.default.default for name, p in inspect.signature(eval_).parameters.items()}
    for key in (*PROTOCOL_FIELDS, "limit", "extract"):
        assert options[key] == train[key], key
    sampling = Sampling.protocol()
    assert [getattr(sampling, f) for f in PROTOCOL_FIELDS] == [train[f] for f in PROTOCOL_FIELDS]
    assert Sampling.protocol(k=1).k == 1 and Sampling.protocol(k=1).top_p == train.top_p


def test_a_training_task_is_scored_on_its_own_problems_and_instruction(tmp_path):
    """Issue 25, item 3: `--data arithmetic` scores the demo's task as `rlvr train` draws it (seed 0), prompted with
    its instruction; beside --benchmarks it adds a row."""
    from rlvr_cli.core.compose import compose_run
    from rlvr_cli.data.problems import load_problems

    out = tmp_path / "task"
    r = _eval("tiny-random", "--data", "arithmetic", "--limit", "3", "--k", "2", *FAST, "--extract", "any",
              "--output-dir", str(out))
    assert r.exit_code == 0, r.output
    results = json.loads((out / "results.json").read_text())
    cfg = compose_run()
    assert list(results["benchmarks"]) == ["arithmetic"]
    assert results["benchmarks"]["arithmetic"]["instruction"] == cfg.data.instruction
    samples = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    assert [s["gold"] for s in samples[::2]] == [p["answer"] for p in load_problems(cfg.data, cfg.seed)[:3]]
    r = _eval("tiny-random", "--data", "arithmetic", "--benchmarks", "gsm8k", "--limit", "1", "--k", "1", *FAST,
              "--output-dir", str(tmp_path / "both"))
    assert r.exit_code == 0, r.output
    results = json.loads((tmp_path / "both" / "results.json").read_text())
    assert list(results["benchmarks"]) == ["gsm8k", "arithmetic"]
    assert "instruction" not in results["benchmarks"]["gsm8k"]
    r = _eval("tiny-random", "--data", "nosuch", "--output-dir", str(tmp_path / "bad"))
    assert r.exit_code == 2 and "nosuch" in r.output and not (tmp_path / "bad").exists()


def _files(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir()) if p.is_file()}


SMALL = ["--benchmarks", "gsm8k", "--limit", "2", "--k", "1", "--max-new-tokens", "4"]
BIGGER = ["--benchmarks", "gsm8k,math500", "--limit", "3", "--k", "2", "--max-new-tokens", "6"]


def test_an_evaluation_never_replaces_another_unless_told(tmp_path):
    """Issue 29: a second evaluation into a directory that holds one is refused in one line before any model loads,
    and the first stays byte for byte; with --overwrite it replaces it whole (no sample of the first is left)."""
    out = tmp_path / "ev"
    assert _eval("tiny-random", *SMALL, "--output-dir", str(out)).exit_code == 0
    first = _files(out)
    assert set(first) == {"results.json", "samples.jsonl"}
    r = _eval("tiny-random", *BIGGER, "--output-dir", str(out))
    assert r.exit_code == 2
    assert r.stderr.strip() == (f"error: --output-dir {out} holds an evaluation already (results.json, samples.jsonl); "
                                "pick another --output-dir, or pass --overwrite to replace it")
    assert _files(out) == first
    r = _eval("tiny-random", *BIGGER, "--output-dir", str(out), "--overwrite")
    assert r.exit_code == 0, r.output
    results = json.loads((out / "results.json").read_text())
    assert results["protocol"]["k"] == 2 and set(results["benchmarks"]) == {"gsm8k", "math500"}
    samples = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    assert len(samples) == 2 * 3 * 2 and {s["benchmark"] for s in samples} == {"gsm8k", "math500"}
    assert sorted(p.name for p in out.iterdir()) == ["results.json", "samples.jsonl"]


def test_an_interrupted_evaluation_leaves_partial_samples_marked_and_no_results(tmp_path):
    """Issue 29: an evaluation, then a second one into its directory with --overwrite, interrupted (a real process,
    SIGINT) while its second benchmark generates: one line naming the partial samples, exit 130; the directory holds
    the second's `samples.partial.jsonl` (its first benchmark's samples) and nothing of the first evaluation, and the
    next evaluation there is refused until --overwrite."""
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "ev"
    assert _eval("tiny-random", *SMALL, "--output-dir", str(out)).exit_code == 0
    proc = subprocess.Popen([sys.executable, "-m", "rlvr_cli.cli", "eval", "tiny-random", "--benchmarks",
                             "gsm8k,math500", "--limit", "8", "--k", "2", "--max-new-tokens", "300", "--overwrite",
                             "--output-dir", str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # a pytest-xdist
    partial = out / "samples.partial.jsonl"  # worker ignores SIGINT, and its children would inherit that
    deadline = time.monotonic() + 300
    while not (partial.is_file() and partial.read_text().count("\n") >= 16) and proc.poll() is None:
        assert time.monotonic() < deadline, "gsm8k's samples never appeared"
        time.sleep(0.2)
    assert proc.poll() is None, proc.communicate()
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr[-2000:]
    assert stderr.strip().splitlines()[-1] == (f"error: evaluation interrupted; its partial samples are in {partial} "
                                               "(no results.json: rerun with --overwrite)")
    assert sorted(p.name for p in out.iterdir()) == ["samples.partial.jsonl"]
    samples = [json.loads(line) for line in partial.read_text().splitlines()]
    assert {s["benchmark"] for s in samples} == {"gsm8k"} and len(samples) == 8 * 2  # the second's, k=2
    r = _eval("tiny-random", *SMALL, "--output-dir", str(out))
    assert r.exit_code == 2 and "holds an interrupted evaluation's partial samples already" in r.stderr


def test_a_run_evaluated_again_keeps_its_end_of_training_evaluation(run_tiny):
    summary = run_tiny("eval.benchmarks=[gsm8k]", "eval.limit=2", "eval.k=1", "eval.max_new_tokens=4")
    run = Path(summary["run_dir"])
    before = _files(run / "eval")
    r = _eval(str(run), *SMALL)
    assert r.exit_code == 0, r.output
    assert _files(run / "eval") == before
    [again] = run.glob("eval-*")
    assert set(_files(again)) == {"results.json", "samples.jsonl"}
    assert json.loads((again / "results.json").read_text())["model"]["spec"] == str(run)
