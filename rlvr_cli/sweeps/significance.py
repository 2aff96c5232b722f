"""Seed noise in a sweep report: the 95% confidence interval of a mean over seeds, and whether two settings (optimizers
or adapters, each at its best learning rate) differ by more than that noise.

- `ci95(values)`: the half-width of the two-sided 95% confidence interval of the mean of `n` independent values,
  `t(0.975, n - 1) * s / sqrt(n)` with `s` the sample standard deviation and `t` Student's t quantile
  (`scipy.stats.t.ppf`); a report writes `mean ± ci95`. With 3 seeds t is 4.30, so the interval is 2.5 standard
  deviations wide on each side: three seeds separate only large differences.
- `welch(a, b)`: Welch's unequal-variances t-test of two groups of values (`scipy.stats.ttest_ind(a, b,
  equal_var=False)`, two-sided): its p-value says how often seed noise alone would give a difference in means at
  least this large. `compare` runs it for every pair of rows and marks `p < ALPHA`.

References: Student's t interval and Welch's test as scipy implements them
(https://docs.scipy.org/doc/scipy/reference/generated/scipy.stats.ttest_ind.html); on reporting RL results over
seeds, Henderson et al., "Deep Reinforcement Learning that Matters", arXiv 1709.06560, section 5.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

#: The significance level the report marks a difference at.
ALPHA = 0.05


def ci95(values: Sequence[float]) -> float | None:
    """The half-width of the 95% confidence interval of the mean of `values` (Student's t, `n - 1` degrees of
    freedom); None for fewer than 2 values (no spread to estimate) or any non-finite value.

    Args:
        values: one number per seed (e.g. final rewards, in reward units).
    """
    from scipy import stats

    if len(values) < 2 or not all(math.isfinite(v) for v in values):
        return None
    n = len(values)
    mean = sum(values) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    return float(stats.t.ppf(0.975, n - 1) * std / math.sqrt(n))


def welch(a: Sequence[float], b: Sequence[float]) -> float | None:
    """The two-sided p-value of Welch's t-test that `a` and `b` have the same mean (`scipy.stats.ttest_ind` with
    `equal_var=False`); None when either group has fewer than 2 values or both have no spread (the test is
    undefined there: scipy returns NaN).

    Args:
        a, b: one number per seed of each setting.
    """
    from scipy import stats

    if len(a) < 2 or len(b) < 2 or (len(set(a)) == 1 and len(set(b)) == 1):
        return None
    with warnings.catch_warnings():  # scipy warns of precision loss for nearly equal values; the p-value stands
        warnings.simplefilter("ignore", RuntimeWarning)
        p = float(stats.ttest_ind(list(a), list(b), equal_var=False).pvalue)
    return p if math.isfinite(p) else None


def compare(groups: Sequence[tuple[str, Sequence[float]]]) -> list[dict[str, Any]]:
    """Every pair of `groups` by Welch's t-test, in the order given (first against the rest, then the second...).

    Args:
        groups: `(label, values)` per setting, e.g. `("sgd full lr 0.01", [0.41, 0.45, 0.39])`.

    Returns:
        One dict per pair: `a`, `b` (labels), `mean_a`, `mean_b`, `n_a`, `n_b`, `difference` (`mean_a - mean_b`),
        `p_value` (None where `welch` is undefined) and `significant` (`p_value < ALPHA`; None where undefined).
    """
    out = []
    for i, (label_a, a) in enumerate(groups):
        for label_b, b in groups[i + 1:]:
            if not a or not b:
                continue
            mean_a, mean_b = sum(a) / len(a), sum(b) / len(b)
            p = welch(a, b)
            out.append({"a": label_a, "b": label_b, "mean_a": mean_a, "mean_b": mean_b, "n_a": len(a), "n_b": len(b),
                        "difference": mean_a - mean_b, "p_value": p,
                        "significant": None if p is None else p < ALPHA})
    return out
