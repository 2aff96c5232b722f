"""Training problems: generated arithmetic, local JSONL files, or hub datasets; and their prompts.

Every source yields the same rows, `{"id": str, "problem": str, "answer": str}`; `prompt_dataset`
turns them into TRL's conversational format (`prompt` = chat messages, `answer` passed on to the
reward functions). Local files are read and checked in full before any model is loaded.
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from rlvr_cli.core import hub as hub_access
from rlvr_cli.core.errors import BadInput, one_line
from rlvr_cli.core.nodes import to_node
from rlvr_cli.core.run_config import Data

#: The instruction appended to every problem; the same one `rlvr eval` uses (Qwen2.5-Math protocol).
INSTRUCTION = "Please reason step by step, and put your final answer within \\boxed{}."
OPERATORS = ("+", "-", "*")


def arithmetic_problems(num_samples: int, max_operand: int, num_terms: int, operators: list[str],
                        seed: int) -> list[dict[str, str]]:
    """Seeded small-integer problems such as "What is 7 + 12?" (gold "19").

    Args:
        num_samples: number of problems.
        max_operand: operands are drawn uniformly from 0..max_operand.
        num_terms: operands per problem (>= 2).
        operators: a subset of `+ - *`, drawn uniformly for each position; usual precedence.
        seed: the same seed gives the same problems.

    Raises:
        BadInput: an unknown operator, num_terms < 2, num_samples < 1 or max_operand < 1.
    """
    bad = [op for op in operators if op not in OPERATORS]
    if bad or not operators:
        raise BadInput(f"data.operators must be a non-empty subset of {list(OPERATORS)}, got {list(operators)}")
    if num_terms < 2 or num_samples < 1 or max_operand < 1:
        raise BadInput("data.num_terms must be >= 2, data.num_samples and data.max_operand >= 1, got "
                       f"{num_terms}, {num_samples}, {max_operand}")
    rng = random.Random(seed)
    rows = []
    for i in range(num_samples):
        text = str(rng.randint(0, max_operand))
        for _ in range(num_terms - 1):
            text += f" {rng.choice(operators)} {rng.randint(0, max_operand)}"
        value = eval(text, {"__builtins__": {}})  # our own digits and + - * only; usual precedence
        rows.append({"id": f"arithmetic-{seed}-{i}", "problem": f"What is {text}?", "answer": str(value)})
    return rows


def resolve_path(path: str, data_dir: str | None) -> Path:
    """The file a data config names: `path` if absolute, else `data_dir / path`.

    Raises:
        BadInput: the file does not exist (the message names the full path).
    """
    p = Path(path).expanduser()
    if not p.is_absolute() and data_dir:
        p = Path(data_dir).expanduser() / p
    if not p.is_file():
        raise BadInput(f"data file not found: {p} (set data.path, or data.data_dir / $RLVR_DATA_DIR)")
    return p


def read_jsonl(path: Path, problem_key: str = "problem", answer_key: str = "answer") -> list[dict[str, str]]:
    """Read problems from a JSON Lines file, checking every row.

    Raises:
        BadInput: a file that is not UTF-8 text (a binary file: the message names the file), a line that is not a JSON
            object, or a row without a non-empty problem or answer (the message gives the file and line number).
    """
    rows = []
    try:
        with open(path, encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as e:
                    raise BadInput(f"{path}:{lineno}: not valid JSON ({e.msg})") from None
                if not isinstance(row, dict):
                    raise BadInput(f"{path}:{lineno}: expected a JSON object, got {type(row).__name__}")
                for key in (problem_key, answer_key):
                    if row.get(key) in (None, ""):
                        raise BadInput(f"{path}:{lineno}: row has no '{key}' (keys: {', '.join(row) or 'none'}); "
                                       f"set data.problem_key / data.answer_key")
                rows.append({"id": str(row.get("id", f"{path.stem}-{lineno}")), "problem": str(row[problem_key]),
                             "answer": str(row[answer_key])})
    except UnicodeDecodeError as e:  # a binary file, or text in another encoding
        raise BadInput(f"{path}: not a UTF-8 text file (byte {e.object[e.start]:#04x}: {e.reason}); data.path must "
                       f"name a JSON Lines file, one JSON object per line") from None
    if not rows:
        raise BadInput(f"{path}: no rows")
    return rows


def answer_text(value: Any) -> str:
    """A gold answer cell as text: a list (OlympiadBench's `final_answer`, e.g. `["$1$", "$3$"]`) -> its items
    joined by `", "` (`"1, 3"`), anything else -> `str(value)`; each item stripped of surrounding whitespace and of
    one enclosing `$...$` (LaTeX math mode: `"$2$"` -> `"2"`)."""
    items = value if isinstance(value, (list, tuple)) else [value]
    texts = [str(v).strip() for v in items]
    return ", ".join(t[1:-1].strip() if len(t) > 1 and t[0] == t[-1] == "$" else t for t in texts)


def hub_row(row: Mapping[str, Any], hub: Mapping[str, Any], index: int) -> dict[str, str]:
    """One row of a hub dataset -> `{"id", "problem", "answer"}`.

    Args:
        row: the dataset row (column -> value).
        hub: the `hub_problems` settings: `problem_key`, `answer_key` (the value goes through `answer_text`),
            optionally `context_key` (a column whose non-empty text, a blank line, then the problem is the problem:
            OlympiadBench's `context`) and `answer_delimiter` (the answer is the text after its last occurrence,
            thousands commas removed: GSM8K's `#### 1,080` -> `1080`).
        index: the row's position, for its id `<id>-<split>-<index>`.
    """
    answer = answer_text(row[hub["answer_key"]])
    if hub.get("answer_delimiter"):
        answer = answer.rsplit(hub["answer_delimiter"], 1)[-1].strip().replace(",", "")
    problem = str(row[hub["problem_key"]])
    context = row.get(hub["context_key"]) if hub.get("context_key") else None
    if context and str(context).strip():
        problem = f"{str(context).strip()}\n\n{problem}"
    return {"id": f"{hub['id']}-{hub['split']}-{index}", "problem": problem, "answer": answer}


def hub_problems(hub: Mapping[str, Any]) -> list[dict[str, str]]:
    """Problems from a Hugging Face hub dataset (`datasets.load_dataset(id, config, split=...)`), each row
    converted by `hub_row`.

    Args:
        hub: `id`, `split`, `problem_key`, `answer_key`, and optionally `config`, `context_key` and
            `answer_delimiter` (see `hub_row`). A dict or a `data.hub` config block.

    While the hub cannot be asked (`rlvr_cli.core.hub.unreachable`: `HF_HUB_OFFLINE`, or no answer through
    huggingface_hub's client), datasets reads its cache only (`datasets.config.HF_HUB_OFFLINE` for the call): a
    cached dataset loads and a missing one fails at once, as a hub model does, instead of after datasets' retries
    (about 25 s).

    Raises:
        BadInput: the dataset cannot be loaded (no network, unknown id), or it has no such split or config.
    """
    import datasets
    from datasets import load_dataset

    why = hub_access.unreachable()
    cache_only = datasets.config.HF_HUB_OFFLINE
    datasets.config.HF_HUB_OFFLINE = cache_only or why is not None
    try:
        ds = load_dataset(hub["id"], hub.get("config"), split=hub["split"])
    except (ConnectionError, OSError, FileNotFoundError) as e:
        where = f": not in the datasets cache, and the hub {why}" if why else f" from the hub ({one_line(e)})"
        raise BadInput(f"cannot load dataset '{hub['id']}'{where}; for local JSONL files set $RLVR_DATA_DIR "
                       f"(make does: ../shared/data) or the data directory") from None
    except ValueError as e:  # datasets' "Unknown split", a bad config name
        raise BadInput(f"dataset '{hub['id']}' (config {hub.get('config')}, split {hub['split']!r}): "
                       f"{one_line(e, 300)}; set data.hub.split (or data.hub.config) to one it has") from None
    finally:
        datasets.config.HF_HUB_OFFLINE = cache_only
    return [hub_row(row, hub, i) for i, row in enumerate(ds)]


def local_or_hub(path: str | None, data_dir: str | None, hub: Mapping[str, Any] | None,
                 problem_key: str = "problem", answer_key: str = "answer") -> list[dict[str, str]]:
    """The one rule, for training data and benchmarks alike, that picks a local JSONL file or a hub dataset.

    The local file when one is named and it can be found: `path` is absolute, or a data directory is given
    (`data_dir`, else `$RLVR_DATA_DIR`), or there is no hub dataset to fall back on. Otherwise the hub dataset
    (`hub_problems`), which needs the network.

    Raises:
        BadInput: a missing file (the message names the full path), a bad row, or neither a file nor a hub id.
    """
    data_dir = data_dir or os.environ.get("RLVR_DATA_DIR")
    if path and (data_dir or Path(path).expanduser().is_absolute() or not hub):
        return read_jsonl(resolve_path(path, data_dir), problem_key, answer_key)
    if hub:
        return hub_problems(hub)
    raise BadInput("neither a data file nor a hub dataset is named")


def load_problems(cfg: Data, seed: int) -> list[dict[str, str]]:
    """The training problems a `data` config describes, shuffled with `seed`, cut to `max_samples`.

    Order of lookup for file-backed sets: `path` (absolute, or under `data_dir` / `$RLVR_DATA_DIR`);
    with no data directory and a `hub` block, the hub dataset.

    Raises:
        BadInput: a missing file, a bad row, or a set with neither a local file nor a hub id.
    """
    if cfg.name == "arithmetic":
        return arithmetic_problems(cfg.num_samples, cfg.max_operand, cfg.num_terms, list(cfg.operators), seed)
    if not cfg.path and cfg.hub is None:
        raise BadInput(f"data '{cfg.name}' names neither a file (data.path) nor a hub dataset (data.hub.id)")
    hub = None if cfg.hub is None else to_node(cfg.hub)
    rows = local_or_hub(cfg.path, cfg.data_dir, hub, cfg.problem_key, cfg.answer_key)
    random.Random(seed).shuffle(rows)
    return rows[: cfg.max_samples] if cfg.max_samples else rows


def user_message(problem: str, instruction: str | None = None) -> str:
    """The user message of a problem, in training and evaluation alike: the problem, a blank line, and the
    instruction (default `INSTRUCTION`, the Qwen2.5-Math evaluation prompt)."""
    return f"{problem}\n\n{instruction or INSTRUCTION}"


def prompt_dataset(rows: list[dict[str, str]], instruction: str | None = None) -> Any:
    """A `datasets.Dataset` in TRL's conversational prompt format.

    Columns: `prompt` (one user message: the problem, a blank line, the instruction, by default
    `INSTRUCTION`; TRL applies the model's chat template), `answer` (gold, passed to reward
    functions), `id`.
    """
    from datasets import Dataset

    return Dataset.from_list([
        {"prompt": [{"role": "user", "content": user_message(r["problem"], instruction)}], "answer": r["answer"],
         "id": r["id"]}
        for r in rows
    ])
