"""Config composition and validation: the one module that talks to Hydra's compose API.

`compose()` turns Hydra overrides (`optimizer=adamw optimizer.lr=1e-5`) into one resolved
`DictConfig` for one run, typed by the schemas of `rlvr_cli.core.schema` (OmegaConf structured configs: `abc`
for an integer fails here); `validate()` applies the ranges declared beside the schema fields and the checks
that span several groups. Both run before any model is loaded, and both raise `BadInput` with a one-line
message. Sweeps run the same composition under `@hydra.main` (Hydra launchers exist only there).
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from rlvr_cli.core import schema
from rlvr_cli.core.checks import check_path_component, check_rank
from rlvr_cli.core.errors import BadInput, one_line
from rlvr_cli.core.schema import DTYPES, SAVE_FORMATS

__all__ = ["DTYPES", "GROUPS", "MOVED_KEYS", "SAVE_FORMATS", "compose", "config_dir", "group_options", "validate"]

#: The config groups, which are also the sweep axes.
GROUPS = ("model", "data", "optimizer", "adapter", "grpo", "distributed", "generation", "logger")
#: Old override names -> their GRPOConfig names (the trainer settings moved out of conf/optimizer/ into grpo).
MOVED_KEYS = {f"optimizer.{k}": f"grpo.{k}" for k in ("weight_decay", "lr_scheduler_type", "warmup_steps",
                                                       "max_grad_norm")}
#: TRL `GRPOConfig` fields that a setting outside the `grpo` group owns: set under `grpo` they would bypass its checks
#: (`+grpo.use_vllm=true` skipped generation='s and failed in TRL after the model loaded). `vllm_*` fields too.
GROUP_OWNED = {"use_vllm": "generation=vllm_colocate or generation=vllm_server",
               "bf16": "precision=bf16-mixed or precision=bf16-true", "fp16": "precision=fp16-mixed"}
#: Old dtype keys, now the one `precision` key (`rlvr_cli.core.precision`): the message of their refusal.
PRECISION_KEYS = {
    "model.dtype": "model.dtype is now the top-level precision: precision=fp32, precision=bf16-mixed (fp32 weights, "
                   "bf16 compute), precision=bf16-true (bf16 weights) or precision=fp16-mixed",
    "distributed.mixed_precision": "distributed.mixed_precision is now the top-level precision: precision=bf16-mixed, "
                                   "precision=fp16-mixed or precision=fp32",
}


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
        The composed config with every interpolation resolved and every value typed by
        `rlvr_cli.core.schema.conform` (Hydra's Compose API, https://hydra.cc/docs/advanced/compose_api/, then
        OmegaConf structured configs, https://omegaconf.readthedocs.io/en/2.3_branch/structured_config.html).

    Raises:
        BadInput: an unknown group option (the message lists the valid ones), an unknown key, an
            override that does not parse, a config group set to null, an interpolation that fails, a value of
            the wrong type (`seed=abc`: the message names the key, what it must be and an example), or a trainer
            setting under its old name (`optimizer.weight_decay`; the message names `grpo.weight_decay`, see
            `MOVED_KEYS`; `model.dtype` and `distributed.mixed_precision` name `precision`, `PRECISION_KEYS`).
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
        if key in PRECISION_KEYS:
            raise BadInput(PRECISION_KEYS[key])
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
    except ValueError as e:  # Hydra's defaults list refuses e.g. `grpo=null` with a bare ValueError
        group = next((o.split("=", 1)[0] for o in overrides if o.split("=", 1)[0] in GROUPS
                      and o.split("=", 1)[-1] in ("null", "")), None)
        if group:
            raise BadInput(f"{group} is a config group: pick one of its options, {', '.join(group_options(group))}; "
                           f"e.g. {group}={group_options(group)[0]}") from None
        raise BadInput(f"cannot compose the config: {one_line(e)}") from None
    try:
        OmegaConf.resolve(cfg)
    except Exception as e:  # omegaconf raises several interpolation errors
        raise BadInput(f"cannot resolve config: {one_line(e)}") from None
    return schema.conform(cfg) if config_name == "train" else cfg


def validate(cfg: DictConfig) -> None:
    """Check the values of a composed run config; raise before any model is loaded or any run directory exists.

    First the types again (`rlvr_cli.core.schema.conform`, so a config built by hand is checked too), then the
    range of every schema field, declared beside it (`rlvr_cli.core.schema.check`: e.g. `seed >= 0`,
    `optimizer.lr` finite and > 0, `grpo.num_generations >= 2`, `grpo.max_steps >= 1`, `precision` one of
    `rlvr_cli.core.precision.PRECISIONS`, `eval.k >= 1`, `logger.mode`, the `sparsity` block, `save_format`), then
    what spans several keys: an adapter file declares `adapter.r` (null for a method without a rank: IA3, LN
    tuning; which methods have one is checked against the PEFT class by `rlvr_cli.models.adapters.peft_config`);
    `grpo.per_device_train_batch_size * gradient_accumulation_steps` must be divisible by `num_generations`
    (TRL's generation batch holds whole prompt groups, single process);
    `save_format=sparse_delta` only for full fine-tuning; `run_name` one directory name inside `output_dir`; no
    `grpo` field that another setting owns (`GROUP_OWNED`: `use_vllm`, `vllm_*`, `bf16`, `fp16`).

    Args:
        cfg: a composed run config (`compose`).

    Raises:
        BadInput: naming the first bad value and the fix, in one line.
    """
    cfg = schema.conform(cfg)
    schema.check(cfg)
    if cfg.get("run_name") is not None:
        check_path_component(cfg.run_name)
    for key in cfg.grpo:
        owner = GROUP_OWNED.get(key) or ("generation=vllm_* and its generation.vllm_* fields"
                                         if key.startswith("vllm_") else None)
        if owner:
            raise BadInput(f"grpo.{key} is set through {owner}, whose checks a grpo field would skip; drop "
                           f"grpo.{key}")
    if cfg.adapter.name != "full" and "r" not in cfg.adapter:  # removed (`~adapter.r`); a rankless method has null
        check_rank(None)
    g = cfg.grpo
    n = g.num_generations
    batch = g.get("per_device_train_batch_size", 8) * g.get("gradient_accumulation_steps", 1)
    if batch % n:
        raise BadInput(
            f"per_device_train_batch_size x gradient_accumulation_steps = {batch} is not divisible by "
            f"grpo.num_generations = {n}; use a multiple of {n}, e.g. grpo.per_device_train_batch_size={n}"
        )
    if cfg.get("save_format", "full") == "sparse_delta" and cfg.adapter.name != "full":
        raise BadInput(f"save_format=sparse_delta is for full fine-tuning; adapter={cfg.adapter.name} runs already "
                       f"save only the adapter (use save_format=full)")
