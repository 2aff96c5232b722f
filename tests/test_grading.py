"""The grader behind the correctness reward, `rlvr eval` and maj@k: one extraction rule, math-verify's equivalence."""

import threading

import pytest

from rlvr_cli.core.errors import BadInput
from rlvr_cli.evaluation.grading import answer_classes, answer_parts, boxed_answers, final_answer, grade
from rlvr_cli.training.rewards import correctness_any_reward, correctness_reward, format_reward

CASES = [
    ("025", "so the answer is \\boxed{25}", True),           # AIME leading zeros
    ("27", "\\boxed{27.0}", True),                           # AMC floats
    ("\\frac{1}{2}", "\\boxed{0.5}", True),
    ("\\frac12", "\\boxed{\\dfrac{1}{2}}", True),
    ("19", "first \\boxed{18}, no wait: \\boxed{19}", True),  # the last box counts
    ("19", "first \\boxed{19}, no wait: \\boxed{18}", False),
    ("19", "\\boxed{\\frac{1}{", False),                     # malformed
    ("(0,1]", "\\boxed{(0, 1]}", True),
    ("\\{1,2\\}", "\\boxed{\\{2,1\\}}", True),
    ("3", "\\boxed{4}", False),
    ("\\frac{1}{2}", "\\boxed{\\frac{2}{4}}", True),                # equivalent fractions
    ("0.5", "\\boxed{1/2}", True),
    ("5", "So Tom has \\boxed{5} apples left, as claimed.", True),  # text around the box
    ("[2,5)", "\\boxed{[2, 5]}", False),                         # interval ends matter
    ("\\{1,2\\}", "\\boxed{\\{1,3\\}}", False),
    # percentages: by their number, in every direction; 0.1 is not 10%
    ("10\\%", "\\boxed{10}", True),
    ("10", "\\boxed{10\\%}", True),
    ("10\\%", "\\boxed{10 \\%}", True),
    ("28\\%", "\\boxed{28 percent}", True),
    ("28\\%", "\\boxed{28\\text{\\%}}", True),
    ("10\\%", "\\boxed{0.1}", False),
    ("10\\%", "\\boxed{11}", False),
    # every way of writing a box
    ("5", "\\boxed {5}", True),
    ("5", "the answer is $\\boxed 5$.", True),
    ("5", "\\fbox{5}", True),
    # several answers: one box, or one box per part when the gold has several parts
    ("2, 5", "\\boxed{5, 2}", True),
    ("2, 5", "so $x = \\boxed{2}$ or $x = \\boxed{5}$", True),
    ("2, 5", "first \\boxed{7}, then \\boxed{2} and \\boxed{5}", True),
    ("2, 5", "so $x = \\boxed{2}$ or $x = \\boxed{6}$", False),
    ("5", "\\boxed{2} and \\boxed{5}", True),                  # one-part gold: the last box alone
    ("(2, 3)", "\\boxed{(2, 3)}", True),                       # tuples are ordered
    ("(2, 3)", "\\boxed{(3, 2)}", False),
    # no closed box: no answer
    ("19", "7 + 12 = 19", False),
    ("5", "So Tom has 5 apples", False),
]


@pytest.mark.parametrize("gold,completion,correct", CASES)
def test_grade(gold, completion, correct):
    assert grade(gold, completion).correct is correct


def test_without_a_box_only_the_any_rule_falls_back_to_math_verify():
    assert grade("19", "7 + 12 = 19", extract="any").correct
    assert grade("19", "7 + 12 = 19").extracted is None
    assert not grade("5", "So Tom has 6 apples left.", extract="any").correct
    with pytest.raises(BadInput, match="--extract must be one of boxed, any"):
        grade("1", "\\boxed{1}", extract="last")


