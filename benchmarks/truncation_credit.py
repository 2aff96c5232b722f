"""How many truncated completions of a real `rlvr train` run the old grading rule paid for.

The old rule (`extract="any"`, `rewards.correctness_any`) grades a completion without a closed `\\boxed{}` on
math-verify's extraction over the whole text; the new one (`extract="boxed"`, `rewards.correctness`) gives it 0.
This file is both halves of the measurement:

1. `record`, a reward function (TRL's contract) that returns 0.0 for every completion and appends each one (step,
   text, gold answer, completion tokens) to the JSONL file named by `$RLVR_COMPLETIONS`. Added with weight 0 it
   changes nothing in training and sees every completion the run samples:

       RLVR_COMPLETIONS=/tmp/completions.jsonl PYTHONPATH=benchmarks \\
           python benchmarks/demo_learning.py --seeds 0 1 2 +rewards.truncation_credit.record=0

2. `python benchmarks/truncation_credit.py /tmp/completions.jsonl [--max-tokens 24]`: grades every recorded
   completion under both rules and prints, for the truncated ones (exactly `max_completion_length` tokens,
   the `grpo.max_completion_length` of the run) and for all, how many each rule credits.

`python benchmarks/truncation_credit.py --math500 $RLVR_DATA_DIR/math500.jsonl` does the same for MATH-500's
reference solutions cut just before their last `\boxed` and cut at half their length.
"""

from __future__ import annotations

import argparse
import json
import os
from collections import Counter
from typing import Any


def record(completions: list, answer: list[str], completion_ids: list | None = None, trainer_state: Any = None,
           **_: Any) -> list[float]:
    """A zero reward that appends every completion to `$RLVR_COMPLETIONS` (JSONL: `step`, `completion`, `gold`,
    `tokens`). One 0.0 per completion."""
    from rlvr_cli.training.rewards import completion_text

    step = getattr(trainer_state, "global_step", None)
    with open(os.environ["RLVR_COMPLETIONS"], "a") as f:
        for i, (c, gold) in enumerate(zip(completions, answer, strict=True)):
            tokens = len(completion_ids[i]) if completion_ids is not None else None
            f.write(json.dumps({"step": step, "completion": completion_text(c), "gold": gold, "tokens": tokens}) + "\n")
    return [0.0] * len(completions)


def main() -> None:
    from rlvr_cli.evaluation.grading import grade

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("completions", nargs="?", help="the JSONL file `record` wrote")
    parser.add_argument("--max-tokens", type=int, default=24, help="the run's grpo.max_completion_length")
    parser.add_argument("--math500", help="instead: cut MATH-500's reference solutions (this JSONL file)")
    a = parser.parse_args()
    if a.math500:
        return cut_solutions(a.math500)
    rows = [json.loads(line) for line in open(a.completions)]
    counts: Counter = Counter()
    for r in rows:
        group = "truncated" if r["tokens"] is not None and r["tokens"] >= a.max_tokens else "finished"
        new = grade(r["gold"], r["completion"]).correct
        old = grade(r["gold"], r["completion"], extract="any").correct
        counts[group, "n"] += 1
        counts[group, "old"] += old
        counts[group, "new"] += new
    print(f"{len(rows)} completions from {a.completions}; truncated: exactly {a.max_tokens} completion tokens")
    print("| completions | n | credited by the old rule (any) | credited by the new rule (boxed) |")
    print("|---|---:|---:|---:|")
    for group in ("truncated", "finished"):
        n = counts[group, "n"]
        if n:
            print(f"| {group} | {n} | {counts[group, 'old']} ({counts[group, 'old'] / n:.1%}) | "
                  f"{counts[group, 'new']} ({counts[group, 'new'] / n:.1%}) |")


def cut_solutions(path: str) -> None:
    """Grade MATH-500's reference solutions cut before their last `\\boxed` and at half length, both rules."""
    from rlvr_cli.evaluation.grading import grade

    rows = [json.loads(line) for line in open(path)]
    print(f"{len(rows)} MATH-500 reference solutions ({path})")
    print("| solution | credited by the old rule (any) | credited by the new rule (boxed) |")
    print("|---|---:|---:|")
    for name, cut in (("whole", lambda s: s), ("cut before its last \\boxed", lambda s: s[:s.rfind("\\boxed")]),
                      ("cut at half length", lambda s: s[:len(s) // 2])):
        texts = [(r["answer"], cut(r["solution"])) for r in rows]
        old = sum(grade(g, t, extract="any").correct for g, t in texts)
        new = sum(grade(g, t).correct for g, t in texts)
        print(f"| {name} | {old} ({old / len(rows):.1%}) | {new} ({new / len(rows):.1%}) |")


if __name__ == "__main__":
    main()
