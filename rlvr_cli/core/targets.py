"""Which Hydra `_target_`s a config may name, and where.

A `_target_` is a dotted import path that `hydra.utils.instantiate` imports and calls with the node's other keys as
arguments, and by default it first builds every nested node that has one
(https://hydra.cc/docs/advanced/instantiate_objects/overview/). So a config value can build any object:
`rlvr train adapter=lora '+adapter.x={_target_: builtins.open, file: /tmp/x, mode: w}'` truncated /tmp/x before PEFT
refused `x`. Hydra's own guard only blocks a few names (`os.system` among them, not `builtins.open`).

rlvr builds objects on purpose in few places, each non-recursively: the `optimizer` and `adapter` nodes of a run
config (`rlvr_cli.optimizers.build.build_optimizer`, `rlvr_cli.models.adapters.peft_config`), the shipped
`conf/reward/` and `conf/benchmark/` files, and Hydra's own launcher and callbacks in a sweep's `hydra.*` settings.
`check_run_config` allows a `_target_` at `optimizer._target_` and `adapter._target_` only, naming a module under
`ALLOWED`; `check_hydra_overrides` allows `hydra.*` ones under `HYDRA_ALLOWED`. Both refuse anything else in one
line before anything is built. Users' own optimizers or adapters: add their module prefixes to the environment
variable `RLVR_ALLOWED_TARGETS` (comma-separated), which a shared sweep file cannot set.

Reward functions named by a dotted import path (`rewards: [mylab.rewards.f]`) are imported on purpose, as TRL's
`reward_funcs` are (https://huggingface.co/docs/trl/main/en/grpo_trainer); they are looked up, not called with
config values.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from rlvr_cli.core.errors import BadInput

#: Module prefixes a run config's `_target_` may name: what the shipped optimizer and adapter files use.
ALLOWED = ("torch.optim", "peft", "lion_pytorch", "bitsandbytes", "transformers.optimization", "rlvr_cli")
#: Module prefixes a `hydra.*` setting's `_target_` may name: Hydra's own launchers and sweepers, the submitit
#: launcher plugin, rlvr's callbacks.
HYDRA_ALLOWED = ("hydra._internal.core_plugins", "hydra_plugins.hydra_submitit_launcher", "rlvr_cli.sweeps")
#: The run config nodes that rlvr instantiates, each the only place a `_target_` may sit.
BUILT_NODES = ("optimizer", "adapter")
#: Environment variable of extra allowed module prefixes, comma-separated (users' own optimizer or adapter code).
ENV = "RLVR_ALLOWED_TARGETS"


def allowed(prefixes: Sequence[str] = ALLOWED) -> tuple[str, ...]:
    """`prefixes` plus those of `$RLVR_ALLOWED_TARGETS` (comma-separated module prefixes, e.g. `mylab.optim`)."""
    extra = [p.strip() for p in os.environ.get(ENV, "").split(",") if p.strip()]
    return (*prefixes, *extra)


def under(target: str, prefixes: Sequence[str]) -> bool:
    """Whether the dotted path `target` is one of `prefixes` or inside one, on module boundaries (`peft` allows
    `peft.LoraConfig`, not `peftx.Y`)."""
    return any(target == p or target.startswith(p + ".") for p in prefixes)


def targets(node: Any, where: str = "") -> Iterator[tuple[str, Any]]:
    """Every `_target_` in a config tree (a DictConfig, ListConfig, dict or list, nested to any depth): yields
    (its dotted location, e.g. `adapter.x._target_`, its value)."""
    from omegaconf import DictConfig, ListConfig, OmegaConf

    if isinstance(node, (DictConfig, ListConfig)):
        node = OmegaConf.to_container(node, resolve=False)
    if isinstance(node, Mapping):
        for key, value in node.items():
            at = f"{where}.{key}" if where else str(key)
            if key == "_target_":
                yield at, value
            else:
                yield from targets(value, at)
    elif isinstance(node, (list, tuple)):
        for i, value in enumerate(node):
            yield from targets(value, f"{where}[{i}]")


def _refuse(at: str, value: Any, why: str) -> BadInput:
    return BadInput(f"{at}={value!r}: {why}; rlvr builds only the optimizer and adapter it is told to (set "
                    f"optimizer=NAME or adapter=NAME, or add your module to ${ENV})")


def check_run_config(cfg: Any) -> None:
    """Refuse a run config (composed, or a sweep cell's) that names a `_target_` rlvr would not build on purpose.

    Args:
        cfg: a run config tree (DictConfig or nested dicts and lists).

    Raises:
        BadInput: a `_target_` anywhere but `optimizer._target_` or `adapter._target_`, or one there that is not a
            string under `allowed()`. One line naming the location, the value and the fix.
    """
    prefixes = allowed()
    for at, value in targets(cfg):
        if at not in {f"{n}._target_" for n in BUILT_NODES}:
            raise _refuse(at, value, f"a _target_ is read only at {' and '.join(n + '._target_' for n in BUILT_NODES)}")
        if not isinstance(value, str) or not under(value, prefixes):
            raise _refuse(at, value, f"not under the allowed modules {', '.join(prefixes)}")


def check_option_file(cfg: Any, prefixes: Sequence[str] = ALLOWED) -> None:
    """Refuse an option file that rlvr instantiates whole (`conf/reward/*.yaml`, `conf/benchmark/*.yaml`) whose
    `_target_` is nested or not under `prefixes` (plus `$RLVR_ALLOWED_TARGETS`).

    Raises:
        BadInput: naming the location and the value (the caller names the file). One line.
    """
    prefixes = allowed(prefixes)
    for at, value in targets(cfg):
        if at != "_target_" or not isinstance(value, str) or not under(value, prefixes):
            raise BadInput(f"{at}={value!r}: an option file has one top-level _target_ under "
                           f"{', '.join(prefixes)}; add your module to ${ENV}")


def build_option_file(group: str, name: str, prefixes: Sequence[str]) -> Any:
    """Load `conf/<group>/<name>.yaml` (`rlvr_cli.core.groups.config_file`) and build it whole: its one top-level
    `_target_` checked against `prefixes` (`check_option_file`), then `hydra.utils.instantiate`, non-recursively.
    The one place an option file that rlvr builds whole (rewards, benchmarks) is built.

    Raises:
        BadInput: a `_target_` `check_option_file` refuses. Anything else the file or its target raises (a YAML
            error, a bad argument) propagates, for the caller to name the option.
    """
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    from rlvr_cli.core.groups import config_file

    cfg = OmegaConf.load(config_file(f"{group}/{name}.yaml"))
    check_option_file(cfg, prefixes)
    return instantiate(cfg, _recursive_=False)


def check_hydra_overrides(overrides: Sequence[str]) -> None:
    """Refuse `hydra.*` overrides (a sweep's launcher settings; `+hydra.*` too) whose `_target_` is not under
    `HYDRA_ALLOWED`: Hydra instantiates launchers and callbacks itself.

    Args:
        overrides: Hydra override strings, e.g. `["hydra.launcher.partition=gpu"]`; those of other keys are skipped.

    Raises:
        BadInput: such a `_target_` (set as `hydra.X._target_=V` or inside a value `hydra.X={_target_: V}`), or an
            override Hydra cannot parse. One line.
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import OverrideParseException

    prefixes = allowed(HYDRA_ALLOWED)
    parser = OverridesParser.create()
    for line in overrides:
        if not line.lstrip("+~").startswith("hydra."):
            continue
        try:
            (o,) = parser.parse_overrides([line])
        except OverrideParseException as e:
            raise BadInput(f"cannot parse override {line!r}: {e}") from None
        key = o.key_or_group
        value = o.value()
        found = [(key, value)] if key.split(".")[-1] == "_target_" else list(targets(value, key))
        for at, target in found:
            if not isinstance(target, str) or not under(target, prefixes):
                raise BadInput(f"{at}={target!r}: not under the modules a launcher or callback may come from "
                               f"({', '.join(prefixes)}); add your module to ${ENV}")
