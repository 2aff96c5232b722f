"""Optimizers built by rlvr from the `optimizer` config group.

Each `conf/optimizer/<name>.yaml` is a Hydra instantiation target (`_target_` plus `_partial_: true` and the
constructor's arguments, `lr` included; https://hydra.cc/docs/advanced/instantiate_objects/overview/), plus
keys that are not constructor arguments, typed fields of `rlvr_cli.core.run_config.Optimizer`: `name`, `state` (the
analytic state model, one of `rlvr_cli.optimizers.state.STATE_MODELS`), `requires_cuda` and `hooks`. What Hydra
instantiates is `Optimizer.instantiable()`. Adding an optimizer is one such file.

TRL's `optim="sgd"` string builds plain SGD and ignores `optim_args`, so momentum, Nesterov or Lion's betas
would be silently dropped. rlvr instead hands the `Trainer` an `(optimizer class, kwargs)` pair through its
`optimizer_cls_and_kwargs` attribute, taken from the instantiated partial (`.func`, `.keywords`):
`Trainer.create_optimizer` then calls `cls(parameter_groups, **kwargs)` with the trainable parameters and
their weight-decay groups, after accelerate has wrapped the model, so the same path works under FSDP and
DeepSpeed. (Handing it the partial itself would not do: transformers treats any callable that is not an
`Optimizer` subclass as a factory and calls it with the whole model, without the weight-decay groups.)
Weight decay, scheduler, warm-up and clipping are trainer settings in the `grpo` group.

Three optimizers need the model, not just its parameters, and go through transformers' other form of
`optimizer_cls_and_kwargs`: a factory (anything that is not an `Optimizer` subclass), which
`Trainer.create_optimizer` calls as `factory()(model, **kwargs)`, still before accelerate or after FSDP wraps the
model as the optimizer path always does (`trainer_optimizer` picks it from the run config):

- LoRA+ (Hayou et al., arXiv 2402.12354; `adapter=loraplus`): PEFT's `create_loraplus_optimizer` over the
  optimizer group's class and arguments, B's learning rate `adapter.loraplus_lr_ratio` times A's (`LoraPlus`);
- LoRA-FA (Zhang et al., arXiv 2308.03303; `adapter=lorafa`): PEFT's `create_lorafa_optimizer`, which freezes A
  and steps B with AdamW on a projected gradient; the optimizer group must be `adamw`, whose `betas` and `eps`
  it takes (`LoraFA`);
- Muon (Jordan et al. 2024, https://kellerjordan.github.io/posts/muon/; `optimizer=muon`): `torch.optim.Muon`
  on the 2-D hidden weight matrices and `torch.optim.AdamW` on the rest, as one optimizer (`MuonWithAdamW`,
  built by `MuonOverModel`, which sends the input embedding and output head to AdamW).

Weight decay (`grpo.weight_decay`) reaches them as an argument: the Trainer's weight-decay groups are built only
for an optimizer class.
"""

from __future__ import annotations

import inspect
from typing import Any

import torch

from rlvr_cli.core import modes
from rlvr_cli.core.errors import BadInput, root_cause
from rlvr_cli.core.run_config import Optimizer, RunConfig
from rlvr_cli.optimizers.muon import MuonOverModel, MuonWithAdamW


def build_optimizer(cfg: Optimizer) -> Any:
    """Instantiate an optimizer config: a `functools.partial` of the optimizer class with its arguments.

    Called with the parameters (or parameter groups) it returns the optimizer, e.g.
    `build_optimizer(cfg)(model.parameters())`. Checks `state` and `requires_cuda` first, so a bad optimizer
    fails before any model is loaded.

    Args:
        cfg: a run's `optimizer` (`compose_run([...]).optimizer`).

    Raises:
        BadInput: an unknown `state`, a CUDA-only optimizer without CUDA, a class that cannot be imported
            (for bitsandbytes the message says which extra to install), or an argument its constructor does not
            take.
    """
    from hydra.utils import instantiate

    from rlvr_cli.optimizers.state import check_state

    name = cfg.name
    check_state(name, cfg.state)
    target = cfg.target
    if cfg.requires_cuda:
        import torch

        if not torch.cuda.is_available():
            raise BadInput(f"optimizer={name} needs a CUDA GPU (bitsandbytes); on CPU use optimizer=adamw")
    if not cfg.partial:
        raise BadInput(f"optimizer={name}: conf/optimizer/{name}.yaml needs `_partial_: true` (the Trainer "
                       f"passes the parameters)")
    try:
        factory = instantiate(cfg.instantiable(), _convert_="all", _recursive_=False)  # see core/targets.py
        inspect.signature(factory.func).bind([], **factory.keywords)  # an unknown argument fails now, not in train
    except Exception as e:
        extra = " (pip install 'rlvr[gpu]')" if "bitsandbytes" in target else ""
        raise BadInput(f"optimizer={name}: cannot build {target}{extra}: {root_cause(e)}") from None
    return factory


