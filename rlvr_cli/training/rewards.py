"""Reward functions for TRL's `GRPOTrainer`, chosen by name in the config (`rewards: {name: weight}`).

A name is either an option of the `reward` config group, `conf/reward/<name>.yaml` (`_target_:
hydra.utils.get_method` and `path:` the function's import path, built with `hydra.utils.instantiate`, so TRL gets
the function itself and logs it as `rewards/<function name>/mean`), or a dotted import path of any function, as
TRL's own GRPO script accepts (`--reward_funcs my_lib.my_module.my_reward`). Hydra's override grammar splits keys
at dots, so `+rewards.my_lib.my_module.my_reward=1.0` arrives as nested keys, and `reward_weights` joins them back
into the dotted path. Adding a reward is one YAML file (plus its function when it needs new code).

Each function follows TRL's reward-function contract (TRL docs, GRPOTrainer, "Using a custom reward function"):
called with the batch's `prompts`, `completions` and every dataset column as keyword lists (here `answer`), it
returns one float per completion. Completions come in TRL's conversational form
(`[{"role": "assistant", "content": ...}]`) or as text. A reward named by import path runs the user's own code,
as TRL's `--reward_funcs` does; it must be a Python function that takes the completions (`check_reward_function`).
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import sys
from collections.abc import Callable, Mapping
from typing import Any

from rlvr_cli.core.compose import group_options
from rlvr_cli.core.errors import BadInput, root_cause
from rlvr_cli.core.targets import build_option_file
from rlvr_cli.evaluation.grading import boxed_answers, grade

RewardFunc = Callable[..., list[float]]


def completion_text(completion: Any) -> str:
    """The text of one TRL completion: a string, or the content of its last message."""
    return completion if isinstance(completion, str) else completion[-1]["content"]


def correctness_reward(completions: list, answer: list[str], **_: Any) -> list[float]:
    """1.0 when math-verify finds the answer in the completion's last closed `\\boxed{}` equivalent to the gold
    `answer`, else 0.0: a completion without a closed box (e.g. cut at `max_completion_length`) earns 0
    (rlvr_cli.evaluation.grading.grade with `extract="boxed"`, the grader of `rlvr eval`). One float per
    completion."""
    return [float(grade(gold, completion_text(c)).correct) for c, gold in zip(completions, answer, strict=True)]


def correctness_any_reward(completions: list, answer: list[str], **_: Any) -> list[float]:
    """`correctness_reward` with math-verify's extraction over the whole text when there is no closed box
    (`extract="any"`, rlvr's rule before it required a box; pays for unfinished completions whose last expression
    happens to be right). One float per completion."""
    return [float(grade(gold, completion_text(c), extract="any").correct)
            for c, gold in zip(completions, answer, strict=True)]


def format_reward(completions: list, **_: Any) -> list[float]:
    """1.0 when the completion puts an answer in a closed box (`grading.boxed_answers`: `\\boxed{...}`,
    `\\boxed {...}`, `\\boxed X`, `\\fbox{...}`), else 0.0. One float per completion."""
    return [float(bool(boxed_answers(completion_text(c)))) for c in completions]


def completion_length_reward(completions: list, **_: Any) -> list[float]:
    """The completion's length in characters / 100, at most 1.0: a dense reward for smoke runs of the machinery on
    random models (tiny-random never answers a math problem, so correctness and format give every completion 0 and
    GRPO no advantage). Not a math reward, so not a file of conf/reward/: `sweeps/search_smoke.yaml` names it by its
    import path (`+rewards.rlvr_cli.training.rewards.completion_length_reward=1.0`)."""
    return [min(len(completion_text(c)) / 100, 1.0) for c in completions]


def reward_names() -> list[str]:
    """The rewards known by name: the options of the `reward` config group (conf/reward/*.yaml)."""
    return group_options("reward")


def reward_weights(rewards: Mapping[str, Any]) -> dict[str, Any]:
    """The config's `rewards` mapping with nested keys joined by dots: `{"pkg": {"mod": {"fn": 1.0}}}` (what
    `+rewards.pkg.mod.fn=1.0` composes to) -> `{"pkg.mod.fn": 1.0}`; other entries unchanged, in order."""
    out: dict[str, Any] = {}
    for name, weight in rewards.items():
        if isinstance(weight, Mapping):
            out.update({f"{name}.{k}": w for k, w in reward_weights(weight).items()})
        else:
            out[name] = weight
    return out


def reward_function(name: str) -> RewardFunc:
    """The reward function called `name`: `conf/reward/<name>.yaml` instantiated, else the function at the dotted
    import path `name` (`hydra.utils.get_object`, checked by `check_reward_function`).

    Raises:
        BadInput: an unknown name (the message lists the valid names), a path that cannot be imported, or a
            target that is not callable. One line.
    """
    from hydra.utils import get_object

    names = reward_names()
    if name in names:
        try:
            func = build_option_file("reward", name, ("hydra.utils.get_method",))
        except Exception as e:
            raise BadInput(f"reward '{name}' (conf/reward/{name}.yaml): {root_cause(e)}") from None
    elif "." in name:
        hydra_log = logging.getLogger("hydra.utils")  # it logs every lookup that fails: the refusal is one line
        previous, hydra_log.disabled = hydra_log.disabled, True
        try:
            with contextlib.redirect_stdout(sys.stderr):  # a module that prints on import keeps --json's stdout clean
                func = get_object(name)
        except Exception as e:
            raise BadInput(f"reward '{name}': cannot import it: {root_cause(e)}") from None
        finally:
            hydra_log.disabled = previous
        check_reward_function(name, func)
    else:
        raise BadInput(f"unknown reward '{name}'; valid rewards: {', '.join(names)}, or a function's dotted import "
                       f"path (+rewards.my_module.my_reward=1.0)")
    if not callable(func):
        raise BadInput(f"reward '{name}' is not a function: {func!r}")
    return func


def check_reward_function(name: str, func: Any) -> None:
    """A reward given by import path must be a Python function that takes the completions: TRL calls it with the
    keyword arguments `prompts`, `completions`, `completion_ids` and every dataset column (TRL docs, GRPOTrainer,
    "Using a custom reward function"), so its signature names `completions` or takes `**kwargs`. That refuses,
    before any model loads, what an import path can name by mistake: builtins (`os.system`, `builtins.print`),
    classes, module attributes that are not functions, and functions of another contract (`subprocess.getoutput`).

    Raises:
        BadInput: naming the path, what it is, and the contract.
    """
    contract = "a reward is def f(completions, **kwargs) -> list[float] (TRL's reward-function contract)"
    if not inspect.isfunction(func):
        kind = ("a builtin" if inspect.isbuiltin(func) else "a class" if inspect.isclass(func)
                else f"a {type(func).__name__}")
        raise BadInput(f"reward '{name}' is {kind}, not a Python function; {contract}")
    params = inspect.signature(func).parameters.values()
    if not any(p.name == "completions" or p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        raise BadInput(f"reward '{name}' does not take the completions (its parameters: "
                       f"{', '.join(p.name for p in params) or 'none'}); {contract}")


def build_rewards(weights: Mapping[str, Any]) -> tuple[list[RewardFunc], list[float]]:
    """Reward functions and their weights for `GRPOTrainer(reward_funcs=...)` and `GRPOConfig(reward_weights=...)`.

    A weight of 0 keeps the function (TRL still logs it as `rewards/<name>/mean`) without counting it in the
    reward.

    Args:
        weights: the config's `rewards`: reward name (or dotted import path, possibly as nested keys) -> weight.

    Returns:
        `(functions, weights)`, two lists of the same length, in the mapping's order.

    Raises:
        BadInput: an unknown reward name (the message lists the valid ones), an import path that fails, or all
            weights zero.
    """
    flat = reward_weights(weights)
    funcs = [reward_function(n) for n in flat]
    if not any(flat.values()):
        raise BadInput("every reward weight is 0; give one a weight, e.g. rewards.correctness=1.0")
    return funcs, [float(w) for w in flat.values()]
