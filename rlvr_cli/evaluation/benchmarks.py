"""The benchmarks of `rlvr eval`: their files in the data directory, and the hub datasets users without them get.

Each benchmark is one file of the `benchmark` config group, `conf/benchmark/<name>.yaml`: `_target_:
rlvr_cli.evaluation.benchmarks.Benchmark` and the `Benchmark` fields, built with `hydra.utils.instantiate`
(https://hydra.cc/docs/advanced/instantiate_objects/overview/). Adding a benchmark is one such file.
"""

from __future__ import annotations

from dataclasses import dataclass

from rlvr_cli.core.compose import group_options
from rlvr_cli.core.errors import BadInput, root_cause
from rlvr_cli.core.targets import build_option_file
from rlvr_cli.data.problems import local_or_hub


@dataclass(frozen=True)
class Benchmark:
    """A test set: its file in the data directory, and the hub dataset users without the files get.

    `file`: the JSONL file name in the data directory (rows with `problem` and `answer`). `hub_id`, `hub_config`,
    `hub_split`: the hub dataset (`datasets.load_dataset(hub_id, hub_config, split=hub_split)`);
    `hub_problem_key`, `hub_answer_key`: its columns (a list-valued answer, OlympiadBench's `final_answer`, is joined
    by `", "`; `data.problems.answer_text`); `hub_context_key`: a column prepended to the problem, then a blank line,
    where non-empty (OlympiadBench's `context`); `hub_answer_delimiter`: the gold answer is what follows it (GSM8K's
    `####`). `order`: the benchmark's place in the default list and in result tables (ties by name). `problems`:
    how many problems the benchmark has as published (MATH-500: 500), None when unstated; the tests check the
    data file against it.
    """

    name: str
    file: str
    hub_id: str
    hub_split: str
    hub_problem_key: str = "problem"
    hub_answer_key: str = "answer"
    hub_config: str | None = None
    hub_answer_delimiter: str | None = None
    hub_context_key: str | None = None
    order: int = 100
    problems: int | None = None

    def hub(self) -> dict[str, str | None]:
        """The hub dataset as `data.problems.hub_problems` takes it: `id`, `config`, `split`, `problem_key`,
        `answer_key`, `context_key`, `answer_delimiter`."""
        return {"id": self.hub_id, "config": self.hub_config, "split": self.hub_split,
                "problem_key": self.hub_problem_key, "answer_key": self.hub_answer_key,
                "context_key": self.hub_context_key, "answer_delimiter": self.hub_answer_delimiter}


def load_benchmarks() -> dict[str, Benchmark]:
    """Every file of the `benchmark` config group, instantiated: name (the file's stem) -> `Benchmark`, ordered
    by their `order` field, then name.

    Raises:
        BadInput: a file that does not build a `Benchmark`, or whose `name` differs from its file name.
    """

    out = {}
    for name in group_options("benchmark"):
        try:
            b = build_option_file("benchmark", name, ("rlvr_cli.evaluation.benchmarks",))
        except Exception as e:
            raise BadInput(f"conf/benchmark/{name}.yaml: {root_cause(e)}") from None
        if not isinstance(b, Benchmark) or b.name != name:
            raise BadInput(f"conf/benchmark/{name}.yaml must build a Benchmark named {name!r}, got {b!r}")
        out[name] = b
    return dict(sorted(out.items(), key=lambda item: (item[1].order, item[0])))


#: Benchmark name -> `Benchmark`, from conf/benchmark/*.yaml.
BENCHMARKS = load_benchmarks()


def parse_benchmarks(names: str | list[str] | None) -> list[str]:
    """`"math500,gsm8k"` or a list -> validated benchmark names, in order; None -> every benchmark (`BENCHMARKS`).

    Raises:
        BadInput: an unknown name (the message lists the valid ones) or an empty list.
    """
    if names is None:
        return list(BENCHMARKS)
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
    rows = local_or_hub(b.file, data_dir, b.hub())
    return rows[:limit] if limit else rows