def optimizer_cls_and_kwargs(cfg: Optimizer) -> tuple[type, dict[str, Any]]:
    """The optimizer class named by `cfg.target` and its keyword arguments (learning rate included), for
    `Trainer.optimizer_cls_and_kwargs`; lists become tuples (`betas`).

    Weight decay is not among them: `Trainer.create_optimizer` puts `grpo.weight_decay` into the parameter groups
    (none on biases and norms).

    Raises:
        BadInput: as `build_optimizer`.
    """
    factory = build_optimizer(cfg)
    kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in factory.keywords.items()}
    return factory.func, kwargs


class LoraPlus:
    """transformers optimizer factory for `adapter=loraplus` (LoRA+, Hayou et al., arXiv 2402.12354):
    `LoraPlus()(model, optimizer_cls=..., lr=..., loraplus_lr_ratio=..., weight_decay=..., **kwargs)` is PEFT's
    `peft.optimizers.create_loraplus_optimizer`: every LoRA B matrix (and 1-D adapter tensor) at
    `lr * loraplus_lr_ratio`, every A at `lr`, both with `optimizer_cls(**kwargs)` (any optimizer of the `optimizer`
    group); `weight_decay` (PEFT's `loraplus_weight_decay`) on all but biases and norms
    (https://huggingface.co/docs/peft/developer_guides/lora#lora-optimized-lora)."""

    def __call__(self, model: Any, *, optimizer_cls: type, lr: float, loraplus_lr_ratio: float,
                 weight_decay: float = 0.0, **kwargs: Any) -> torch.optim.Optimizer:
        from peft.optimizers import create_loraplus_optimizer

        return create_loraplus_optimizer(model, optimizer_cls, lr=lr, loraplus_lr_ratio=loraplus_lr_ratio,
                                         loraplus_weight_decay=weight_decay, **kwargs)


class LoraFA:
    """transformers optimizer factory for `adapter=lorafa` (LoRA-FA, Zhang et al., arXiv 2308.03303):
    `LoraFA()(model, r=..., lora_alpha=..., lr=..., weight_decay=..., betas=..., eps=...)` is PEFT's
    `peft.optimizers.create_lorafa_optimizer`, which freezes every LoRA A (`requires_grad=False`) and steps each B
    with AdamW on the gradient projected through A (`(A A^T)^-1`, scaled by the layer's LoRA scaling), then sets
    `betas` and `eps` (PEFT fixes (0.9, 0.999) and 1e-6) to the `adamw` option's. `r` and `lora_alpha` are the
    adapter's `r` and `alpha` (PEFT reads each layer's own scaling; they are its fallback). `state` is not PEFT's:
    the memory model of what is built (`lorafa`: AdamW's two moments for B, and a Python-int step, 0 bytes), read by
    `rlvr_cli.analysis.memory` from these keyword arguments."""

    def __call__(self, model: Any, *, r: int, lora_alpha: float, lr: float, weight_decay: float = 0.0,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 state: str = "lorafa") -> torch.optim.Optimizer:
        from peft.optimizers import create_lorafa_optimizer

        optimizer = create_lorafa_optimizer(model, r=r, lora_alpha=lora_alpha, lr=lr, weight_decay=weight_decay)
        for group in optimizer.param_groups:
            group.update(betas=tuple(betas), eps=eps)
        return optimizer


#: Values of an adapter file's `optimizer_factory` key: the factory that builds the run's optimizer.
ADAPTER_FACTORIES = {"loraplus": LoraPlus, "lorafa": LoraFA}
#: Constructor arguments of `torch.optim.AdamW` that LoRA-FA takes over (the rest would be silently ignored).
LORAFA_KEYS = ("lr", "betas", "eps")


