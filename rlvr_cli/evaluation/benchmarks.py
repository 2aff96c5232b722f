"""The benchmarks of `rlvr eval`: their files in the data directory, and the hub datasets users without them get."""

from __future__ import annotations

from dataclasses import dataclass

from rlvr_cli.core.errors import BadInput
from rlvr_cli.data.problems import local_or_hub


@dataclass(frozen=True)
class Benchmark:
    """A test set: its file in the data directory, and the hub dataset users without the files get."""

    name: str
    file: str
    hub_id: str
    hub_split: str
    hub_problem_key: str = "problem"
    hub_answer_key: str = "answer"
    hub_config: str | None = None
    hub_answer_delimiter: str | None = None


BENCHMARKS = {b.name: b for b in (
    Benchmark("math500", "math500.jsonl", "HuggingFaceH4/MATH-500", "test"),
    Benchmark("aime24", "aime24.jsonl", "HuggingFaceH4/aime_2024", "train"),
    Benchmark("aime25", "aime25.jsonl", "math-ai/aime25", "test"),
    Benchmark("amc23", "amc23.jsonl", "math-ai/amc23", "test", hub_problem_key="question"),
    Benchmark("gsm8k", "gsm8k_test.jsonl", "openai/gsm8k", "test", hub_problem_key="question", hub_config="main",
              hub_answer_delimiter="####"),
)}


def parse_benchmarks(names: str | list[str]) -> list[str]:
    """`"math500,gsm8k"` or a list -> validated benchmark names, in order.

    Raises:
        BadInput: an unknown name (the message lists the valid ones) or an empty list.
    """
    names = [n.strip() for n in names.split(",")] if isinstance(names, str) else list(names)
    names = [n for n in names if n]
    if not names:
        raise BadInput(f"no benchmark given; valid benchmarks: {', '.join(BENCHMARKS)}")
    for n in names:
        if n not in BENCHMARKS:
            raise BadInput(f"unknown benchmark '{n}'; valid benchmarks: {', '.join(BENCHMARKS)}")
    return names


def load_benchmark(name: str, data_dir: str | None, limit: int | None = None) -> list[dict[str, str]]:
    """The problems of a benchmark (`id`, `problem`, `answer`), file order, the first `limit` of them.

    Read from `data_dir` (default `$RLVR_DATA_DIR`) when set, else from the hub dataset (`data.problems.local_or_hub`).

    Raises:
        BadInput: the data directory is set and the file is missing (the message names the path).
    """
    b = BENCHMARKS[name]
    hub = {"id": b.hub_id, "config": b.hub_config, "split": b.hub_split, "problem_key": b.hub_problem_key,
           "answer_key": b.hub_answer_key, "answer_delimiter": b.hub_answer_delimiter}
    rows = local_or_hub(b.file, data_dir, hub)
    return rows[:limit] if limit else rows
