"""Batched against one-problem-at-a-time generation in `rlvr eval` (hf backend) on SmolLM2-135M-Instruct.

The same GSM8K test prompts (chat template + the eval instruction), the same sampling (temperature 0.6,
top-p 0.95, `--max-new-tokens`), generated with `batch_size=1` and with `batch_size=16`. Reported:
completion tokens per second of each and their ratio (goal: at least 4x at batch 16).

    python benchmarks/eval_generation.py [--problems 32] [--max-new-tokens 128]
"""

from __future__ import annotations

import argparse
import time

from rlvr_cli.data.problems import user_message
from rlvr_cli.evaluation.benchmarks import load_benchmark
from rlvr_cli.evaluation.sampling import Sampling, chat_prompts, generate_hf
from rlvr_cli.models.loading import load_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problems", type=int, default=32)
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 16])
    a = parser.parse_args()
    model, tokenizer = load_model("smollm2-135m")
    rows = load_benchmark("gsm8k", None, a.problems)
    prompts = chat_prompts(tokenizer, [user_message(r["problem"]) for r in rows])
    speed = {}
    for bs in a.batch_sizes:
        sampling = Sampling.protocol(k=1, max_new_tokens=a.max_new_tokens, batch_size=bs)
        t0 = time.perf_counter()
        out = generate_hf(model, tokenizer, prompts, sampling)
        wall = time.perf_counter() - t0
        tokens = sum(c.tokens for comps in out for c in comps)
        speed[bs] = tokens / wall
        print(f"batch {bs:>3}: {tokens} completion tokens in {wall:.1f} s = {speed[bs]:.1f} tokens/s")
    lo, hi = min(a.batch_sizes), max(a.batch_sizes)
    print(f"ratio batch {hi} / batch {lo}: {speed[hi] / speed[lo]:.2f}x "
          f"({a.problems} GSM8K test problems, max {a.max_new_tokens} new tokens)")


if __name__ == "__main__":
    main()
