"""PEFT adapter configs from the `adapter` config group (`full` means no adapter).

Each `conf/adapter/<name>.yaml` is a Hydra instantiation target (https://hydra.cc/docs/advanced/instantiate_objects/
overview/): `_target_: peft.LoraConfig` (or `peft.VeraConfig`, ...) with PEFT's field names (`r`, `lora_alpha`,
`lora_dropout`, `use_dora`, `use_rslora`, `vera_dropout`, `target_modules`, `task_type`; see PEFT's LoraConfig and
VeraConfig reference). The stable override names `adapter.alpha` and `adapter.dropout` are keys of their own that
the PEFT fields interpolate (`lora_alpha: ${.alpha}`); they and `name` are stripped before instantiation
(`META_KEYS`). A file without `_target_` (`full.yaml`) builds no adapter. Adding an adapter is one such file.
"""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig, OmegaConf

from rlvr_cli.core.errors import BadInput, root_cause

#: Keys of an adapter config that are rlvr's names, not fields of the PEFT config class.
META_KEYS = ("name", "alpha", "dropout")


def peft_config(cfg: DictConfig) -> Any:
    """The `peft.PeftConfig` for `GRPOTrainer(peft_config=...)`, or None for full fine-tuning (no `_target_`).

    E.g. `lora`: `LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, target_modules="all-linear",
    task_type="CAUSAL_LM")` (arXiv 2106.09685); `dora` adds `use_dora=True` (arXiv 2402.09353), `rslora`
    `use_rslora=True` (arXiv 2312.03732); `vera` is a `VeraConfig` (arXiv 2310.11454).

    Args:
        cfg: a composed, resolved `adapter` group node (`compose([...]).adapter`).

    Raises:
        BadInput: the target cannot be imported or rejects a field (one line, naming the adapter).
    """
    if cfg.get("_target_") is None:
        return None
    from hydra.utils import instantiate

    fields = {k: v for k, v in OmegaConf.to_container(cfg, resolve=True).items() if k not in META_KEYS}
    try:
        return instantiate(fields, _convert_="all")
    except Exception as e:
        raise BadInput(f"adapter={cfg.get('name', '?')}: cannot build {cfg._target_}: {root_cause(e)}") from None
