"""Optimizers built by rlvr from the `optimizer` config group.

Each `conf/optimizer/<name>.yaml` is a Hydra instantiation target (`_target_` plus `_partial_: true` and the
constructor's arguments, `lr` included; https://hydra.cc/docs/advanced/instantiate_objects/overview/), plus
three keys that are not constructor arguments (`META_KEYS`): `name`, `state` (the analytic memory model of
`rlvr_cli.analysis.memory`, one of its `STATE_MODELS`) and `requires_cuda`. Adding an optimizer is one such file.

TRL's `optim="sgd"` string builds plain SGD and ignores `optim_args`, so momentum, Nesterov or Lion's betas
would be silently dropped. rlvr instead hands the `Trainer` an `(optimizer class, kwargs)` pair through its
`optimizer_cls_and_kwargs` attribute, taken from the instantiated partial (`.func`, `.keywords`):
`Trainer.create_optimizer` then calls `cls(parameter_groups, **kwargs)` with the trainable parameters and
their weight-decay groups, after accelerate has wrapped the model, so the same path works under FSDP and
DeepSpeed. (Handing it the partial itself would not do: transformers treats any callable that is not an
`Optimizer` subclass as a factory and calls it with the whole model, without the weight-decay groups.)
Weight decay, scheduler, warm-up and clipping are trainer settings in the `grpo` group.
"""

from __future__ import annotations

import inspect
from typing import Any

from omegaconf import DictConfig, OmegaConf

from rlvr_cli.core.errors import BadInput, root_cause

#: Keys of an optimizer config that describe it and are not constructor arguments (stripped before instantiate).
META_KEYS = ("name", "state", "requires_cuda")


def constructor_config(cfg: DictConfig | dict) -> dict[str, Any]:
    """The part of an optimizer config that `hydra.utils.instantiate` builds: every key but `META_KEYS`."""
    container = OmegaConf.to_container(cfg, resolve=True) if OmegaConf.is_config(cfg) else dict(cfg)
    return {k: v for k, v in container.items() if k not in META_KEYS}


def build_optimizer(cfg: DictConfig) -> Any:
    """Instantiate an optimizer config: a `functools.partial` of the optimizer class with its arguments.

    Called with the parameters (or parameter groups) it returns the optimizer, e.g.
    `build_optimizer(cfg)(model.parameters())`. Checks `state` and `requires_cuda` first, so a bad optimizer
    fails before any model is loaded.

    Args:
        cfg: a composed `optimizer` group node (`compose([...]).optimizer`).

    Raises:
        BadInput: an unknown `state`, a CUDA-only optimizer without CUDA, a class that cannot be imported
            (for bitsandbytes the message says which extra to install), or an argument its constructor does not
            take.
    """
    from hydra.utils import instantiate

    from rlvr_cli.analysis.memory import check_state

    name = cfg.get("name", "?")
    check_state(name, cfg.get("state"))
    target = str(cfg.get("_target_"))
    if cfg.get("requires_cuda"):
        import torch

        if not torch.cuda.is_available():
            raise BadInput(f"optimizer={name} needs a CUDA GPU (bitsandbytes); on CPU use optimizer=adamw")
    if not cfg.get("_partial_"):
        raise BadInput(f"optimizer={name}: conf/optimizer/{name}.yaml needs `_partial_: true` (the Trainer "
                       f"passes the parameters)")
    try:
        factory = instantiate(constructor_config(cfg), _convert_="all")
        inspect.signature(factory.func).bind([], **factory.keywords)  # an unknown argument fails now, not in train
    except Exception as e:
        extra = " (pip install 'rlvr[gpu]')" if "bitsandbytes" in target else ""
        raise BadInput(f"optimizer={name}: cannot build {target}{extra}: {root_cause(e)}") from None
    return factory


def optimizer_cls_and_kwargs(cfg: DictConfig) -> tuple[type, dict[str, Any]]:
    """The optimizer class named by `cfg._target_` and its keyword arguments (learning rate included), for
    `Trainer.optimizer_cls_and_kwargs`; lists become tuples (`betas`).

    Weight decay is not among them: `Trainer.create_optimizer` puts `grpo.weight_decay` into the parameter groups
    (none on biases and norms).

    Raises:
        BadInput: as `build_optimizer`.
    """
    factory = build_optimizer(cfg)
    kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in factory.keywords.items()}
    return factory.func, kwargs


def trainer_kwargs(cfg: DictConfig) -> dict[str, Any]:
    """The `GRPOConfig` fields rlvr derives for the optimizer: `learning_rate` (from `optimizer.lr`) and
    `max_grad_norm` (from `grpo.max_grad_norm`, null turned into 0.0: transformers' "no clipping").

    The other trainer settings (`lr_scheduler_type`, `warmup_steps`, `weight_decay`) are `grpo` fields already.

    Args:
        cfg: the composed run config (`optimizer` and `grpo` nodes).
    """
    out: dict[str, Any] = {"learning_rate": cfg.optimizer.lr}
    grpo = cfg.get("grpo")
    if grpo is not None and "max_grad_norm" in grpo:
        out["max_grad_norm"] = 0.0 if grpo.max_grad_norm is None else grpo.max_grad_norm
    return out


def state_bytes(optimizer: Any) -> int:
    """Bytes held by an optimizer's state tensors (momenta, second moments, step counters).

    Measured, not computed: the sum of `numel * element_size` over every tensor in
    `optimizer.state`. Accepts accelerate's `AcceleratedOptimizer` wrapper.
    """
    import torch

    inner = getattr(optimizer, "optimizer", optimizer)
    return sum(
        v.numel() * v.element_size()
        for state in inner.state.values()
        for v in state.values()
        if isinstance(v, torch.Tensor)
    )
