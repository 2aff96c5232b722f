"""The grader behind the correctness reward: math-verify, gold first, last box wins."""

import threading

import pytest

from rlvr_cli.evaluation.grading import grade, last_boxed
from rlvr_cli.training.rewards import correctness_reward, format_reward

CASES = [
    ("025", "so the answer is \\boxed{25}", True),           # AIME leading zeros
    ("27", "\\boxed{27.0}", True),                           # AMC floats
    ("\\frac{1}{2}", "\\boxed{0.5}", True),
    ("\\frac12", "\\boxed{\\dfrac{1}{2}}", True),
    ("19", "first \\boxed{18}, no wait: \\boxed{19}", True),  # the last box counts
    ("19", "first \\boxed{19}, no wait: \\boxed{18}", False),
    ("19", "7 + 12 = 19", True),                             # no box: math-verify's own extraction
    ("19", "\\boxed{\\frac{1}{", False),                     # malformed
    ("(0,1]", "\\boxed{(0, 1]}", True),
    ("\\{1,2\\}", "\\boxed{\\{2,1\\}}", True),
    ("3", "\\boxed{4}", False),
    ("\\frac{1}{2}", "\\boxed{\\frac{2}{4}}", True),                # equivalent fractions
    ("0.5", "\\boxed{1/2}", True),
    ("5", "So Tom has \\boxed{5} apples left, as claimed.", True),  # text around the box
    ("5", "So Tom has 6 apples left.", False),                  # no box, wrong number
    ("[2,5)", "\\boxed{[2, 5]}", False),                         # interval ends matter
    ("\\{1,2\\}", "\\boxed{\\{1,3\\}}", False),
]


@pytest.mark.parametrize("gold,completion,correct", CASES)
def test_grade(gold, completion, correct):
    assert grade(gold, completion).correct is correct


def test_grade_works_off_the_main_thread():
    out = []
    t = threading.Thread(target=lambda: out.append(grade("\\frac{1}{2}", "\\boxed{0.5}")))
    t.start()
    t.join()
    assert out[0].correct


def test_last_boxed():
    assert last_boxed("a \\boxed{1} b \\boxed{\\frac{1}{2}} c") == "\\frac{1}{2}"
    assert last_boxed("no box") is None and last_boxed("\\boxed{open") is None


def test_rewards_take_trl_conversational_completions():
    completions = [[{"role": "assistant", "content": "\\boxed{3}"}], [{"role": "assistant", "content": "4"}]]
    assert correctness_reward(completions, answer=["3", "3"]) == [1.0, 0.0]
    assert format_reward(completions) == [1.0, 0.0]
