"""How much learning signal would a CPU task give at step 0? Samples the embedded SmolLM2 on arithmetic variants.

For each variant (instruction, operand range, temperature, completion tokens): 24 problems x 4 samples (a GRPO group)
at training's sampling (top-p 1.0, bf16 autocast), graded by rlvr's own grader with the strict boxed rule and with
math-verify's extraction of the last expression ("any"); prints the share correct under each, the share boxed, and
the share of groups whose 4 rewards are all equal (such a group has zero GRPO advantage, hence no gradient). The
table in docs/benchmarks/training.md ("The CPU task") comes from it.

    python benchmarks/task_probe.py ['[{"max_operand": 20, "temperature": 1.0, "tokens": 24, "instruction": "..."}]']
"""

from __future__ import annotations

import json
import sys
import time

#: The variants of docs/benchmarks/training.md's table, when none are given.
VARIANTS = [
    {"instruction": "Give only the final answer, written as \\boxed{N} (for example \\boxed{7})."},
    {"instruction": "Give only the final answer, written as \\boxed{N} (for example \\boxed{7}).", "max_operand": 10},
    {"instruction": "Please reason step by step, and put your final answer within \\boxed{}.", "tokens": 48},
    {"instruction": "Give only the final answer, written as \\boxed{N} (for example \\boxed{7}).", "temperature": 0.7},
    {"instruction": "Reply with \\boxed{N} only. Example: What is 3 + 4? \\boxed{7}"},
    {"instruction": "Answer in the form \\boxed{N}.", "temperature": 0.7},
    {"instruction": "Answer with a single number."},
    {"instruction": "Answer with a single number.", "temperature": 0.7},
]


def main() -> None:
    import torch

    from rlvr_cli.data.problems import arithmetic_problems, user_message
    from rlvr_cli.evaluation.grading import boxed_answers, grade
    from rlvr_cli.evaluation.sampling import Sampling, chat_prompts, generate_hf
    from rlvr_cli.models.loading import load_model

    variants = json.loads(sys.argv[1]) if len(sys.argv) > 1 else VARIANTS
    model, tokenizer = load_model("smollm2-135m")
    print("| instruction | operands | temperature | tokens | boxed correct | any correct | boxed | equal groups "
          "(boxed) | equal groups (any) | seconds |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for v in variants:
        t0 = time.perf_counter()
        top, temperature, tokens = v.get("max_operand", 20), v.get("temperature", 1.0), v.get("tokens", 24)
        rows = arithmetic_problems(24, top, 2, ["+"], seed=123)
        prompts = chat_prompts(tokenizer, [user_message(r["problem"], v["instruction"]) for r in rows])
        sampling = Sampling(k=4, temperature=temperature, top_p=1.0, max_new_tokens=tokens, batch_size=48, seed=0)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            outs = generate_hf(model, tokenizer, prompts, sampling)
        strict, loose, boxed, equal_strict, equal_loose = [], [], [], 0, 0
        for row, group in zip(rows, outs, strict=True):
            s = [grade(row["answer"], c.text).correct for c in group]
            a = [grade(row["answer"], c.text, extract="any").correct for c in group]
            strict += s
            loose += a
            boxed += [bool(boxed_answers(c.text)) for c in group]
            equal_strict += len(set(s)) == 1
            equal_loose += len(set(a)) == 1

        def pct(x: list[bool] | int, n: int | None = None) -> str:
            return f"{(x if n else sum(x)) / (n or len(x)):.0%}"

        print(f"| {v['instruction']} | 0..{top} | {temperature} | {tokens} | {pct(strict)} | {pct(loose)} | "
              f"{pct(boxed)} | {pct(equal_strict, len(rows))} | {pct(equal_loose, len(rows))} | "
              f"{time.perf_counter() - t0:.0f} |", flush=True)


if __name__ == "__main__":
    main()
