"""The config directory and its groups: which options a group has is which files its folder holds
(`conf/<group>/<option>.yaml`), so that adding an optimizer, an adapter, a distributed mode or a generation backend is
adding one file."""

from __future__ import annotations

import functools
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any


def config_dir() -> Path:
    """The directory holding `train.yaml` and the group folders.

    `$RLVR_CONFIG_DIR` when set, else `conf/` at the top of the source tree (rlvr is installed
    editable, `pip install -e .`, so the tree is always there).
    """
    env = os.environ.get("RLVR_CONFIG_DIR")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "conf"


def group_options(group: str) -> list[str]:
    """Names of the options of a config group, its files' stems, sorted: e.g. `group_options("optimizer")` ->
    `["adafactor", ...]`, `group_options("distributed")` -> `["ddp", "fsdp", "none", "zero2", "zero3"]`."""
    return sorted(p.stem for p in (config_dir() / group).glob("*.yaml"))


class GroupOptions(Sequence[str]):
    """The option names of a config group as a sequence read from its folder whenever it is asked
    (`group_options`), so that a schema's allowed values (`rule(choices=GroupOptions("distributed"))`) follow the
    files: a new file is a new choice, with no list to update."""

    def __init__(self, group: str):
        self.group = group

    def __getitem__(self, index: Any) -> Any:
        return tuple(group_options(self.group))[index]

    def __len__(self) -> int:
        return len(group_options(self.group))

    def __iter__(self) -> Iterator[str]:
        return iter(group_options(self.group))

    def __contains__(self, value: object) -> bool:
        return value in group_options(self.group)

    def __repr__(self) -> str:
        return f"GroupOptions({self.group!r})"


@functools.cache
def default_node(key: str) -> dict[str, Any]:
    """A top-level node of `train.yaml` as written there, interpolations resolved (`${oc.env:...}`): the one source
    of the defaults that another command shares with `rlvr train`, e.g. `default_node("eval")`, the evaluation
    protocol that `rlvr eval` also samples by, and `default_node("sparsity")`, whose tolerance `rlvr sparsity` uses.

    Raises:
        KeyError: train.yaml has no such node.
    """
    from omegaconf import OmegaConf

    node = OmegaConf.load(config_dir() / "train.yaml")[key]
    return OmegaConf.to_container(node, resolve=True)
