"""rlvr's grader against other projects' grading tests (tests/data/grader_cases.jsonl; provenance in
tests/data/README.md): every case gets the verdict its source test expects, except the cases of DIFFERENT, where
rlvr knowingly decides otherwise; those must keep differing, so the list stays true (a case that starts to agree
fails until it is taken out)."""

import json
from pathlib import Path

import pytest

from rlvr_cli.evaluation.grading import grade

CASES = [json.loads(line) for line in
         (Path(__file__).parent / "data" / "grader_cases.jsonl").read_text(encoding="utf-8").splitlines()]

# case id -> why rlvr's verdict differs from the source test's (source args: the non-default arguments the source
# test passes to Math-Verify's compare_strings; rlvr always grades with math-verify's defaults).
DIFFERENT = {
    "math-verify:7": "gold '1,22' is a decimal comma under the source's match_types=['expr']; rlvr parses the gold "
                     "as \\boxed{1,22}, the list {1, 22}",
    "math-verify:32": "source uses match_types=['latex'] only (inline $...$ across lines is no math); rlvr's "
                      "fallback extraction also takes the bare expression 9",
    "math-verify:33": "source uses match_types=['latex'] only (\\(...\\) across lines is no math); rlvr's fallback "
                      "extraction also takes the bare expression 9",
    "math-verify:127": "precision=4 in the source test; rlvr compares at math-verify's default float rounding (6)",
    "math-verify:135": "precision=2 in the source test (1/3 vs 0.33); rlvr compares at the default rounding (6)",
    "math-verify:141": "precision=2 in the source test (8/3 vs 2.6667); rlvr compares at the default rounding (6)",
    "math-verify:174": "the completion boxes intermediate results (last \\boxed{255}) and ends 'The final answer is "
                       "$10,455$'; rlvr takes the last box, the source's extraction the final-answer phrase",
    "math-verify:188": "allow_set_relation_comp=True in the source test (gold x in [-2,7] vs -2 <= x <= 7); rlvr "
                       "uses the default False",
    "math-verify:254": "rlvr joins every box of a gold solution ('1, 2' = {1,2}); math-verify takes the gold's last "
                       "box (2) as the boxes are not adjacent, so the source expects False",
    "math-verify:256": "strict=False in the source test (f(x) = f(y) up to variable names); rlvr is strict",
    "math-verify:266": "the source expects 1 - 1/e = 1 + 1/e: math-verify's default parse cuts both at \\mathrm{e} "
                       "to 1; rlvr parses the boxed gold to the string only, so False (mathematically right)",
    "hendrycks-math:2": "an ordered list in MATH ('10, 4, -2' is not '4, 10, -2'); math-verify, and so rlvr, "
                        "compares comma lists as sets, as 'find all' answers are",
    "hendrycks-math:9": "an ordered list in MATH ('0.1, 4, 2' is not '4, .1, 2'); math-verify, and so rlvr, "
                        "compares comma lists as sets",
    "tunix:1": "tunix accepts a rounded recurring decimal (16.67 for 16.\\overline{6}); math-verify does not parse "
               "\\overline",
    "tunix:2": "tunix accepts a rounded recurring decimal (2.33 for 2.\\overline{3}); math-verify does not parse "
               "\\overline",
    "tunix:3": "tunix accepts a truncated recurring decimal (2.3 for 2.\\overline{3}); math-verify does not parse "
               "\\overline",
    "tunix:4": "malformed gold \\sqrt{}{3}, which tunix repairs; math-verify cannot parse it",
    "tunix:5": "prediction is bare text with a typo ('\\lex' for '\\le x') and 'or'; tunix rewrites it, math-verify "
               "reads '\\lex' as an unknown command",
}


def _grade(case: dict):
    """A completion as it is, under `extract="any"` (Math-Verify's cases test its extraction from unboxed text too;
    under the default "boxed" rule an unboxed completion is wrong by design); an already-extracted answer boxed."""
    pred = case["pred"] if case["pred_is"] == "completion" else f"\\boxed{{{case['pred']}}}"
    return grade(case["gold"], pred, extract="any")


def test_different_names_existing_cases():
    assert set(DIFFERENT) <= {c["id"] for c in CASES}


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_grader_case(case):
    verdict = _grade(case)
    if case["id"] in DIFFERENT:
        assert verdict.correct != case["expected"], (
            f"{case['id']} now agrees with its source; take it out of DIFFERENT ({DIFFERENT[case['id']]})")
    else:
        assert verdict.correct == case["expected"], (
            f"{case['id']} ({case['source']['test']}, args {case['args']}): expected {case['expected']}, extracted "
            f"{verdict.extracted!r}")
