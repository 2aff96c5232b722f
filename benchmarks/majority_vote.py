"""How long maj@k's equivalence vote takes at k = 512 on AIME (the PEFT study's setting, arXiv 2512.23165).

`grading.answer_classes` parses each distinct answer once and checks it with math-verify against one answer per
class found so far, so its cost grows with (distinct answers) x (classes), not with k. Two kinds of vote per
AIME 2024 problem (gold from the shared data file):
- realistic: 512 answers drawn from a long-tailed distribution: the gold (written four ways: `25`, `025`,
  `25.0`, `\\frac{50}{2}`) in `--correct` of the samples, no answer in 10%, the rest wrong integers drawn from a
  Zipf law over 0..999 (a few popular wrong answers, a long tail);
- worst case: 512 pairwise different integers (every answer its own class: 512 x 511 / 2 checks).

    python benchmarks/majority_vote.py [--k 512] [--problems 30] [--correct 0.3] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import time
from pathlib import Path

from rlvr_cli.evaluation.grading import answer_classes


def spellings(gold: int) -> list[str]:
    """Four ways to write the gold answer, all equal for math-verify."""
    return [str(gold), f"{gold:03d}", f"{gold}.0", f"\\frac{{{2 * gold}}}{{2}}"]


def realistic(gold: int, k: int, correct: float, rng: random.Random) -> list[str | None]:
    """k answers for one problem: the gold in four spellings, no answer, and Zipf-distributed wrong integers."""
    wrong = [w for w in rng.sample(range(1000), 200) if w != gold]
    weights = [1 / (i + 1) for i in range(len(wrong))]
    out: list[str | None] = []
    for _ in range(k):
        u = rng.random()
        if u < correct:
            out.append(rng.choice(spellings(gold)))
        elif u < correct + 0.1:
            out.append(None)
        else:
            out.append(str(rng.choices(wrong, weights)[0]))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--k", type=int, default=512)
    parser.add_argument("--problems", type=int, default=30)
    parser.add_argument("--correct", type=float, default=0.3, help="share of samples with the gold answer")
    parser.add_argument("--worst-problems", type=int, default=2, help="problems timed in the worst case")
    parser.add_argument("--seed", type=int, default=0)
    a = parser.parse_args()
    data = Path(os.environ.get("RLVR_DATA_DIR", "../shared/data")) / "aime24.jsonl"
    golds = [int(json.loads(line)["answer"]) for line in data.read_text().splitlines()][:a.problems]
    rng = random.Random(a.seed)
    times, classes = [], []
    for gold in golds:
        answers = realistic(gold, a.k, a.correct, rng)
        t0 = time.perf_counter()
        cls = answer_classes(answers)
        times.append(time.perf_counter() - t0)
        classes.append(max(cls) + 1)
        gold_classes = {c for c, x in zip(cls, answers, strict=True) if x in spellings(gold)}
        assert len(gold_classes) == 1, f"the gold's four spellings fell in {len(gold_classes)} classes"
    worst = []
    for _ in range(a.worst_problems):
        answers = [str(v) for v in rng.sample(range(100000), a.k)]
        t0 = time.perf_counter()
        cls = answer_classes(answers)
        worst.append(time.perf_counter() - t0)
        assert max(cls) + 1 == a.k
    print(f"k = {a.k}, {len(golds)} AIME 2024 problems, gold in {a.correct:.0%} of the samples (4 spellings)")
    print("| vote | classes per problem (median) | seconds per problem (median) | max | whole benchmark (s) |")
    print("|---|---:|---:|---:|---:|")
    print(f"| realistic | {statistics.median(classes):.0f} | {statistics.median(times):.2f} | {max(times):.2f} | "
          f"{sum(times):.1f} |")
    print(f"| worst case ({a.k} different answers) | {a.k} | {statistics.median(worst):.2f} | {max(worst):.2f} | "
          f"{statistics.median(worst) * len(golds):.1f} (estimated) |")


if __name__ == "__main__":
    main()
