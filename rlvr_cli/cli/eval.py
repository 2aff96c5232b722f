"""`rlvr eval MODEL`: avg@k, pass@k and maj@k on math benchmarks."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import typer
from rich.markup import escape
from rich.table import Table

from rlvr_cli.cli import options
from rlvr_cli.cli.options import JSON
from rlvr_cli.cli.output import (
    bad_input_exits,
    console,
    default_output_dir,
    err_console,
    print_json,
    print_table,
    stdout_to_stderr,
)
from rlvr_cli.core.groups import default_node

#: The evaluation protocol, train.yaml's `eval` node: `rlvr eval`'s defaults are `rlvr train eval.*`'s.
PROTOCOL = default_node("eval")


def eval_(
    model: str = typer.Argument(..., help="hub id, model directory, rlvr train run directory, or smollm2-135m / "
                                          "tiny-random"),
    benchmarks: str | None = typer.Option(None, help="comma list; default: every benchmark of conf/benchmark/ (none "
                                          "with --data)"),
    data: str | None = typer.Option(None, "--data", help="also (or, without --benchmarks, only) a training task: an "
                                    "option of conf/data/, e.g. arithmetic, with its own instruction"),
    k: int = typer.Option(PROTOCOL["k"], "--k", help="samples per problem"),
    temperature: float = typer.Option(PROTOCOL["temperature"], help="0 = greedy"),
    top_p: float = typer.Option(PROTOCOL["top_p"], "--top-p"),
    max_new_tokens: int = typer.Option(PROTOCOL["max_new_tokens"], "--max-new-tokens", help="tokens per completion"),
    limit: int | None = typer.Option(PROTOCOL["limit"], help="the first N problems of each benchmark (smoke runs)"),
    batch_size: int = typer.Option(PROTOCOL["batch_size"], "--batch-size", help="sequences per generate call (hf "
                                   "backend)"),
    seed: int = typer.Option(0),
    output_dir: Path | None = options.output_dir("RUN_DIR/eval for a run directory (RUN_DIR/eval-<time> when it "
                                                 "holds an evaluation), else evals/<model>-<time>"),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace the evaluation --output-dir holds (refused "
                                   "without it)"),
    backend: str = typer.Option("hf", help="hf | vllm"),
    data_dir: str | None = typer.Option(None, "--data-dir", help="benchmark JSONL files; default $RLVR_DATA_DIR, "
                                        "else the hub"),
    dtype: str | None = typer.Option(None, help="float32 | bfloat16 | float16 | auto (the checkpoint's); default: the "
                                     "run's, else by device (hf) or auto (vllm)"),
    max_model_len: int | None = typer.Option(None, "--max-model-len", help="vllm: prompt + completion tokens per "
                                             "sequence; default: the model's context"),
    enforce_eager: bool | None = typer.Option(None, "--enforce-eager/--no-enforce-eager", help="vllm: no CUDA graphs "
                                              "or compilation; default: on a CPU (starts in seconds), off on a GPU"),
    gpu_memory_utilization: float = typer.Option(0.9, "--gpu-memory-utilization", help="vllm: share of each GPU it "
                                                 "reserves, in (0, 1]"),
    tensor_parallel_size: int = typer.Option(1, "--tensor-parallel-size", help="vllm: GPUs one engine spans"),
    kv_cache_memory_bytes: int | None = typer.Option(None, "--kv-cache-memory-bytes", help="vllm: KV-cache bytes; "
                                                     "default: from --gpu-memory-utilization on a GPU, 2 GiB on a "
                                                     "CPU"),
    extract: str = typer.Option(PROTOCOL["extract"], help="boxed: only a closed \\boxed{} is an answer (no box: "
                                "wrong) | any: "
                                "else math-verify's extraction over the whole text"),
    wandb: bool = typer.Option(False, "--wandb", help="also log the results to W&B (offline without an API key)"),
    as_json: bool = JSON,
) -> None:
    """Score a model on math benchmarks: avg@k, pass@k (unbiased), maj@k, with standard errors."""
    from rlvr_cli.evaluation.sampling import Sampling, VllmEngine

    sampling = Sampling(k=k, temperature=temperature, top_p=top_p, max_new_tokens=max_new_tokens,
                        batch_size=batch_size, seed=seed)
    engine = VllmEngine(max_model_len=max_model_len, enforce_eager=enforce_eager,
                        gpu_memory_utilization=gpu_memory_utilization, tensor_parallel_size=tensor_parallel_size,
                        kv_cache_memory_bytes=kv_cache_memory_bytes)
    from rlvr_cli.evaluation.evaluate import PARTIAL_SAMPLES, held_evaluation

    if output_dir is None:
        output_dir = default_output_dir(model, "eval", "evals")
        if held_evaluation(output_dir):  # a run evaluated already (at the end of its training): that one is kept
            output_dir = output_dir.with_name(f"eval-{time.strftime('%Y%m%d-%H%M%S')}")
    with bad_input_exits(), stdout_to_stderr(as_json):
        from rlvr_cli.evaluation.evaluate import evaluate

        try:
            results = evaluate(model, benchmarks, sampling, limit, output_dir, backend, data_dir, dtype,
                               progress=not as_json, extract=extract, engine=engine, data=data, overwrite=overwrite)
        except KeyboardInterrupt:
            partial = output_dir / PARTIAL_SAMPLES
            kept = f"; its partial samples are in {partial}" if partial.is_file() else ""
            err_console.print(f"[bold red]error:[/] evaluation interrupted{escape(kept)} (no results.json: "
                              f"rerun with --overwrite)", highlight=False, soft_wrap=True)
            raise typer.Exit(130) from None
        if wandb:
            from rlvr_cli.training.tracking import log_eval

            log_eval(results, output_dir)
    if as_json:
        print_json(results)
        return
    print_table(eval_table(results))
    console.print(f"results: {output_dir / 'results.json'}  samples: {output_dir / 'samples.jsonl'}", highlight=False,
                  markup=False)


def eval_table(results: dict[str, Any]) -> Table:
    """A Rich table of `results.json`: one row per benchmark and one for all problems pooled, with the number
    of problems, avg@k, pass@1, pass@k and maj@k as percentages with their standard errors (`37.5±12.3`), and
    generated tokens per second. Figures never wrap."""
    k = results["overall"]["k"]
    protocol = results["protocol"]
    table = Table(title=f"{escape(results['model']['spec'])}  (k={k}, temperature {protocol['temperature']}, "
                        f"top-p {protocol['top_p']}, {protocol['max_new_tokens']} tokens, "
                        f"extract {protocol.get('extract', 'any')})",
                  caption=f"n: problems; avg@{k}, pass@1, pass@{k}, maj@{k}: % ± standard error; tok/s: generated "
                          "tokens per second", caption_justify="left")
    for col in ("benchmark", "n", f"avg@{k}", "pass@1", f"pass@{k}", f"maj@{k}", "tok/s"):
        table.add_column(col, justify="left" if col == "benchmark" else "right", no_wrap=True)

    def pct(s: dict[str, Any], key: str) -> str:
        return f"{100 * s[key]:.1f}±{100 * s[key + '_stderr']:.1f}"

    rows = [*results["benchmarks"].items(), ("overall", results["overall"])]
    for name, s in rows:
        table.add_row(name, str(s["n_problems"]), pct(s, f"avg@{k}"), pct(s, "pass@1"), pct(s, f"pass@{k}"),
                      pct(s, f"maj@{k}"), f"{s['tokens_per_s']:.0f}" if "tokens_per_s" in s else "")
    return table

