"""Training data: generated arithmetic, the shared JSONL sets, and the prompt format TRL receives."""

import os
from pathlib import Path

import pytest

from rlvr_cli.core.compose import compose_run
from rlvr_cli.core.errors import BadInput
from rlvr_cli.data.problems import INSTRUCTION, arithmetic_problems, load_problems, prompt_dataset, read_jsonl

DATA = Path(os.environ["RLVR_DATA_DIR"])


def test_arithmetic_is_seeded_and_correct():
    a = arithmetic_problems(50, 20, 3, ["+", "-", "*"], seed=1)
    assert a == arithmetic_problems(50, 20, 3, ["+", "-", "*"], seed=1)
    assert a != arithmetic_problems(50, 20, 3, ["+", "-", "*"], seed=2)
    for row in a:
        expr = row["problem"].removeprefix("What is ").removesuffix("?")
        a1, op1, b, op2, c = expr.split()
        assert int(row["answer"]) == eval(expr)  # usual precedence
        assert all(0 <= int(x) <= 20 for x in (a1, b, c))


def test_arithmetic_rejects_unknown_operators():
    with pytest.raises(BadInput, match=r"data.operators must be a non-empty subset of \['\+', '-', '\*'\]"):
        arithmetic_problems(5, 20, 2, ["/"], seed=0)


@pytest.mark.skipif(not (DATA / "gsm8k_train.jsonl").is_file(), reason="shared data not present")
@pytest.mark.parametrize("name,rows", [("gsm8k", 7473), ("math", 7498)])
def test_shared_training_sets_load_in_full(name, rows):
    problems = load_problems(compose_run([f"data={name}"]).data, seed=0)
    assert len(problems) == rows
    assert all(p["problem"] and p["answer"] for p in problems)
    assert load_problems(compose_run([f"data={name}", "data.max_samples=10"]).data, seed=0) == problems[:10]


def test_jsonl_with_other_column_names(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_text('{"q": "1+1?", "a": 2}\n\n{"q": "2+3?", "a": "5"}\n')
    assert read_jsonl(path, "q", "a") == [{"id": "t-1", "problem": "1+1?", "answer": "2"},
                                          {"id": "t-3", "problem": "2+3?", "answer": "5"}]
    with pytest.raises(BadInput, match=r"t.jsonl:1: row has no 'problem'"):
        read_jsonl(path)


def test_invalid_json_names_the_line(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_text('{"problem": "x", "answer": "1"}\n{oops\n')
    with pytest.raises(BadInput, match=r"t.jsonl:2: not valid JSON"):
        read_jsonl(path)


def test_prompts_are_chat_messages_with_the_boxed_instruction():
    ds = prompt_dataset([{"id": "a", "problem": "What is 1 + 2?", "answer": "3"}])
    assert ds[0]["prompt"] == [{"role": "user", "content": f"What is 1 + 2?\n\n{INSTRUCTION}"}]
    assert ds[0]["answer"] == "3"
    assert "\\boxed{}" in INSTRUCTION


def test_hub_datasets_go_through_datasets_load_dataset(tmp_path):
    """`data=hub` with a dataset directory instead of a hub id: the same `load_dataset` path users take."""
    (tmp_path / "ds").mkdir()
    (tmp_path / "ds" / "train.jsonl").write_text(
        '{"question": "Tom has 2 apples and buys 1,000 more.", "answer": "2 + 1000 = 1002\\n#### 1,002"}\n')
    cfg = compose_run(["data=hub", f"data.hub.id={tmp_path / 'ds'}", "data.hub.problem_key=question",
                   "data.hub.answer_delimiter='####'"]).data
    [row] = load_problems(cfg, seed=0)
    assert row["problem"].startswith("Tom has") and row["answer"] == "1002"