def test_a_reference_solution_cut_before_its_box_earns_nothing():
    """The issue's finding: a MATH-500 solution cut just before its final box was credited by the fallback."""
    solution = "We have $3 \\cdot 4 = 12$, so the area is $12$. Thus the answer is $\\boxed{12}$."
    cut = solution[:solution.index("\\boxed")]
    assert grade("12", solution).correct and not grade("12", cut).correct
    assert grade("12", cut, extract="any").correct


def test_grade_works_off_the_main_thread():
    out = []
    t = threading.Thread(target=lambda: out.append((grade("\\frac{1}{2}", "\\boxed{0.5}"),
                                                    answer_classes(["0.5", "1/2", "3"]))))
    t.start()
    t.join()
    assert out[0][0].correct and out[0][1] == [0, 0, 1]


def test_boxed_answers_and_parts():
    text = "\\boxed{a} \\boxed {b} $\\boxed c$, \\fbox{d} \\boxed{} \\boxed{\\frac{1}{2}} \\boxed{open"
    assert boxed_answers(text) == ["a", "b", "c", "d", "\\frac{1}{2}"]
    assert boxed_answers("no box") == [] and final_answer("no box") is None
    assert [answer_parts(a) for a in ["5", "2, 5", "(2, 3)", "\\{1, 2\\}", "1,000", "x=1; y=2", "[0, 1)"]] == \
        [1, 2, 1, 2, 1, 2, 1]
    assert final_answer("\\boxed{1} \\boxed{2} \\boxed{3}", parts=2) == "2, 3"


def test_answer_classes_group_by_equivalence():
    assert answer_classes(["0.50", "2/4", "3", None, "x = 1/2", "3", "10\\%", "10"]) == [0, 0, 1, -1, 0, 1, 2, 2]
    assert answer_classes([]) == []


def test_rewards_take_trl_conversational_completions():
    completions = [[{"role": "assistant", "content": "\\boxed{3}"}], [{"role": "assistant", "content": "4"}],
                   [{"role": "assistant", "content": "so 1 + 2 = 3"}]]
    assert correctness_reward(completions, answer=["3", "3", "3"]) == [1.0, 0.0, 0.0]
    assert correctness_any_reward(completions, answer=["3", "3", "3"]) == [1.0, 0.0, 1.0]
    assert format_reward(completions) == [1.0, 0.0, 0.0]


def _parts(answer: str) -> list[str]:
    depth, parts, cur = 0, [], ""
    for ch in answer:
        depth += (ch in "([{") - (ch in ")]}")
        if depth == 0 and ch in ",;":
            parts, cur = [*parts, cur.strip()], ""
        else:
            cur += ch
    return [*parts, cur.strip()]


@pytest.mark.parametrize("name", ["olympiadbench", *(pytest.param(n, marks=pytest.mark.slow)
                                                    for n in ("minerva_math", "math500"))])
def test_every_gold_answer_of_a_benchmark_grades_right_against_itself_boxed(name):
    """Real gold answers: each one boxed is right, and a multi-part gold (OlympiadBench's lists) boxed one part per
    box, in reverse order, is right too."""
    from rlvr_cli.evaluation.benchmarks import load_benchmark

    rows = load_benchmark(name, None)
    assert [r["id"] for r in rows if not grade(r["answer"], f"\\boxed{{{r['answer']}}}").correct] == []
    multi = [r for r in rows if answer_parts(r["answer"]) > 1]
    wrong = [r["answer"] for r in multi
             if not grade(r["answer"], " and ".join(f"\\boxed{{{p}}}" for p in _parts(r["answer"])[::-1])).correct]
    assert len(multi) >= {"olympiadbench": 90, "minerva_math": 1, "math500": 4}[name]
    known = {  # prose in the gold; a symbol math-verify 0.9 cannot parse (E_{1}), so only identical text matches
        "olympiadbench": ["f(x)=a x+b$, where $b$ is an arbitrary integer, and $a$ is an arbitrary positive integer "
                          "with $\\mho(a)=0"],
        "minerva_math": ["E_{1},E_{2}"], "math500": []}
    assert wrong == known[name]
