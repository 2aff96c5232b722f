"""Rebuild tests/data/grader_cases.jsonl from the third-party test files it was taken from (issue 13, item 7).

Every case is a (gold, prediction, expected verdict) triple read out of another project's test suite with Python's
`ast` (nothing is copied by hand): string arguments are evaluated exactly as the test module would evaluate them
(raw strings, escapes, one f-string), so a case holds the very strings the upstream test passes to its grader.
tests/data/README.md lists the sources, commits and licences.

    python benchmarks/extract_grader_cases.py --mirror DIR [--out tests/data/grader_cases.jsonl]

DIR holds one git clone per source repository, named `<owner>+<name>` (e.g. `huggingface+Math-Verify`); each file is
read with `git show <commit>:<path>` at the commit pinned in SOURCES, so the output does not depend on what the
clones have checked out.
"""

from __future__ import annotations

import argparse
import ast
import json
import math
import subprocess
from pathlib import Path

MV = ("huggingface/Math-Verify", "5d148cfaaf99214c2e4ffb4bc497ab042c592a7a")
MATH = ("hendrycks/math", "985bdc1696e88e8643f081a0ff4719da39f2ae2a")
TUNIX = ("google/tunix", "c7d8950f12a9c55a976bf2e1a0d8b447d71c20b3")
# The only verl test with grading triples is in an unmerged pull request (volcengine/verl#2446, open); this is its
# head commit.
VERL_PR = ("volcengine/verl", "87d81599de8a58cb7e0d35b2d5003d62698d4ae7")

MV_FILES = ["tests/test_all.py", "tests/test_boxed.py", "tests/test_numina_cases.py", "tests/test_open_thoughts.py",
            "tests/test_strict.py", "tests/test_yujianll.py"]
# Math-Verify's tests/test_all.py::compare_strings defaults; `args` records only the arguments that differ.
MV_DEFAULTS = {"match_types": ["latex", "expr"], "precision": 6, "strict": True, "allow_set_relation_comp": False}


def git_show(mirror: Path, repo: str, commit: str, path: str) -> str:
    """Text of `path` at `commit` in the clone `mirror/<owner>+<name>`; raises CalledProcessError if absent."""
    git_dir = mirror / repo.replace("/", "+")
    if (git_dir / "repo").exists():
        git_dir = git_dir / "repo"
    return subprocess.run(["git", "-C", str(git_dir), "show", f"{commit}:{path}"], check=True,
                          capture_output=True, text=True).stdout


def value(node: ast.expr):
    """Evaluate a literal node the way the test module would (one Math-Verify case is an f-string over `math`)."""
    return eval(compile(ast.Expression(node), "<case>", "eval"), {"math": math})


def _call_name(node: ast.expr) -> str | None:
    if isinstance(node, ast.Call):
        f = node.func
        return f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else None
    return None


def _find_calls(fn: ast.FunctionDef, name: str) -> list[ast.Call]:
    return [n for n in ast.walk(fn) if isinstance(n, ast.Call) and _call_name(n) == name]


