"""PEFT adapter configs from the `adapter` config group (`full` means no adapter), and the little that PEFT leaves
to the caller: an initialisation PEFT lacks (MiLoRA) and the conversion of residual-base adapters when saved.

Each `conf/adapter/<name>.yaml` is a Hydra instantiation target (https://hydra.cc/docs/advanced/instantiate_objects/
overview/): `_target_: peft.LoraConfig` (or `peft.VeraConfig`, `peft.MissConfig`, `peft.IA3Config`,
`peft.LNTuningConfig`, ...) with PEFT's field names (`r`, `lora_alpha`, `lora_dropout`, `init_lora_weights`,
`target_modules`, ...; see PEFT's config reference, https://huggingface.co/docs/peft/package_reference/config).
The stable override names are rlvr's own keys, typed fields of `rlvr_cli.core.run_config.Adapter` and not handed
to PEFT:
- `adapter.r`: PEFT's `r` itself where the method has a rank; `r: null` where it has none (IA3, LN tuning, full);
- `adapter.alpha`: the scale, which the PEFT field interpolates (`lora_alpha: ${.alpha}`); null where there is none
  (VeRA, MiSS, IA3, LN tuning);
- `adapter.dropout`: interpolated by the method's `*_dropout` field; absent where there is none;
- `post_init`: the dotted path of a function `f(peft_model)` that `initialize` applies once PEFT has built the
  model (MiLoRA: `rlvr_cli.models.milora.init`).
A value given for a knob the method does not have is refused (`peft_config`), so that `adapter.r=8` cannot
silently do nothing. A file without `_target_` (`full.yaml`) builds no adapter. Adding an adapter is one such file.

Residual-base adapters (PiSSA, MiLoRA, and any `init_lora_weights` in `RESIDUAL_INITS` or with a `post_init`) move
their initial product B0 A0 out of the frozen weights: the model trains as `(W - s B0 A0) + s B A`. Merged into the
original W at evaluation, the plain adapter would give `W + s B A`. So `initialize` saves the initial adapter and
`save_converted` saves the final one converted, with PEFT's `PeftModel.save_pretrained(...,
path_initial_model_for_weight_conversion=...)` (https://huggingface.co/docs/peft/package_reference/peft_model; PEFT's
`LoraModel.subtract_mutated_init`): a LoRA of rank 2r with `Delta W = s (B A - B0 A0)` that applies to the original
base.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from rlvr_cli.core import modes
from rlvr_cli.core.checks import check_rank
from rlvr_cli.core.errors import BadInput, root_cause
from rlvr_cli.core.nodes import to_node
from rlvr_cli.core.run_config import Adapter, RunConfig

#: PEFT `init_lora_weights` values (prefixes) that subtract the initial B0 A0 from the base weights (PEFT's own list
#: for `path_initial_model_for_weight_conversion`: PiSSA, CorDA, OLoRA, LoRA-GA).
RESIDUAL_INITS = ("pissa", "corda", "olora", "lora_ga")
#: Where `initialize` keeps the initial adapter of a residual-base run, inside the run directory.
INITIAL_DIR = "initial_adapter"
#: rlvr knob -> (what it is, in words).
KNOBS = {"r": "rank", "alpha": "scale", "dropout": "dropout"}


def _target_fields(target: str) -> set[str]:
    """The field names of the PEFT config class `target` (a dotted path)."""
    from hydra.utils import get_class

    return {f.name for f in dataclasses.fields(get_class(target))}


def knobs(cfg: Adapter) -> set[str]:
    """Which of rlvr's knobs (`r`, `alpha`, `dropout`) the adapter's method has, from its PEFT config class: a rank
    where the class has an `r` field, a scale where it has `lora_alpha` (or `alpha`), a dropout where it has a
    `*_dropout` field. `full` (no `_target_`) has none.

    Raises:
        BadInput: the `_target_` class cannot be imported.
    """
    if cfg.target is None:
        return set()
    try:
        fields = _target_fields(cfg.target)
    except Exception as e:
        raise BadInput(f"adapter={cfg.name}: cannot import {cfg.target}: {root_cause(e)}") from None
    has = {"r": "r" in fields, "alpha": bool({"lora_alpha", "alpha"} & fields),
           "dropout": any(f.endswith("dropout") for f in fields)}
    return {k for k, v in has.items() if v}


def check_knobs(cfg: Adapter) -> None:
    """Refuse a rank, scale or dropout given to a method without one (`adapter=ia3 adapter.r=8`), and a missing rank
    where the method has one (`adapter.r` >= 1: LoRA, arXiv 2106.09685).

    Raises:
        BadInput: one line naming the adapter, the knob and the fix.
    """
    name, has = cfg.name, knobs(cfg)
    for key, what in KNOBS.items():
        if key not in has and getattr(cfg, key) is not None:
            why = f"{cfg.target} takes none" if cfg.target else "every weight trains"
            memory = " (rlvr memory: --r)" if key == "r" else ""
            raise BadInput(f"adapter={name} has no {what}: {why}, got adapter.{key}={getattr(cfg, key)!r}; "
                           f"drop adapter.{key}{memory}, or pick a method with one, e.g. adapter=lora")
    if "r" in has:
        check_rank(cfg.r, "adapter.r")


def peft_config(cfg: Adapter) -> Any:
    """The `peft.PeftConfig` for `GRPOTrainer(peft_config=...)`, or None for full fine-tuning (no `_target_`).

    E.g. `lora`: `LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, target_modules="all-linear",
    task_type="CAUSAL_LM")` (arXiv 2106.09685); `dora` adds `use_dora=True` (arXiv 2402.09353), `rslora`
    `use_rslora=True` (arXiv 2312.03732), `pissa` `init_lora_weights="pissa"` (arXiv 2404.02948); `vera` is a
    `VeraConfig` (arXiv 2310.11454), `miss` a `MissConfig` (arXiv 2409.15371), `ia3` an `IA3Config` (arXiv
    2205.05638), `ln_tuning` an `LNTuningConfig` (arXiv 2312.11420). The PEFT class gets `r` (unless null) and
    `Adapter.peft`; rlvr's own fields (`alpha`, `dropout`, ...: the files interpolate them into PEFT's names) not.

    Args:
        cfg: the run's `adapter` (`compose_run([...]).adapter`).

    Raises:
        BadInput: a knob the method does not have, or a missing rank (`check_knobs`); the target cannot be
            imported or rejects a field (one line, naming the adapter).
    """
    check_knobs(cfg)
    if cfg.target is None:
        return None
    from hydra.utils import instantiate

    fields = {"_target_": cfg.target, **({} if cfg.r is None else {"r": cfg.r}), **to_node(cfg.peft)}
    try:
        return instantiate(fields, _convert_="all", _recursive_=False)  # nothing nested is built (core/targets.py)
    except Exception as e:
        raise BadInput(f"adapter={cfg.name}: cannot build {cfg.target}: {root_cause(e)}") from None


def residual_base(cfg: Adapter) -> bool:
    """Whether the adapter moves its initial product out of the frozen weights (PiSSA, MiLoRA, ...: an
    `init_lora_weights` in `RESIDUAL_INITS`, or a `post_init`), so that it must be saved converted
    (`save_converted`)."""
    return cfg.post_init is not None or cfg.init_lora_weights.startswith(RESIDUAL_INITS)


def check_run(cfg: RunConfig) -> None:
    """Checks of a whole run config that concern its adapter, before any model loads.

    A residual-base adapter (`residual_base`) needs whole weights on the main process to be initialised and
    converted when saved (not `distributed=zero3|fsdp`), and no KL term (`grpo.beta` = 0): TRL's reference model
    for a PEFT run is the model with its adapter disabled, which here is the residual base W - s B0 A0, not the
    initial model. A `post_init` must be importable, and is not combined with DoRA (its magnitude vector is
    computed from the weights before the re-initialisation).

    Raises:
        BadInput: one line naming the adapter and the fix.
    """
    a = cfg.adapter
    if not residual_base(a):
        return
    if modes.shards_weights(cfg.distributed):
        raise BadInput(f"adapter={a.name} trains against a residual base and is saved converted, which needs whole "
                       f"weights on the main process; distributed={cfg.distributed.name} shards them: use "
                       f"distributed=ddp or zero2")
    beta = cfg.grpo.beta or 0.0
    if beta != 0:
        raise BadInput(f"adapter={a.name} with grpo.beta={beta}: TRL's KL reference for an adapter run is the model "
                       f"with the adapter disabled, here the residual base (W minus the initial B A), not the initial "
                       f"model; use grpo.beta=0")
    if a.post_init is not None:
        _post_init(a)
        if a.use_dora:
            raise BadInput(f"adapter={a.name}: post_init {a.post_init} re-initialises the adapter after PEFT built "
                           f"it, which DoRA's magnitude vector does not follow; set adapter.use_dora=false")


def _post_init(cfg: Adapter) -> Any:
    from hydra.utils import get_method

    try:
        return get_method(cfg.post_init)
    except Exception as e:
        raise BadInput(f"adapter={cfg.name}: cannot import post_init {cfg.post_init}: "
                       f"{root_cause(e)}") from None


def initialize(model: Any, cfg: Adapter, initial_dir: Path, save: bool = True) -> Path | None:
    """Finish building the adapter once PEFT has built the model (before the optimizer exists and before any step):
    apply the `post_init` function, if any, then, for a residual-base adapter, save the initial adapter to
    `initial_dir` (PEFT `save_pretrained`), which `save_converted` needs at the end.

    Call it on every process of a launch (each initialises its own replica the same way; exact SVDs are
    deterministic), with `save` True on the main process only.

    Args:
        model: the `peft.PeftModel` (`GRPOTrainer(peft_config=...).model`); anything else (full fine-tuning) is
            left alone.
        cfg: the run's `adapter`.
        initial_dir: where to keep the initial adapter, e.g. `<run>/initial_adapter`.
        save: write `initial_dir` (the main process).

    Returns:
        `initial_dir` for a residual-base adapter, else None.
    """
    if cfg.target is None:
        return None
    if cfg.post_init is not None:
        _post_init(cfg)(model)
    if not residual_base(cfg):
        return None
    if save:
        model.save_pretrained(str(initial_dir))
    return Path(initial_dir)


def save_converted(model: Any, out_dir: Path, cfg: Adapter, initial_dir: Path | None) -> bool:
    """Save a residual-base adapter (`residual_base`) so that it applies to the ORIGINAL base: PEFT's
    `save_pretrained(out_dir, path_initial_model_for_weight_conversion=initial_dir)` (PEFT
    `LoraModel.subtract_mutated_init`): A' = [A; A0] (2r x in), B' = [B, -B0] (out x 2r), r and lora_alpha doubled
    so that the scale s is unchanged, hence `s B' A' = s (B A - B0 A0)`, the change from the original weights. It
    overwrites the plain adapter that `Trainer.save_model` wrote to `out_dir` (config and weights); the tokenizer
    and the rest stay. Main process only; the weights must be whole (`check_run`).

    Args:
        model: the trained `peft.PeftModel`.
        out_dir: the run's final weights directory (`<run>/final`).
        cfg: the run's `adapter`.
        initial_dir: what `initialize` returned.

    Returns:
        True when it converted, False for any other adapter (nothing written).
    """
    if initial_dir is None or not residual_base(cfg):
        return False
    model.save_pretrained(str(out_dir), path_initial_model_for_weight_conversion=str(initial_dir))
    return True


def shapes_only(config: Any) -> Any:
    """A copy of a PEFT config whose initialisation does not read the weights (PiSSA's SVD, OLoRA's QR, ...: PEFT
    `init_lora_weights` set to True), for building the adapter on the meta device: same parameter shapes, no data.
    Other configs are returned as they are."""
    import copy

    if str(getattr(config, "init_lora_weights", "")).lower().startswith(RESIDUAL_INITS):
        config = copy.deepcopy(config)
        config.init_lora_weights = True
    return config


def build_on_meta(model: Any, config: Any) -> Any:
    """`peft.get_peft_model` over a model on the meta device, for shapes and counts (`rlvr memory`): the config's
    data-dependent init turned off (`shapes_only`), and PEFT's non-weight parameters (a tuner layer's
    `other_param_names`, e.g. AdaLoRA's constant `ranknum`) frozen, as they are on a real device: moved to the meta
    device, PEFT re-registers them as new, trainable parameters.

    Args:
        model: a transformers model built on the meta device (`rlvr_cli.models.parameters.meta_model`).
        config: a `peft.PeftConfig` (`peft_config`).

    Returns:
        The `peft.PeftModel`, on the meta device.
    """
    import torch
    from peft import get_peft_model
    from peft.tuners.tuners_utils import BaseTunerLayer

    model = get_peft_model(model, shapes_only(config))
    for module in model.modules():
        if isinstance(module, BaseTunerLayer):
            for attr in module.other_param_names:
                value = getattr(module, attr, None)
                for p in value.parameters() if isinstance(value, torch.nn.Module) else ():
                    p.requires_grad_(False)
    return model


def adapter_meta_model(model_name_or_path: str, adapter_cfg: Adapter, base: Any = None) -> Any:
    """The model on the meta device (`rlvr_cli.models.parameters.meta_model`: its config only, no weights) with the
    adapter `adapter_cfg` applied (`build_on_meta`: PiSSA's SVD off, AdaLoRA's ranknum frozen as on
    a real device) and, for LoRA-FA, its A matrices frozen (as `peft.optimizers.create_lorafa_optimizer` does);
    the bare model for full fine-tuning. `rlvr memory` counts on it, and `check_on_meta` checks a run's adapter.
    `base`: `meta_model(model_name_or_path)` when the caller already built it (it is modified in place), else None.

    Raises:
        BadInput: a knob the adapter refuses (checked before any model is built), an unreadable model config, or
            an adapter PEFT cannot build on this model (`adapter.target_modules` naming none of its modules).
    """
    import warnings

    from rlvr_cli.models.parameters import meta_model

    config = peft_config(adapter_cfg)
    model = base if base is not None else meta_model(model_name_or_path)
    if config is None:
        return model
    try:
        with warnings.catch_warnings():  # transformers' deprecation notices, raised inside PEFT
            warnings.simplefilter("ignore", FutureWarning)
            model = build_on_meta(model, config)
    except ValueError as e:  # PEFT: no target module matched (NoMatchingPeftModuleError), a bad layer pattern
        raise BadInput(f"adapter={adapter_cfg.name} cannot be built on {model_name_or_path}: {root_cause(e)}; "
                       f"set adapter.target_modules to modules of the model (e.g. [q_proj,v_proj])") from None
    if adapter_cfg.optimizer_factory == "lorafa":
        for name, p in model.named_parameters():
            if "lora_A" in name:
                p.requires_grad_(False)
    return model


def check_on_meta(cfg: RunConfig) -> None:
    """Check a run's adapter on its model built on the meta device (`adapter_meta_model`), before any weight loads:
    PEFT can build it (its targets exist), and a residual-base adapter (PiSSA, MiLoRA: the r principal or minor
    singular components of each targeted weight) asks for no more components than a targeted weight has, r <=
    min(out, in); PiSSA's SVD would otherwise fail only when the trained adapter is saved (arXiv 2404.02948).
    Nothing for full fine-tuning.

    Raises:
        BadInput: as `adapter_meta_model`; `adapter.r` above the smaller side of a targeted weight, naming it.
    """
    a = cfg.adapter
    if a.name == "full":
        return
    model = adapter_meta_model(cfg.model.name_or_path, a)
    if not residual_base(a):
        return
    from peft.tuners.lora import LoraLayer

    for name, module in model.named_modules():
        if isinstance(module, LoraLayer):
            base = module.get_base_layer().weight
            if a.r > min(base.shape):
                raise BadInput(f"adapter={a.name} adapter.r={a.r} asks for {a.r} singular components of {name}, "
                               f"whose weight is {base.shape[0]} x {base.shape[1]} (at most {min(base.shape)}); "
                               f"use adapter.r <= {min(base.shape)}, or leave that module out of "
                               f"adapter.target_modules")

