"""Optimizers built by rlvr from the `optimizer` config group.

TRL's `optim="sgd"` string builds plain SGD and ignores `optim_args`, so momentum, Nesterov or
Lion's betas would be silently dropped (shared DESIGN.md section 4). rlvr instead hands the
`Trainer` an `(optimizer class, kwargs)` pair through its `optimizer_cls_and_kwargs` mechanism:
the optimizer is still created by `Trainer.create_optimizer`, from the trainable parameters with
its weight-decay groups, after accelerate has wrapped the model, so the same path works under
FSDP and DeepSpeed.
"""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig, OmegaConf

from rlvr_cli.core.errors import BadInput, one_line

#: Keys of an optimizer config that go to the Trainer (TrainingArguments names), not to the optimizer.
TRAINER_KEYS = ("lr_scheduler_type", "warmup_steps", "max_grad_norm", "weight_decay")
#: Keys that describe the optimizer config itself.
META_KEYS = ("name", "_target_", "requires_cuda")


def optimizer_cls_and_kwargs(cfg: DictConfig) -> tuple[type, dict[str, Any]]:
    """The optimizer class named by `cfg._target_` and its keyword arguments (learning rate included).

    Weight decay is not among them: `Trainer` puts it into parameter groups (none on biases and norms).

    Raises:
        BadInput: the class cannot be imported (the message says which extra to install), or it
            needs CUDA and none is available.
    """
    from hydra.utils import get_class

    if cfg.get("requires_cuda"):
        import torch

        if not torch.cuda.is_available():
            raise BadInput(f"optimizer={cfg.name} needs a CUDA GPU (bitsandbytes); on CPU use optimizer=adamw")
    try:
        cls = get_class(cfg._target_)
    except Exception as e:
        extra = " (pip install 'rlvr[gpu]')" if "bitsandbytes" in cfg._target_ else ""
        raise BadInput(f"optimizer={cfg.name}: cannot import {cfg._target_}{extra}: {one_line(e)}") from None
    kwargs = {k: v for k, v in OmegaConf.to_container(cfg).items() if k not in TRAINER_KEYS + META_KEYS}
    return cls, {k: tuple(v) if isinstance(v, list) else v for k, v in kwargs.items()}


def trainer_kwargs(cfg: DictConfig) -> dict[str, Any]:
    """The `GRPOConfig` fields an optimizer config sets: learning_rate, weight_decay, scheduler, warm-up, clipping."""
    out = {k: cfg[k] for k in TRAINER_KEYS if k in cfg}
    out["learning_rate"] = cfg.lr
    if out.get("max_grad_norm") is None:
        out["max_grad_norm"] = 0.0  # transformers: 0 turns clipping off
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