def math_verify_cases(mirror: Path) -> list[dict]:
    """Every (gold, pred, expected) of Math-Verify's pytest files: parametrize lists plus literal
    `compare_strings(...) == N` asserts; `args` holds the compare_strings arguments that differ from the defaults."""
    repo, commit = MV
    out = []
    for path in MV_FILES:
        tree = ast.parse(git_show(mirror, repo, commit, path))
        for fn in (n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name.startswith("test_")):
            calls = _find_calls(fn, "compare_strings")
            if calls:
                call, kind = calls[0], "compare_strings"
            else:
                verify = _find_calls(fn, "verify")
                if not verify or _find_calls(fn, "sympy_expr_eq"):
                    continue
                call, kind = verify[0], "verify(parse(gold), parse(pred))"
            param = next((d for d in fn.decorator_list if _call_name(d) == "parametrize"), None)
            if param is not None:
                names = [s.strip() for s in value(param.args[0]).split(",")]
                rows = [dict(zip(names, row, strict=True)) for row in value(param.args[1])]
                for row in rows:
                    kwargs = {k.arg: row[k.value.id] if isinstance(k.value, ast.Name) else value(k.value)
                              for k in call.keywords}
                    expected = row["expected"] if "expected" in row else row["result"]
                    out.append(_mv_case(path, commit, fn.name, row["gold"], row["pred"], expected, kwargs, kind))
            else:  # literal asserts such as `compare_strings("$\\frac{1}{3}$", "0.3333$", ...) == 1`
                for cmp in (n for n in ast.walk(fn) if isinstance(n, ast.Compare)):
                    if _call_name(cmp.left) == "compare_strings" and isinstance(cmp.comparators[0], ast.Constant):
                        c = cmp.left
                        kwargs = {k.arg: value(k.value) for k in c.keywords}
                        out.append(_mv_case(path, commit, fn.name, value(c.args[0]), value(c.args[1]),
                                            value(cmp.comparators[0]), kwargs, kind))
    return out


def _mv_case(path, commit, test, gold, pred, expected, kwargs, kind) -> dict:
    if kind == "compare_strings":
        args = {k: v for k, v in kwargs.items() if MV_DEFAULTS.get(k) != v}
        call = "compare_strings(gold, pred, **args)"
    else:  # math_verify.parse's own default extraction (boxed_match_priority 55, not compare_strings' 0)
        args, call = {}, kind
    return {"gold": gold, "pred": pred, "expected": bool(expected),
            "source": {"repo": MV[0], "path": path, "commit": commit, "test": test, "call": call}, "args": args}


def math_cases(mirror: Path) -> list[dict]:
    """hendrycks/math modeling/math_equivalence_test.py: one unittest method per case, `test_in`/`test_out`
    assigned and `assertTrue|assertFalse(is_equiv(test_in, test_out))`. The MATH evaluation scripts call
    `is_equiv(model_output, answer)`, so `test_in` (first argument) is the prediction and `test_out` the gold."""
    repo, commit = MATH
    path = "modeling/math_equivalence_test.py"
    out = []
    for cls in (n for n in ast.parse(git_show(mirror, repo, commit, path)).body if isinstance(n, ast.ClassDef)):
        for fn in (n for n in cls.body if isinstance(n, ast.FunctionDef)):
            assigned = {t.targets[0].id: value(t.value) for t in fn.body if isinstance(t, ast.Assign)}
            check = next(n for n in ast.walk(fn) if _call_name(n) in ("assertTrue", "assertFalse"))
            eq = check.args[0]
            pred, gold = (assigned[a.id] for a in eq.args)
            out.append({"gold": gold, "pred": pred, "expected": _call_name(check) == "assertTrue",
                        "source": {"repo": repo, "path": path, "commit": commit, "test": f"{cls.name}.{fn.name}",
                                   "call": "is_equiv(pred, gold)"}, "args": {}})
    return out


