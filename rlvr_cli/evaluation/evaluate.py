"""`rlvr eval`: avg@k, pass@k and maj@k on AIME 2024/2025, MATH-500, AMC 2023, GSM8K, OlympiadBench and Minerva.

One fixed protocol for base models, trained runs and checkpoints alike:
- prompt: the problem, a blank line, "Please reason step by step, and put your final answer within
  \\boxed{}." as one user message through the model's chat template (the Qwen2.5-Math evaluation prompt);
- sampling: k completions per problem, temperature 0.6, top-p 0.95, at most 1024 new tokens, unless
  told otherwise (the values used are written into results.json);
- grading: `rlvr_cli.evaluation.grading.grade`, the function behind the training reward (math-verify, gold first,
  the last closed `\\boxed{}`); `extract="boxed"` (default) grades a completion without a closed box wrong,
  `extract="any"` falls back to math-verify's extraction; the rule used is written into results.json;
- scores: `rlvr_cli.scoring.score` per benchmark and over all problems pooled; maj@k votes over equivalence
  classes of the answers (`grading.answer_classes`).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from rlvr_cli.core.compose import DTYPES
from rlvr_cli.core.errors import BadInput
from rlvr_cli.core.rules import MAX_SEED
from rlvr_cli.core.run_config import Eval
from rlvr_cli.core.run_dir import check_output_dir
from rlvr_cli.data.problems import INSTRUCTION, user_message
from rlvr_cli.evaluation.benchmarks import load_benchmark, parse_benchmarks
from rlvr_cli.evaluation.grading import answer_classes, check_extract, grade
from rlvr_cli.evaluation.sampling import (
    Sampling,
    VllmEngine,
    chat_prompts,
    check_backend,
    generate_hf,
    generate_vllm,
    vllm_engine,
)
from rlvr_cli.evaluation.scoring import score
from rlvr_cli.models.loading import context_length, model_config, model_path
from rlvr_cli.models.sources import load_eval_model, resolve_model

#: The most completions (k x problems) one evaluation generates: each is kept in memory and in samples.jsonl.
MAX_SAMPLES = 10_000_000
#: An evaluation's files in its output directory: the results, the samples of a finished evaluation, the samples of
#: one that was interrupted (renamed to `SAMPLES` once every sample is in), and the model vLLM loads (`evaluate`).
RESULTS, SAMPLES, PARTIAL_SAMPLES, MERGED_MODEL = "results.json", "samples.jsonl", "samples.partial.jsonl", \
    "merged-model"
EVALUATION_FILES = (RESULTS, SAMPLES, PARTIAL_SAMPLES, MERGED_MODEL)


def held_evaluation(output_dir: Path) -> list[str]:
    """The evaluation files (`EVALUATION_FILES`) that `output_dir` holds already; `[]` for none."""
    return [name for name in EVALUATION_FILES if (Path(output_dir) / name).exists()]


def check_fresh(output_dir: Path, overwrite: bool = False) -> None:
    """Refuse an output directory that holds another evaluation, unless `overwrite`: an evaluation never replaces,
    or mixes its samples with, results it did not write.

    Raises:
        BadInput: naming the directory, what it holds (a finished evaluation, or an interrupted one's partial
            samples) and the two fixes.
    """
    held = held_evaluation(output_dir)
    if held and not overwrite:
        what = "an interrupted evaluation's partial samples" if held == [PARTIAL_SAMPLES] else "an evaluation"
        raise BadInput(f"--output-dir {output_dir} holds {what} already ({', '.join(held)}); pick another "
                       f"--output-dir, or pass --overwrite to replace it")


def clear(output_dir: Path) -> None:
    """Delete the evaluation files of `output_dir` (`--overwrite`), before a new evaluation writes any."""
    for name in held_evaluation(output_dir):
        path = Path(output_dir) / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()


def check_sampling(sampling: Sampling, limit: int | None) -> None:
    """Check sampling values before any model loads.

    Raises:
        BadInput: k < 1 or above `MAX_SAMPLES`, limit < 1, batch size or max new tokens < 1, temperature not a
            finite number >= 0, top-p outside (0, 1], a seed outside 0..2**32-1.
    """
    if sampling.k < 1:
        raise BadInput(f"--k must be >= 1 (samples per problem), got {sampling.k}")
    if limit is not None and limit < 1:
        raise BadInput(f"--limit must be >= 1 (problems per benchmark), got {limit}")
    if sampling.batch_size < 1 or sampling.max_new_tokens < 1:
        raise BadInput(f"--batch-size and --max-new-tokens must be >= 1, got {sampling.batch_size}, "
                       f"{sampling.max_new_tokens}")
    if not (math.isfinite(sampling.temperature) and sampling.temperature >= 0):
        raise BadInput(f"--temperature must be a finite number >= 0 (0: greedy), got {sampling.temperature}")
    if not 0 < sampling.top_p <= 1:  # False for nan too
        raise BadInput(f"--top-p must be in (0, 1], got {sampling.top_p}")
    if not 0 <= sampling.seed <= MAX_SEED:
        raise BadInput(f"--seed must be an integer in 0..{MAX_SEED} (as a run's seed), got {sampling.seed}")
    if sampling.k > MAX_SAMPLES:
        raise BadInput(f"--k {sampling.k} is more completions per problem than rlvr keeps ({MAX_SAMPLES:,} in all); "
                       f"lower --k")


def check_budget(sampling: Sampling, problems: Mapping[str, Sequence[Any]], context: int | None) -> None:
    """Check what an evaluation will generate against what the machine and the model can hold, before it starts.

    Args:
        sampling: the sampling (`k` completions per problem, `max_new_tokens` per completion).
        problems: benchmark or task name -> its problems.
        context: the model's context in tokens (`max_position_embeddings`), None when unknown.

    Raises:
        BadInput: k x problems above `MAX_SAMPLES` (every completion is kept in memory and in samples.jsonl), or
            `max_new_tokens` past the model's context (transformers only warns, and generates on: `--max-new-tokens
            1e23` generated for ever). Equal to it is kept: the embedded models' evaluation protocol asks 1024
            tokens of tiny-random's 1024-token context, and the completion then stops at `max_new_tokens`.
    """
    total = sampling.k * sum(len(rows) for rows in problems.values())
    if total > MAX_SAMPLES:
        raise BadInput(f"k x problems = {total:,} completions, more than rlvr keeps ({MAX_SAMPLES:,}); lower --k or "
                       f"--limit")
    if context is not None and sampling.max_new_tokens > context:
        raise BadInput(f"--max-new-tokens {sampling.max_new_tokens} is past the model's context of {context} tokens; "
                       f"e.g. --max-new-tokens {min(context // 2, 1024)}")


def eval_inputs(cfg: Eval) -> tuple[dict[str, list[dict[str, str]]], Sampling | None]:
    """The benchmark problems and sampling of a training run's `eval` config; `({}, None)` when it lists none.
    The sampling seed is 0, as `rlvr eval`'s default (`--seed`), whatever the run's seed: a run's final scores and
    `rlvr eval RUN` then draw the same completions.

    Raises:
        BadInput: as `evaluate` does, before any model is loaded.
    """
    if not cfg.benchmarks:
        return {}, None
    check_extract(cfg.extract)
    sampling = Sampling(k=cfg.k, temperature=cfg.temperature, top_p=cfg.top_p, max_new_tokens=cfg.max_new_tokens,
                        batch_size=cfg.batch_size, seed=0)
    check_sampling(sampling, cfg.limit)
    names = parse_benchmarks(list(cfg.benchmarks))
    return {n: load_benchmark(n, cfg.data_dir, cfg.limit) for n in names}, sampling


def task_problems(data: str, limit: int | None) -> tuple[list[dict[str, str]], str | None]:
    """The problems and instruction of a training task, the `data` option `data` (`conf/data/<data>.yaml`), as
    `rlvr train data=<data>` draws them with its default seed: `rlvr eval --data` measures a model on the task it is
    trained on (e.g. the pass rate at step 0 of the CPU demo's arithmetic).

    Returns:
        `(rows, instruction)`: the first `limit` problems (`id`, `problem`, `answer`) and the option's
        `instruction` (None: `INSTRUCTION`).

    Raises:
        BadInput: an unknown data option (the message lists them), or as `rlvr_cli.data.problems.load_problems`.
    """
    from rlvr_cli.core.compose import compose_run
    from rlvr_cli.data.problems import load_problems

    cfg = compose_run([f"data={data}"])
    rows = load_problems(cfg.data, seed=cfg.seed)
    return (rows[:limit] if limit else rows), cfg.data.instruction


def headline(results: dict[str, Any]) -> dict[str, dict[str, float]]:
    """Per benchmark and overall, the scores without their standard errors (for summary.json)."""
    blocks = {**results["benchmarks"], "overall": results["overall"]}
    return {name: {k: v for k, v in s.items() if k.split("@")[0] in ("avg", "pass", "maj") and "_" not in k}
            for name, s in blocks.items()}


def evaluate_model(model: Any, tokenizer: Any, problems: dict[str, list[dict[str, str]]], sampling: Sampling,
                   output_dir: Path, identity: dict[str, Any], llm: Any = None, progress: bool = True,
                   extract: str = "boxed", engine: dict[str, Any] | None = None,
                   instructions: dict[str, str | None] | None = None) -> dict[str, Any]:
    """Sample, grade and score every benchmark; write `results.json` and `samples.jsonl` into `output_dir`.

    The samples are written to `samples.partial.jsonl` as they are graded and renamed to `samples.jsonl` once every
    one is in; `results.json` is written after that (through a temporary file and a rename), so a directory holds
    either a whole evaluation or, after an interruption, partial samples under a name that says so, never results
    beside samples of another protocol.

    Args:
        model, tokenizer: a loaded causal LM (hf backend; None with `llm`); the tokenizer renders the prompts.
        problems: benchmark name -> its problems (`load_benchmark`).
        sampling: k, temperature, top-p, max new tokens, batch size, seed.
        output_dir: created if needed.
        identity: what was evaluated (written into results.json).
        llm: a vLLM engine (`generation.vllm_engine`) to generate with instead of `model` (the vllm backend).
        extract: the extraction rule, `"boxed"` or `"any"` (`grading.grade`).
        engine: the vLLM engine arguments `llm` was built with (`VllmEngine.arguments`), written into results.json.
        instructions: benchmark name -> the instruction its prompts end with, where it is not the protocol's
            `INSTRUCTION` (a training task's, `task_problems`); written into its results.

    Returns:
        The content of results.json: `model`, `backend`, `engine` (vLLM's arguments; null for hf), `protocol`,
        `benchmarks` (name -> scores, `instruction` where it is not the protocol's, `wall_time_s`,
        `completion_tokens`, `tokens_per_s`), `overall` (all problems pooled).
    """
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    output_dir.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {
        "model": identity, "backend": "hf" if llm is None else "vllm", "engine": engine,
        "protocol": {"instruction": INSTRUCTION, "chat_template": True, **asdict(sampling),
                     "grader": "math-verify, gold first (rlvr_cli.evaluation.grading)", "extract": extract,
                     "majority_vote": "equivalence classes; no answer votes; ties: first seen"},
        "benchmarks": {},
    }
    pooled = []
    bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                   disable=not progress, console=Console(stderr=True))  # stderr: stdout holds the results table
    with bar, open(output_dir / PARTIAL_SAMPLES, "w") as samples_file:
        for name, rows in problems.items():
            task = bar.add_task(f"{name} (k={sampling.k})", total=len(rows) * sampling.k)
            instruction = (instructions or {}).get(name)
            prompts = chat_prompts(tokenizer, [user_message(r["problem"], instruction) for r in rows])
            t0 = time.perf_counter()
            if llm is not None:
                completions = generate_vllm(llm, prompts, sampling)
                bar.update(task, completed=len(rows) * sampling.k)
            else:
                completions = generate_hf(model, tokenizer, prompts, sampling,
                                          progress=lambda n, task=task: bar.advance(task, n))
            wall = time.perf_counter() - t0
            per_problem = []
            for row, comps in zip(rows, completions, strict=True):
                verdicts = [grade(row["answer"], c.text, extract) for c in comps]
                classes = answer_classes([v.extracted for v in verdicts])
                per_problem.append(([v.correct for v in verdicts], classes))
                for i, (c, v, cls) in enumerate(zip(comps, verdicts, classes, strict=True)):
                    samples_file.write(json.dumps({
                        "benchmark": name, "id": row["id"], "sample": i, "completion": c.text, "tokens": c.tokens,
                        "extracted": v.extracted, "answer_class": cls, "correct": v.correct,
                        "gold": row["answer"]}) + "\n")
            samples_file.flush()  # a benchmark's samples whole on disk before the next one generates
            tokens = sum(c.tokens for comps in completions for c in comps)
            own = {"instruction": instruction} if instruction else {}
            results["benchmarks"][name] = {**score(per_problem), **own, "wall_time_s": round(wall, 3),
                                           "completion_tokens": tokens, "tokens_per_s": tokens / wall}
            pooled += per_problem
    results["overall"] = score(pooled)
    os.replace(output_dir / PARTIAL_SAMPLES, output_dir / SAMPLES)
    tmp = output_dir / f".{RESULTS}.tmp"
    tmp.write_text(json.dumps(results, indent=2) + "\n")
    os.replace(tmp, output_dir / RESULTS)
    return results


def evaluate(spec: str, benchmarks: list[str], sampling: Sampling, limit: int | None, output_dir: Path,
             backend: str = "hf", data_dir: str | None = None, dtype: str | None = None,
             progress: bool = True, extract: str = "boxed", engine: VllmEngine | None = None,
             data: str | None = None, overwrite: bool = False) -> dict[str, Any]:
    """`rlvr eval`: check every input, then load MODEL and evaluate it (see `evaluate_model`).

    Args:
        benchmarks: names of conf/benchmark/ (None: all of them, or none when `data` is given).
        data: a training task, an option of conf/data/, scored beside the benchmarks under its own name, with its
            own instruction (`task_problems`).
        engine: vLLM's engine arguments (`--backend vllm`); its `dtype` is replaced by `dtype` when that is given,
            else by the run's weights dtype, else `auto`.
        overwrite: replace the evaluation `output_dir` holds (`check_fresh`), its files deleted before any model
            loads.

    Raises:
        BadInput: before any model is loaded, for an unknown benchmark, backend or extraction rule, bad sampling
            values, an unknown dtype, bad engine arguments, a missing data file, a missing model path, a run
            directory without weights, or an output directory that holds another evaluation (`check_fresh`).
    """
    check_sampling(sampling, limit)
    check_output_dir(output_dir, "--output-dir")
    check_fresh(output_dir, overwrite)
    check_backend(backend)
    engine = engine or VllmEngine()
    engine.check()
    check_extract(extract)
    if dtype is not None and dtype not in (*DTYPES, "auto"):
        raise BadInput(f"--dtype must be one of {', '.join(DTYPES)}, auto, got {dtype!r}")
    names = parse_benchmarks(benchmarks) if benchmarks or data is None else []
    source = resolve_model(spec)
    problems = {n: load_benchmark(n, data_dir, limit) for n in names}
    instructions: dict[str, str | None] = {}
    if data is not None:
        problems[data], instructions[data] = task_problems(data, limit)
    architecture = source.base or source.path
    config = model_config(architecture)
    context = context_length(architecture, config)
    check_budget(sampling, problems, context)
    import torch  # after every check that needs no model: a refusal above imports no torch

    if overwrite:
        clear(output_dir)

    cuda = torch.cuda.is_available()
    if backend == "vllm":
        engine.check_fits(config, context, cuda, torch.cuda.device_count() if cuda else 0)
    identity = {"spec": spec, "kind": source.kind, "path": source.path, "base": source.base, "dtype": dtype,
                "params": None}
    model = llm = None
    if backend == "vllm" and source.base is None:  # vLLM loads the weights itself
        from transformers import AutoTokenizer

        path = model_path(source.path)
        tokenizer = AutoTokenizer.from_pretrained(path)
    else:
        model, tokenizer = load_eval_model(source, dtype)
        identity.update(dtype=str(model.dtype).removeprefix("torch."),
                        params=sum(p.numel() for p in model.parameters()))
        if backend == "vllm":  # an adapter or a sparse delta: vLLM gets the rebuilt model as a directory
            path = str(output_dir / MERGED_MODEL)
            model.save_pretrained(path)
            tokenizer.save_pretrained(path)
            model = None
            torch.cuda.empty_cache()  # the GPU memory goes to vLLM
    arguments = None
    if backend == "vllm":
        identity["dtype"] = identity["dtype"] or "auto"
        engine = dataclasses.replace(engine, dtype=identity["dtype"])
        arguments = engine.arguments(cuda)
        llm = vllm_engine(path, sampling.seed, engine)
    return evaluate_model(model, tokenizer, problems, sampling, output_dir, identity, llm, progress, extract,
                          arguments, instructions)
