"""Shared fixtures: the shared data directory, a quiet W&B, and a 2-step GRPO run on `tiny-random`."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("RLVR_DATA_DIR", str(REPO.parent / "shared" / "data"))
os.environ["WANDB_SILENT"] = "true"
# `make test` runs one pytest-xdist worker per core: each worker's torch (and the processes its tests start) then
# takes one OpenMP thread, else every worker's threads spin-wait on the cores of the others (measured on 2 cores:
# tests/test_train.py took 106 s with 2 threads per worker, 62 s with 1)
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.pop("WANDB_API_KEY", None)  # logger=wandb stays offline in tests: no key, no `wandb login` netrc entry,
os.environ["NETRC"] = os.devnull  # and no WANDB_MODE of the user's
os.environ.pop("WANDB_MODE", None)

#: A GRPO run small enough for a test: tiny-random, 2 optimizer steps, 2 prompts x 2 completions x 8 tokens.
TINY = [
    "model=tiny-random", "logger=none", "grpo.max_steps=2", "grpo.num_generations=2",
    "grpo.per_device_train_batch_size=4", "grpo.max_completion_length=8",
]


def completion_chars(completions, **_):
    """A dense reward for random models, which never answer a math problem: characters / 100."""
    from rlvr_cli.training.rewards import completion_text

    return [len(completion_text(c)) / 100 for c in completions]


def damaged_model(tmp_path: Path, damage: str) -> tuple[Path, Path]:
    """A copy of tiny-random in `tmp_path/model` whose model.safetensors is `truncated` (half its bytes) or
    `garbage` (not safetensors at all); returns (the model directory, the weights file)."""
    import shutil

    from rlvr_cli.models.embedded import tiny_random_dir

    model = tmp_path / "model"
    shutil.copytree(tiny_random_dir(), model)
    weights = model / "model.safetensors"
    if damage == "truncated":
        with open(weights, "r+b") as f:
            f.truncate(weights.stat().st_size // 2)
    else:
        weights.write_bytes(b"not a safetensors file at all" * 100)
    return model, weights


#: Overrides that reward with `completion_chars` alone (a reward named by its dotted import path).
CHARS = ["~rewards.correctness", "~rewards.format", "+rewards.conftest.completion_chars=1.0"]


@pytest.fixture
def chars_reward():
    """Overrides that reward with `completion_chars`, so that GRPO on tiny-random gets non-zero advantages,
    hence gradients."""
    return list(CHARS)


@pytest.fixture
def run_tiny(tmp_path):
    """Run `rlvr train` in-process on tiny-random with extra overrides and callbacks; return its summary."""
    from rlvr_cli.core.compose import compose_run
    from rlvr_cli.training.recipe import train

    def run(*overrides: str, name: str = "run", callbacks=()):
        args = [*TINY, f"output_dir={tmp_path}", f"run_name={name}", *overrides]
        return train(compose_run(args), args, progress=False, callbacks=list(callbacks))

    return run


@pytest.fixture
def own_conf(tmp_path, monkeypatch) -> Path:
    """A user's own config directory, `RLVR_CONFIG_DIR`, searched before rlvr's packaged one: empty group folders
    for the option files a test adds (a new distributed mode, a new adapter with its hooks module), beside rlvr's."""
    from rlvr_cli.core.groups import PACKAGED_CONFIG

    conf = tmp_path / "conf"
    for group in PACKAGED_CONFIG.iterdir():
        if group.is_dir():
            (conf / group.name).mkdir(parents=True)
    monkeypatch.setenv("RLVR_CONFIG_DIR", str(conf))
    return conf
