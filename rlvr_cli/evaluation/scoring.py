"""Scores over k sampled completions per problem: avg@k, pass@k, maj@k, and their standard errors.

- avg@k: the mean correctness of the k samples of a problem, averaged over problems (what RLVR papers
  report as "avg@k" or "mean@k").
- pass@k: the chance that at least one of k samples is correct, with the unbiased estimator of
  Chen et al. 2021 (arXiv 2107.03374, section 2.1) from n >= k samples of which c are correct:
  1 - C(n - c, k) / C(n, k), computed as a product to stay exact for large n.
- maj@k: the most frequent answer among the k samples is correct (self-consistency, Wang et al. 2022,
  arXiv 2203.11171). Answers vote by equivalence class (`grading.answer_classes`: `0.50`, `2/4` and `x = 1/2` are
  one answer), where lighteval and Qwen2.5-Math group by string. A sample without an answer votes for "no
  answer", as in both of those (so a model that mostly fails to box an answer gets no majority credit); ties go to
  the class seen first; the winning class is correct when its first answer is.
- standard error: the sample standard deviation of the per-problem scores over sqrt(problems).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k of one problem from `n` samples with `c` correct (Chen et al. 2021, arXiv 2107.03374).

    Raises:
        ValueError: unless 0 <= c <= n and 1 <= k <= n.
    """
    if not (0 <= c <= n and 1 <= k <= n):
        raise ValueError(f"pass@k needs 0 <= c <= n and 1 <= k <= n, got n={n}, c={c}, k={k}")
    if n - c < k:
        return 1.0
    return 1.0 - math.prod(1.0 - k / i for i in range(n - c + 1, n + 1))


def majority_correct(classes: Sequence[int], correct: Sequence[bool]) -> bool:
    """Whether the majority answer of one problem's samples is correct.

    Args:
        classes: n answer classes (`grading.answer_classes`; -1: no answer, which votes too).
        correct: n verdicts, in the same order.

    Returns:
        False when "no answer" wins; else the verdict of the winning class's first sample. The class with the most
        votes wins; ties go to the class whose first sample comes first.
    """
    counts = Counter(classes)
    top = max(counts.values())
    winner = next(c for c in classes if counts[c] == top)
    return winner != -1 and correct[list(classes).index(winner)]


def reported_ks(n: int) -> list[int]:
    """The k values reported for n samples: powers of two up to n, and n itself."""
    return sorted({2**i for i in range(n.bit_length()) if 2**i <= n} | {n})


def mean_and_stderr(values: Sequence[float]) -> tuple[float, float]:
    """Mean and standard error of the mean (sample std / sqrt(len)); the error is 0 for one value."""
    m = sum(values) / len(values)
    if len(values) < 2:
        return m, 0.0
    var = sum((v - m) ** 2 for v in values) / (len(values) - 1)
    return m, math.sqrt(var / len(values))


def score(samples: Sequence[tuple[Sequence[bool], Sequence[str | None]]]) -> dict[str, float]:
    """Scores of one benchmark from its problems' samples.

    Args:
        samples: per problem, `(correct, classes)`: n booleans and n answer classes (`grading.answer_classes`;
            n >= 1, the same n for every problem).

    Returns:
        `avg@n`, `pass@k` for every k in `reported_ks(n)`, `maj@n`, each with a `_stderr` twin, plus
        `n_problems` and `k` (= n).

    Raises:
        ValueError: no problems, or problems with different numbers of samples.
    """
    if not samples:
        raise ValueError("no problems to score")
    n = len(samples[0][0])
    if any(len(c) != n for c, _ in samples):
        raise ValueError("every problem needs the same number of samples")
    per_problem: dict[str, list[float]] = {f"avg@{n}": [sum(c) / n for c, _ in samples]}
    for k in reported_ks(n):
        per_problem[f"pass@{k}"] = [pass_at_k(n, sum(c), k) for c, _ in samples]
    per_problem[f"maj@{n}"] = [float(majority_correct(e, c)) for c, e in samples]
    out: dict[str, float] = {"n_problems": len(samples), "k": n}
    for name, values in per_problem.items():
        out[name], out[f"{name}_stderr"] = mean_and_stderr(values)
    return out
