"""The config directory and its groups: which options a group has is which files its folder holds
(`conf/<group>/<option>.yaml`), so that adding an optimizer, an adapter, a distributed mode or a generation backend is
adding one file."""

from __future__ import annotations

import functools
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

#: The option files rlvr ships: `rlvr_cli/conf/` inside the installed package (a wheel carries them as package data,
#: `[tool.setuptools.package-data]`); in a source checkout `rlvr_cli/conf` is a link to the top-level `conf/`.
PACKAGED_CONFIG = Path(__file__).resolve().parents[1] / "conf"


def user_config_dir() -> Path | None:
    """`$RLVR_CONFIG_DIR`, a user's own option files (absolute), or None when it is not set."""
    env = os.environ.get("RLVR_CONFIG_DIR")
    return Path(env).absolute() if env else None


def config_dirs() -> list[Path]:
    """The directories option files are searched in, in order, the first match winning: `$RLVR_CONFIG_DIR` when set
    (a user's own files, beside rlvr's and before them: a file of the same name replaces rlvr's), then the packaged
    `PACKAGED_CONFIG`; Hydra's config search path (https://hydra.cc/docs/advanced/search_path/), as
    `rlvr_cli.core.compose.hydra_session` sets it up."""
    user = user_config_dir()
    return [user, PACKAGED_CONFIG] if user else [PACKAGED_CONFIG]


def config_dir() -> Path:
    """The packaged config directory (`PACKAGED_CONFIG`): Hydra's primary config directory, which holds
    `train.yaml` and every group rlvr ships."""
    return PACKAGED_CONFIG


def check_config_dirs() -> None:
    """Refuse a `$RLVR_CONFIG_DIR` that is not a directory, before Hydra is asked.

    Raises:
        BadInput: naming the value and the fix.
    """
    from rlvr_cli.core.errors import BadInput

    user = user_config_dir()
    if user is not None and not user.is_dir():
        raise BadInput(f"RLVR_CONFIG_DIR={user} is not a directory; point it at a folder of your own option files "
                       "(e.g. my_conf/optimizer/NAME.yaml), or unset it")


def searchpath_overrides() -> list[str]:
    """For a Hydra application started in a subprocess (a sweep's jobs): the override that adds `$RLVR_CONFIG_DIR`
    to its config search path (`hydra.searchpath`, searched after the packaged files: a user's launcher file of a
    new name is found there); `[]` without it."""
    user = user_config_dir()
    return [] if user is None else [f"hydra.searchpath=['file://{user.as_posix()}']"]


def config_file(relative: str | Path) -> Path:
    """The file `relative` (e.g. `optimizer/sgd.yaml`) in the first of `config_dirs()` that holds it; the packaged
    path when none does (so that an error names where rlvr looked last)."""
    for directory in config_dirs():
        if (directory / relative).is_file():
            return directory / relative
    return PACKAGED_CONFIG / relative


def group_options(group: str) -> list[str]:
    """Names of the options of a config group, its files' stems in every one of `config_dirs()`, sorted: e.g.
    `group_options("optimizer")` -> `["adafactor", ...]`, `group_options("distributed")` -> `["ddp", "fsdp", "none",
    "zero2", "zero3"]`."""
    return sorted({p.stem for d in config_dirs() for p in (d / group).glob("*.yaml")})


class GroupOptions(Sequence[str]):
    """The option names of a config group as a sequence read from its folder whenever it is asked
    (`group_options`), so that a field's allowed values (`setting(choices=GroupOptions("distributed"))`) follow the
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

    node = OmegaConf.load(config_file("train.yaml"))[key]
    return OmegaConf.to_container(node, resolve=True)