def tunix_cases(mirror: Path) -> list[dict]:
    """google/tunix: tests/utils/math_utils_test.py (`grade_answer_special_handling(given_answer, ground_truth)`
    over absl named_parameters) and the GSM8K environment test's one graded step."""
    repo, commit = TUNIX
    out = []
    path = "tests/utils/math_utils_test.py"
    for cls in (n for n in ast.parse(git_show(mirror, repo, commit, path)).body if isinstance(n, ast.ClassDef)):
        for fn in (n for n in cls.body if isinstance(n, ast.FunctionDef)):
            dec = next((d for d in fn.decorator_list if _call_name(d) == "named_parameters"), None)
            if dec is None:
                continue
            for p in map(value, dec.args):
                out.append({"gold": p["ground_truth"], "pred": p["given_answer"], "expected": p["expected"],
                            "source": {"repo": repo, "path": path, "commit": commit,
                                       "test": f"{cls.name}.{fn.name}[{p['testcase_name']}]",
                                       "call": "math_utils.grade_answer_special_handling(pred, gold)"}, "args": {}})
    path = "tests/experimental/examples/math_gsm8k_dist/gsm8k_test.py"
    for cls in (n for n in ast.parse(git_show(mirror, repo, commit, path)).body if isinstance(n, ast.ClassDef)):
        for fn in (n for n in cls.body if isinstance(n, ast.FunctionDef)):
            env = _find_calls(fn, "GSM8KEnv")
            step = _find_calls(fn, "step")
            if not env or not step:
                continue
            gold = value(next(k.value for k in env[0].keywords if k.arg == "gold_answer"))
            reward = next(value(c.args[1]) for c in _find_calls(fn, "assertEqual")
                          if isinstance(c.args[0], ast.Name) and c.args[0].id == "reward")
            out.append({"gold": gold, "pred": value(step[0].args[0]), "expected": reward == 1.0,
                        "source": {"repo": repo, "path": path, "commit": commit, "test": f"{cls.name}.{fn.name}",
                                   "call": "GSM8KEnv(gold_answer=gold).step(pred) reward == 1.0"}, "args": {}})
    return out


def verl_cases(mirror: Path) -> list[dict]:
    """volcengine/verl: tests/utils/reward_score/test_numeric_canonicalization_on_cpu.py::test_is_equiv_boxed
    (`is_equiv(remove_boxed(gt), pred) is True`), from an unmerged pull request (see VERL_PR)."""
    repo, commit = VERL_PR
    path = "tests/utils/reward_score/test_numeric_canonicalization_on_cpu.py"
    out = []
    for fn in (n for n in ast.parse(git_show(mirror, repo, commit, path)).body if isinstance(n, ast.FunctionDef)):
        param = next((d for d in fn.decorator_list if _call_name(d) == "parametrize"), None)
        if param is None or not _find_calls(fn, "is_equiv"):
            continue
        names = [s.strip() for s in value(param.args[0]).split(",")]
        for row in (dict(zip(names, r, strict=True)) for r in value(param.args[1])):
            out.append({"gold": row["gt"], "pred": row["pred"], "expected": True,
                        "source": {"repo": repo, "path": path, "commit": commit, "test": fn.name,
                                   "call": "is_equiv(remove_boxed(gold), pred) is True",
                                   "note": "unmerged pull request https://github.com/volcengine/verl/pull/2446 "
                                           "(its head commit); not in verl's main branch"},
                        "args": {}})
    return out


SOURCES = {"math-verify": math_verify_cases, "hendrycks-math": math_cases, "tunix": tunix_cases,
           "verl-pr": verl_cases}


def pred_is(case: dict) -> str:
    """`"completion"` when the source grades the prediction as model output (it extracts the answer itself:
    Math-Verify's parse, tunix's GSM8K environment), `"answer"` when it compares an already-extracted answer
    (MATH's and verl's `is_equiv`, tunix's `math_utils`); rlvr boxes an answer before grading it."""
    call = case["source"]["call"]
    return "completion" if call.startswith(("compare_strings", "verify(parse", "GSM8KEnv")) else "answer"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mirror", type=Path, required=True, help="folder of <owner>+<name> git clones")
    parser.add_argument("--out", type=Path, default=Path(__file__).parents[1] / "tests/data/grader_cases.jsonl")
    a = parser.parse_args()
    lines = []
    for name, extract in SOURCES.items():
        cases = extract(a.mirror)
        for n, case in enumerate(cases, 1):
            lines.append(json.dumps({"id": f"{name}:{n}", **case, "pred_is": pred_is(case)}, ensure_ascii=False))
        print(f"{name}: {len(cases)} cases")
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"{len(lines)} cases -> {a.out}")


if __name__ == "__main__":
    main()
