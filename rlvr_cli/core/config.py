"""Config composition and validation: the one module that talks to Hydra's compose API.

`compose()` turns Hydra overrides (`optimizer=adamw optimizer.lr=1e-5`) into one resolved
`DictConfig` for one run; `validate()` checks the values no config schema can express. Both run
before any model is loaded, and both raise `BadInput` with a one-line message. Sweeps run the
same composition under `@hydra.main` (Hydra launchers exist only there).
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from rlvr_cli.core.checks import check_lr, check_rank, check_tolerance
from rlvr_cli.core.errors import BadInput, one_line

#: The config groups, which are also the sweep axes.
GROUPS = ("model", "data", "optimizer", "adapter", "grpo", "logger")
DTYPES = ("float32", "bfloat16", "float16")
SAVE_FORMATS = ("full", "sparse_delta")
#: Old override names -> their GRPOConfig names (the trainer settings moved out of conf/optimizer/ into grpo).
MOVED_KEYS = {f"optimizer.{k}": f"grpo.{k}" for k in ("weight_decay", "lr_scheduler_type", "warmup_steps",
                                                       "max_grad_norm")}


def config_dir() -> Path:
    """The directory holding `train.yaml` and the group folders.

    `$RLVR_CONFIG_DIR` when set, else `conf/` at the top of the source tree (rlvr is installed
    editable, `pip install -e .`, so the tree is always there).
    """
    env = os.environ.get("RLVR_CONFIG_DIR")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "conf"


def group_options(group: str) -> list[str]:
    """Names of the options of a config group, e.g. `group_options("optimizer")` -> `["adafactor", ...]`."""
    return sorted(p.stem for p in (config_dir() / group).glob("*.yaml"))


def compose(overrides: Sequence[str] = (), config_name: str = "train") -> DictConfig:
    """Compose one run's config from `conf/<config_name>.yaml` and Hydra overrides, resolved.

    Args:
        overrides: Hydra override strings, e.g. `["optimizer=adamw", "optimizer.lr=1e-5"]`.
        config_name: the primary config file, without `.yaml`.

    Returns:
        The composed config with every interpolation resolved.

    Raises:
        BadInput: an unknown group option (the message lists the valid ones), an unknown key, an
            override that does not parse, an interpolation that fails, or a trainer setting under its old
            name (`optimizer.weight_decay`; the message names `grpo.weight_decay`, see `MOVED_KEYS`).
    """
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.errors import ConfigCompositionException, MissingConfigException, OverrideParseException

    overrides = list(overrides)
    for o in overrides:  # trainer settings that left the optimizer files for the grpo group
        key = o.lstrip("+~").split("=", 1)[0]
        if key in MOVED_KEYS:
            raise BadInput(f"{key} is now {MOVED_KEYS[key]} (a trainer setting, not an optimizer argument); "
                           f"write {MOVED_KEYS[key]}=VALUE")
    try:
        with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3", job_name="rlvr"):
            cfg = hydra_compose(config_name=config_name, overrides=overrides)
    except MissingConfigException as e:
        group = (e.missing_cfg_file or "").split("/")[0]
        if group in GROUPS:
            bad = next((o.split("=", 1)[1] for o in overrides if o.lstrip("+~").startswith(f"{group}=")), "?")
            raise BadInput(
                f"unknown {group} '{bad}'; valid options: {', '.join(group_options(group))}"
            ) from None
        raise BadInput(one_line(e)) from None
    except OverrideParseException as e:
        raise BadInput(f"cannot parse override: {one_line(e)}") from None
    except ConfigCompositionException as e:
        msg = one_line(e)
        key = re.search(r"Could not override '([^']+)'", msg)
        if key and "not in struct" in str(e.__cause__ or e):
            raise BadInput(
                f"unknown key '{key.group(1)}'; to add a new key write +{key.group(1)}=VALUE"
            ) from None
        raise BadInput(msg) from None
    try:
        OmegaConf.resolve(cfg)
    except Exception as e:  # omegaconf raises several interpolation errors
        raise BadInput(f"cannot resolve config: {one_line(e)}") from None
    return cfg


def validate(cfg: DictConfig) -> None:
    """Check the values of a composed run config; raise before any model is loaded.

    Checks: optimizer.lr > 0; adapter.r >= 1 for adapters; grpo.num_generations >= 2;
    grpo.per_device_train_batch_size * gradient_accumulation_steps divisible by num_generations
    (TRL's generation batch must hold whole prompt groups, single process); grpo.max_steps >= 1;
    a known model dtype; numeric reward weights; a known W&B mode; sparsity settings (steps >= 0,
    tolerance >= 0, copy limit > 0); a known save_format, and sparse_delta only for full fine-tuning.

    Raises:
        BadInput: naming the first bad value and the fix.
    """
    check_lr(cfg.optimizer.get("lr"))
    if cfg.adapter.name != "full":
        check_rank(cfg.adapter.get("r"))
    g = cfg.grpo
    n = g.get("num_generations")
    if not isinstance(n, int) or n < 2:
        raise BadInput(
            f"grpo.num_generations must be an integer >= 2 (GRPO compares completions within a group), got {n!r}"
        )
    batch = g.get("per_device_train_batch_size", 8) * g.get("gradient_accumulation_steps", 1)
    if batch % n:
        raise BadInput(
            f"per_device_train_batch_size x gradient_accumulation_steps = {batch} is not divisible by "
            f"grpo.num_generations = {n}; use a multiple of {n}, e.g. grpo.per_device_train_batch_size={n}"
        )
    steps = g.get("max_steps")
    if not isinstance(steps, int) or steps < 1:
        raise BadInput(f"grpo.max_steps must be an integer >= 1, got {steps!r}")
    if cfg.model.dtype not in DTYPES:
        raise BadInput(f"model.dtype must be one of {', '.join(DTYPES)}, got {cfg.model.dtype!r}")
    weights = list(cfg.rewards.items())  # names are checked by rewards.build_rewards
    for name, weight in weights:  # a nested key is a dotted import path: +rewards.pkg.module.fn=1.0
        if isinstance(weight, DictConfig):
            weights += [(f"{name}.{k}", v) for k, v in weight.items()]
        elif not isinstance(weight, (int, float)):
            raise BadInput(f"rewards.{name} must be a number (its weight), got {weight!r}")
    if cfg.logger.name == "wandb" and cfg.logger.mode not in ("auto", "online", "offline"):
        raise BadInput(f"logger.mode must be auto, online or offline, got {cfg.logger.mode!r}")
    sp = cfg.get("sparsity")
    if sp is not None:
        every, tol, max_gb = sp.get("every_n_steps"), sp.get("tolerance"), sp.get("max_copy_gb")
        if not isinstance(every, int) or isinstance(every, bool) or every < 0:
            raise BadInput(f"sparsity.every_n_steps must be an integer >= 0 (0: the last step only), got {every!r}; "
                           f"sparsity=null turns it off")
        check_tolerance(tol, "sparsity.tolerance")
        if max_gb is not None and (not isinstance(max_gb, (int, float)) or max_gb <= 0):
            raise BadInput(f"sparsity.max_copy_gb must be a number > 0 or null (no limit), got {max_gb!r}")
    fmt = cfg.get("save_format", "full")
    if fmt not in SAVE_FORMATS:
        raise BadInput(f"save_format must be one of {', '.join(SAVE_FORMATS)}, got {fmt!r}")
    if fmt == "sparse_delta" and cfg.adapter.name != "full":
        raise BadInput(f"save_format=sparse_delta is for full fine-tuning; adapter={cfg.adapter.name} runs already "
                       f"save only the adapter (use save_format=full)")

