"""The OlympiadBench and Minerva Math benchmarks: their shared files, their place in `rlvr eval`, and the rows their
hub fallbacks give (a dataset directory laid out like the hub dataset, read through `datasets.load_dataset`)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import datasets
import pytest
from typer.testing import CliRunner

from rlvr_cli.cli.main import app
from rlvr_cli.data.problems import answer_text, hub_problems, hub_row
from rlvr_cli.evaluation.benchmarks import BENCHMARKS, load_benchmark, parse_benchmarks

DATA = Path(os.environ["RLVR_DATA_DIR"])
NEW = {"olympiadbench": 675, "minerva_math": 272}
needs_files = pytest.mark.skipif(not all((DATA / BENCHMARKS[n].file).is_file() for n in NEW),
                                 reason="the shared benchmark files are not beside this checkout")


@needs_files
@pytest.mark.parametrize("name", NEW)
def test_file_reads_in_full_with_unique_ids_and_answers(name):
    rows = load_benchmark(name, str(DATA))
    assert len(rows) == NEW[name] == len({r["id"] for r in rows})
    assert all(r["id"].startswith(f"{name}/") and r["problem"].strip() and r["answer"].strip() for r in rows)
    assert not [r["answer"] for r in rows if r["answer"].startswith("$") and r["answer"].endswith("$")]
    assert load_benchmark(name, str(DATA), limit=3) == rows[:3]


def _last_boxed(text: str) -> str:
    """The brace-matched content of the last `\\boxed{...}` of `text`."""
    start = text.rindex("\\boxed{") + len("\\boxed{")
    depth, i = 1, start
    while depth:
        depth += {"{": 1, "}": -1}.get(text[i], 0)
        i += 1
    return text[start:i - 1].strip()


@needs_files
def test_minerva_answers_are_the_last_boxed_of_the_solutions():
    raw = [json.loads(line) for line in (DATA / "minerva_math.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [r["answer"] for r in load_benchmark("minerva_math", str(DATA))] == [_last_boxed(r["solution"]) for r in raw]


def test_they_come_last_in_the_default_list_and_in_the_refusal():
    assert parse_benchmarks(None)[-2:] == ["olympiadbench", "minerva_math"]
    assert [BENCHMARKS[n].order for n in parse_benchmarks(None)] == sorted(b.order for b in BENCHMARKS.values())
    r = CliRunner().invoke(app, ["eval", "tiny-random", "--benchmarks", "olympiad"])
    assert r.exit_code == 2
    assert r.stderr == f"error: unknown benchmark 'olympiad'; valid benchmarks: {', '.join(parse_benchmarks(None))}\n"
    assert r.stderr.endswith(", olympiadbench, minerva_math\n")


def test_hub_answers_and_context_become_text():
    assert answer_text(["$1$", " $3$ "]) == "1, 3" and answer_text(["$\\frac{1}{2}$"]) == "\\frac{1}{2}"
    assert answer_text(27.0) == "27.0" and answer_text("$") == "$"
    hub = {**BENCHMARKS["olympiadbench"].hub(), "id": "ob"}
    row = {"id": 7, "question": "Find all $x$.", "context": "Let $f(x)=x^2$.", "final_answer": ["$-1$", "$1$"]}
    assert hub_row(row, hub, 3) == {"id": "ob-train-3", "problem": "Let $f(x)=x^2$.\n\nFind all $x$.",
                                    "answer": "-1, 1"}
    assert hub_row({**row, "context": None}, hub, 0)["problem"] == "Find all $x$."
    assert hub_row({**row, "context": " "}, hub, 0)["problem"] == "Find all $x$."


def _hub_copy(root: Path, config: str | None, split: str, rows: list[dict]) -> str:
    """A dataset directory in the hub's layout: `<config>/<split>-00000.jsonl` declared as a config in README.md
    (https://huggingface.co/docs/hub/datasets-manual-configuration), or `<split>.jsonl` without a config."""
    lines = "".join(json.dumps(r) + "\n" for r in rows)
    root.mkdir()
    if config is None:
        (root / f"{split}.jsonl").write_text(lines)
    else:
        (root / config).mkdir(parents=True)
        (root / config / f"{split}-00000.jsonl").write_text(lines)
        (root / "README.md").write_text(f"---\nconfigs:\n- config_name: {config}\n  data_files:\n  - split: {split}\n"
                                        f"    path: {config}/{split}-*\n---\n")
    return str(root)


@pytest.mark.parametrize("name,rows,expected", [
    ("olympiadbench",
     [{"id": 1606, "question": "How many moves?", "context": None, "final_answer": ["$2$"], "unit": None},
      {"id": 2, "question": "Find $a$ and $b$.", "context": "Let $a<b$ be primes.", "final_answer": ["$2, 3$"],
       "unit": None}],
     [("How many moves?", "2"), ("Let $a<b$ be primes.\n\nFind $a$ and $b$.", "2, 3")]),
    ("minerva_math",
     [{"question": "Find the diameter (in cm).", "answer": "1.6"}],
     [("Find the diameter (in cm).", "1.6")]),
])
def test_hub_fallback_reads_the_hub_layout(name, rows, expected, tmp_path, monkeypatch):
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "cache")
    b = BENCHMARKS[name]
    path = _hub_copy(tmp_path / "hub", b.hub_config, b.hub_split, rows)
    got = hub_problems({**b.hub(), "id": path})
    assert [(r["problem"], r["answer"]) for r in got] == expected
    assert [r["id"] for r in got] == [f"{path}-{b.hub_split}-{i}" for i in range(len(rows))]


@needs_files
def test_eval_scores_both(tmp_path):
    out = tmp_path / "ev"
    r = CliRunner().invoke(app, ["eval", "tiny-random", "--benchmarks", "olympiadbench,minerva_math", "--limit", "2",
                                 "--k", "1", "--max-new-tokens", "4", "--data-dir", str(DATA), "--output-dir",
                                 str(out)])
    assert r.exit_code == 0, r.output
    results = json.loads((out / "results.json").read_text())
    assert list(results["benchmarks"]) == ["olympiadbench", "minerva_math"]
    assert [s["n_problems"] for s in results["benchmarks"].values()] == [2, 2]
    samples = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    gold = {n: [p["answer"] for p in load_benchmark(n, str(DATA), 2)] for n in NEW}
    assert [(s["benchmark"], s["gold"]) for s in samples] == [(n, a) for n in NEW for a in gold[n]]
