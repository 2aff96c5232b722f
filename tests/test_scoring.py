"""avg@k, pass@k and maj@k against brute force."""

import itertools
import math
import random

import pytest

from rlvr_cli.evaluation.scoring import majority_correct, pass_at_k, reported_ks, score


def brute_pass_at_k(correct: list[bool], k: int) -> float:
    """The fraction of all k-subsets of the samples that hold at least one correct sample."""
    subsets = list(itertools.combinations(range(len(correct)), k))
    return sum(any(correct[i] for i in s) for s in subsets) / len(subsets)


@pytest.mark.parametrize("n", [1, 2, 5, 8])
def test_pass_at_k_equals_enumeration_of_subsets(n):
    rng = random.Random(n)
    for _ in range(20):
        correct = [rng.random() < 0.4 for _ in range(n)]
        for k in range(1, n + 1):
            assert pass_at_k(n, sum(correct), k) == pytest.approx(brute_pass_at_k(correct, k), abs=1e-12)


def test_pass_at_k_edges():
    assert pass_at_k(10, 0, 5) == 0.0 and pass_at_k(10, 10, 1) == 1.0 and pass_at_k(10, 6, 5) == 1.0
    assert pass_at_k(200, 3, 1) == pytest.approx(3 / 200)
    with pytest.raises(ValueError, match="1 <= k <= n"):
        pass_at_k(4, 1, 5)


def test_majority_vote():
    assert majority_correct([0, 1, 1], [True, False, False]) is False
    assert majority_correct([0, 1, 0], [True, False, True]) is True
    assert majority_correct([0, 1], [False, True]) is False  # tie: the class seen first wins
    assert majority_correct([-1, -1, 0], [False, False, True]) is False  # "no answer" votes, and wins here
    assert majority_correct([-1, 0, 0], [False, True, True]) is True
    assert majority_correct([-1], [False]) is False


def test_equivalent_answers_vote_together():
    """The issue's example: three correct answers written three ways beat two identical wrong ones."""
    from rlvr_cli.evaluation.grading import answer_classes, grade

    answers = ["0.50", "3", "2/4", "3", "x = 1/2"]
    correct = [grade("\\frac{1}{2}", f"\\boxed{{{a}}}").correct for a in answers]
    assert correct == [True, False, True, False, True]
    assert majority_correct([0, 1, 2, 1, 3], correct) is False  # grouped by string, "3" wins
    classes = answer_classes(answers)
    assert classes == [0, 1, 0, 1, 0] and majority_correct(classes, correct) is True


def test_score_of_a_benchmark():
    problems = [([True, False, False, True], [0, 1, 2, 0]), ([False] * 4, [0] * 4), ([True] * 4, [0] * 4)]
    s = score(problems)
    assert (s["n_problems"], s["k"]) == (3, 4)
    assert s["avg@4"] == pytest.approx((0.5 + 0 + 1) / 3)
    assert s["pass@1"] == pytest.approx(s["avg@4"])  # pass@1 with n samples is the mean accuracy
    assert s["pass@4"] == pytest.approx(2 / 3) and s["maj@4"] == pytest.approx(2 / 3)
    per = [0.5, 0.0, 1.0]
    assert s["avg@4_stderr"] == pytest.approx(math.sqrt(sum((x - 0.5) ** 2 for x in per) / 2 / 3))
    assert set(s) >= {"pass@2", "pass@2_stderr", "maj@4_stderr"}
    assert reported_ks(6) == [1, 2, 4, 6]