def trainer_optimizer(cfg: RunConfig) -> tuple[Any, dict[str, Any]]:
    """`Trainer.optimizer_cls_and_kwargs` of a run: the optimizer class and its arguments
    (`optimizer_cls_and_kwargs`), or a factory over the model and its arguments where the optimizer needs the
    model: `LoraPlus` and `LoraFA` (the adapter file's `optimizer_factory`), `MuonOverModel` (`optimizer=muon`).
    Factories get `grpo.weight_decay` as `weight_decay`. Everything is checked here, before any model loads.

    Args:
        cfg: the typed run config (its `optimizer`, `adapter`, `grpo` and `distributed`).

    Raises:
        BadInput: as `optimizer_cls_and_kwargs`; an unknown `optimizer_factory`; LoRA-FA over another optimizer
            than `adamw`, with AdamW arguments it would ignore, or with `use_dora`; Muon or LoRA-FA under
            DeepSpeed ZeRO (it flattens parameters into 1-D partitions, which both cannot step); Muon with an
            adapter that trains no 2-D matrix (`is_matrix`).
    """
    cls, kwargs = optimizer_cls_and_kwargs(cfg.optimizer)
    adapter = cfg.adapter
    adapter_name, opt_name = adapter.name, cfg.optimizer.name
    factory = adapter.optimizer_factory
    weight_decay = cfg.grpo.weight_decay
    if factory is not None and factory not in ADAPTER_FACTORIES:
        raise BadInput(f"adapter={adapter_name}: unknown optimizer_factory {factory!r}; valid: "
                       f"{', '.join(ADAPTER_FACTORIES)}, or null")
    if cls is MuonWithAdamW or factory == "lorafa":
        if modes.backend(cfg.distributed) == "deepspeed" or "deepspeed" in cfg.grpo.fields:
            what = "optimizer=muon" if cls is MuonWithAdamW else f"adapter={adapter_name} (LoRA-FA)"
            raise BadInput(f"{what} cannot run under DeepSpeed ZeRO, which steps flattened 1-D partitions: use "
                           f"distributed=ddp or distributed=fsdp")
    if factory == "loraplus":
        return LoraPlus, {"optimizer_cls": cls, "loraplus_lr_ratio": adapter.loraplus_lr_ratio,
                          "weight_decay": weight_decay, **kwargs}
    if factory == "lorafa":
        if cls is not torch.optim.AdamW:
            raise BadInput(f"adapter={adapter_name} trains with PEFT's LoRA-FA optimizer, an AdamW: use "
                           f"optimizer=adamw, not optimizer={opt_name}")
        ignored = sorted(set(kwargs) - set(LORAFA_KEYS))
        if ignored:
            raise BadInput(f"adapter={adapter_name}: LoRA-FA takes only {', '.join(LORAFA_KEYS)} from the "
                           f"optimizer; remove optimizer.{ignored[0]}")
        if adapter.use_dora:
            raise BadInput(f"adapter={adapter_name}: LoRA-FA pairs each lora_A with its lora_B and cannot step "
                           f"DoRA's magnitude vector: set adapter.use_dora=false")
        return LoraFA, {"r": adapter.r, "lora_alpha": adapter.alpha, "weight_decay": weight_decay,
                        "state": "lorafa", **kwargs}
    if cls is MuonWithAdamW:
        return MuonOverModel, {"weight_decay": weight_decay, **kwargs}
    return cls, kwargs


def trainer_kwargs(cfg: RunConfig) -> dict[str, Any]:
    """The `GRPOConfig` fields rlvr derives for the optimizer: `learning_rate` (from `optimizer.lr`) and
    `max_grad_norm` (from `grpo.max_grad_norm`, null turned into 0.0: transformers' "no clipping").

    The other trainer settings (`lr_scheduler_type`, `warmup_steps`, `weight_decay`) are `grpo` fields already.

    Args:
        cfg: the typed run config (its `optimizer` and `grpo`).
    """
    return {"learning_rate": cfg.optimizer.lr, "max_grad_norm": cfg.grpo.max_grad_norm or 0.0}
