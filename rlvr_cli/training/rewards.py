"""Reward functions for TRL's `GRPOTrainer`, chosen by name in the config (`rewards: {name: weight}`).

Each follows TRL's reward-function contract: called with the batch's `prompts`, `completions`
and every dataset column as keyword lists (here `answer`), returns one float per completion.
Completions come in TRL's conversational form (`[{"role": "assistant", "content": ...}]`) or as text.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from rlvr_cli.core.errors import BadInput
from rlvr_cli.evaluation.grading import grade, last_boxed


def completion_text(completion: Any) -> str:
    """The text of one TRL completion: a string, or the content of its last message."""
    return completion if isinstance(completion, str) else completion[-1]["content"]


def correctness_reward(completions: list, answer: list[str], **_: Any) -> list[float]:
    """1.0 when math-verify finds the completion's answer equivalent to the gold `answer`, else 0.0
    (rlvr_cli.grading.grade, the same grader as `rlvr eval`)."""
    return [float(grade(gold, completion_text(c)).correct) for c, gold in zip(completions, answer, strict=True)]


def format_reward(completions: list, **_: Any) -> list[float]:
    """1.0 when the completion puts an answer in a closed `\\boxed{...}`, else 0.0."""
    return [float(bool(last_boxed(completion_text(c)))) for c in completions]


#: Reward name in the config -> function (TRL logs each as `rewards/<function name>/mean`).
REWARDS: dict[str, Callable[..., list[float]]] = {"correctness": correctness_reward, "format": format_reward}


def build_rewards(weights: Mapping[str, float]) -> tuple[list[Callable[..., list[float]]], list[float]]:
    """Reward functions and their weights for `GRPOTrainer(reward_funcs=...)` and `GRPOConfig(reward_weights=...)`.

    A weight of 0 keeps the function (TRL still logs it as `rewards/<name>/mean`) without
    counting it in the reward.

    Raises:
        BadInput: an unknown reward name, or all weights zero.
    """
    unknown = [n for n in weights if n not in REWARDS]
    if unknown:
        raise BadInput(f"unknown reward '{unknown[0]}'; valid rewards: {', '.join(REWARDS)}")
    if not any(weights.values()):
        raise BadInput("every reward weight is 0; give one a weight, e.g. rewards.correctness=1.0")
    return [REWARDS[n] for n in weights], [float(w) for w in weights.values()]
