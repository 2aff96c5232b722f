"""How often does rlvr's grader agree with other projects' grading tests? (issue 13, items 7 and 8)

Grades every case of tests/data/grader_cases.jsonl (gold, prediction, expected verdict, taken from the test suites
of Math-Verify, the MATH benchmark, tunix and a verl pull request; provenance in tests/data/README.md) with
`rlvr_cli.evaluation.grading.grade`, and prints the agreement per source and overall, then every disagreement with
the answer rlvr extracted. A prediction the source treats as model output (`pred_is: completion`) is passed as the
completion; one the source compares as an already-extracted answer (`pred_is: answer`: MATH's and verl's
`is_equiv`, tunix's math_utils) is passed boxed, `\\boxed{pred}`. Where `grade` takes `extract`, it is called with
`extract="any"` (fall back to math-verify's extraction over the whole text when there is no closed box), which is
what the grader did before `extract` existed, so the same script measures the grader before and after it.

For Math-Verify's cases it also shows, as `mv`, the verdict of Math-Verify's own test helper (`compare_strings` of
its tests/test_all.py, with the arguments the case's test used) under the installed math-verify, which tells an
rlvr-protocol difference (box wrapping, default arguments) from a case the installed library itself no longer meets.

    python benchmarks/grader_agreement.py [--cases tests/data/grader_cases.jsonl] [--json OUT]

To measure an older commit, run this file from a worktree of it with PYTHONPATH pointing there.
"""

from __future__ import annotations

import argparse
import inspect
import json
import time
from collections import defaultdict
from pathlib import Path

from rlvr_cli.evaluation.grading import grade

CASES = Path(__file__).resolve().parents[1] / "tests" / "data" / "grader_cases.jsonl"


def load_cases(path: Path = CASES) -> list[dict]:
    """The cases of a grader_cases.jsonl file, one dict per line (keys: id, gold, pred, expected, source, args)."""
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def rlvr_grade(gold: str, pred: str, timeout_s: int = 5, pred_is: str = "completion"):
    """rlvr's verdict on one case: `grade(gold, pred, extract="any")`, or `grade(gold, pred)` for a grader that
    has no `extract` argument (which always fell back to whole-text extraction); an answer (`pred_is="answer"`) is
    boxed first. Returns the `Verdict`."""
    if pred_is == "answer":
        pred = f"\\boxed{{{pred}}}"
    if "extract" in inspect.signature(grade).parameters:
        return grade(gold, pred, extract="any", timeout_s=timeout_s)
    return grade(gold, pred, timeout_s=timeout_s)


def math_verify_reference(case: dict) -> bool | None:
    """Math-Verify's own verdict for one of its cases, as its test would compute it (tests/test_all.py
    `compare_strings` with the case's `args`, or `verify(parse(gold), parse(pred))`); None for other sources."""
    if case["source"]["repo"] != "huggingface/Math-Verify":
        return None
    from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse, verify

    if case["source"]["call"].startswith("verify("):
        return bool(verify(parse(case["gold"]), parse(case["pred"])))
    a = case["args"]
    targets = [LatexExtractionConfig(boxed_match_priority=0) if t == "latex" else ExprExtractionConfig()
               for t in a.get("match_types", ["latex", "expr"])]
    return bool(verify(parse(case["gold"], targets), parse(case["pred"], targets),
                       float_rounding=a.get("precision", 6), strict=a.get("strict", True),
                       allow_set_relation_comp=a.get("allow_set_relation_comp", False)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=Path, default=CASES)
    parser.add_argument("--json", type=Path, default=None, help="write the summary and disagreements here")
    a = parser.parse_args()
    cases = load_cases(a.cases)
    has_extract = "extract" in inspect.signature(grade).parameters
    per_source: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    disagreements = []
    t0 = time.perf_counter()
    for case in cases:
        source = case["id"].split(":")[0]
        verdict = rlvr_grade(case["gold"], case["pred"], pred_is=case.get("pred_is", "completion"))
        per_source[source][1] += 1
        if verdict.correct == case["expected"]:
            per_source[source][0] += 1
            continue
        disagreements.append({"id": case["id"], "gold": case["gold"], "pred": case["pred"],
                              "expected": case["expected"], "got": verdict.correct,
                              "extracted": None if verdict.extracted is None else str(verdict.extracted),
                              "mv": math_verify_reference(case), "test": case["source"]["test"],
                              "args": case["args"]})
    wall = time.perf_counter() - t0
    agree = sum(v[0] for v in per_source.values())
    call = 'grade(gold, pred, extract="any")' if has_extract else "grade(gold, pred)"
    print(f"grader: {inspect.getsourcefile(grade)}\ncall: {call}; {len(cases)} cases in {wall:.1f} s\n")
    print("| source | agree | cases | agreement |\n|---|---:|---:|---:|")
    for source, (ok, n) in per_source.items():
        print(f"| {source} | {ok} | {n} | {ok / n:.1%} |")
    print(f"| overall | {agree} | {len(cases)} | {agree / len(cases):.1%} |\n")
    print(f"{len(disagreements)} disagreements (mv: Math-Verify's own test helper under the installed math-verify):")
    for d in disagreements:
        print(f"- {d['id']} [{d['test']}{' ' + json.dumps(d['args']) if d['args'] else ''}] "
              f"expected {d['expected']} got {d['got']} mv {d['mv']}\n    gold: {d['gold']!r}\n"
              f"    pred: {d['pred']!r}\n    extracted: {d['extracted']!r}")
    if a.json:
        a.json.write_text(json.dumps({
            "call": call, "grader": inspect.getsourcefile(grade), "cases": len(cases), "agree": agree,
            "wall_s": round(wall, 2), "per_source": {s: {"agree": ok, "cases": n} for s, (ok, n) in per_source.items()},
            "disagreements": disagreements}, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
