"""PEFT adapter configs from the `adapter` config group (`full` means no adapter).

Config keys map onto PEFT field names: `r` -> r, `alpha` -> lora_alpha, `dropout` -> lora_dropout
(vera_dropout for VeRA), `target_modules` -> target_modules.
"""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig, OmegaConf

from rlvr_cli.core.errors import BadInput

ADAPTERS = ("full", "lora", "dora", "rslora", "vera")


def peft_config(cfg: DictConfig) -> Any:
    """The `peft.PeftConfig` for `GRPOTrainer(peft_config=...)`, or None for full fine-tuning.

    - lora: `LoraConfig(r, lora_alpha=alpha, lora_dropout=dropout)`, arXiv 2106.09685
    - dora: the same with `use_dora=True`, arXiv 2402.09353
    - rslora: the same with `use_rslora=True` (scale alpha/sqrt(r)), arXiv 2312.03732
    - vera: `VeraConfig(r, vera_dropout=dropout)`, arXiv 2310.11454

    Raises:
        BadInput: an unknown adapter name.
    """
    from peft import LoraConfig, TaskType, VeraConfig

    name = cfg.name
    if name == "full":
        return None
    targets = OmegaConf.to_container(cfg.target_modules) if OmegaConf.is_config(cfg.target_modules) \
        else cfg.target_modules
    common = dict(r=cfg.r, target_modules=targets, task_type=TaskType.CAUSAL_LM)
    if name in ("lora", "dora", "rslora"):
        return LoraConfig(lora_alpha=cfg.alpha, lora_dropout=cfg.dropout, use_dora=name == "dora",
                          use_rslora=name == "rslora", **common)
    if name == "vera":
        return VeraConfig(vera_dropout=cfg.dropout, **common)
    raise BadInput(f"unknown adapter '{name}'; valid adapters: {', '.join(ADAPTERS)}")


