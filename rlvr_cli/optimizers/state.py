"""The optimizer state models: the bytes of state each optimizer keeps for given trainable parameter shapes
(`state_bytes_analytic`, from the `state` key of `conf/optimizer/NAME.yaml`: `STATE_MODELS`), and the bytes a live
optimizer holds (`state_bytes`, measured). `rlvr memory` (`rlvr_cli.analysis.memory`) and a run's summary use both.

Optimizer state per trainable parameter, from each optimizer's source (its state tensors per parameter tensor):

    SGD (momentum 0)             nothing
    SGD momentum / Nesterov      momentum_buffer                                       1 element
    Adam / AdamW                 exp_avg, exp_avg_sq (+ max_exp_avg_sq with amsgrad)   2 elements, + a step tensor
    RMSprop                      square_avg (+ momentum_buffer, + grad_avg centered)   1 element,  + a step tensor
    Adagrad                      sum                                                   1 element,  + a step tensor
    Lion (lion-pytorch)          exp_avg                                               1 element
    Adafactor (transformers)     matrix (r, c): exp_avg_sq_row (r) + exp_avg_sq_col (c); vector: exp_avg_sq (n);
                                 exp_avg (n) only when beta1 is set; always fp32; + an `RMS` 0-d fp32 tensor
    8-bit AdamW (bitsandbytes)   two uint8 states (1 B each) + an fp32 absmax per 256-element block per state
                                 (+ 2 x 256 fp32 quantization maps); tensors under 4096 elements keep fp32 states
    Muon + AdamW (rlvr)          2-D hidden matrix (`rlvr_cli.models.parameters.muon_matrices`): momentum_buffer,
                                 1 element, no step; every other tensor: AdamW's 2 elements + a step tensor
    LoRA-FA (PEFT)               exp_avg, exp_avg_sq of each trainable tensor (B; A is frozen); its step is a
                                 Python int (0 B)

Torch optimizers create their state with `zeros_like(param)`, so states have the parameter's dtype (fp32 in
`fp32` and `mixed`, where the optimizer updates the fp32 master copy; 2 bytes in `bf16`). Their `step` counter
is a 0-d float32 tensor (4 bytes) per parameter tensor: counted when the shapes are known, so that
`state_bytes_analytic` equals `rlvr_cli.optimizers.state.state_bytes` (measured) exactly. From a bare parameter count
only the per-element part is known: per-tensor counters are left out, and Adafactor's factored second moments
cannot be computed (shown as ~0, a lower bound: give a model for the exact figure).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from rlvr_cli.core.compose import group_options
from rlvr_cli.core.errors import BadInput
from rlvr_cli.core.groups import config_file
from rlvr_cli.models.parameters import full_shape, is_matrix, muon_matrices

Shape = tuple[int, ...]


#: Bytes of a torch optimizer's per-tensor `step` counter (a 0-d float32 tensor) and of Adafactor's `RMS`.
STEP_BYTES = 4


#: bitsandbytes block-wise 8-bit states: block size, the size under which a tensor keeps fp32 states
#: (`min_8bit_size`), and the bytes of its two 256-value fp32 quantization maps (`qmap1`, `qmap2`).
BNB_BLOCK = 256


BNB_MIN_8BIT_SIZE = 4096


BNB_QMAPS_BYTES = 2 * 256 * 4


def optimizer_names() -> list[str]:
    """The optimizer options: the names of conf/optimizer/*.yaml."""

    return group_options("optimizer")


def check_optimizer(name: str) -> None:
    """Raises `BadInput` (listing the valid names) unless `name` is an option of the optimizer config group."""
    names = optimizer_names()
    if name not in names:
        raise BadInput(f"unknown optimizer '{name}'; valid optimizers: {', '.join(names)}")


def optimizer_options(optimizer_name: str) -> dict[str, Any]:
    """The keys of `conf/optimizer/<optimizer_name>.yaml` (`_target_`, `state`, momentum, betas, ...), read without
    Hydra; a file that extends another (a `defaults` list, e.g. `defaults: [adamw, _self_]`) is composed by Hydra
    (`rlvr_cli.core.compose.compose`), so that it keeps what it does not restate, its `state` included.

    Raises:
        BadInput: an unknown optimizer (the message lists the valid ones).
    """
    from omegaconf import OmegaConf

    check_optimizer(optimizer_name)
    cfg = OmegaConf.load(config_file(f"optimizer/{optimizer_name}.yaml"))
    if "defaults" in cfg:
        from rlvr_cli.core.compose import compose

        cfg = compose([f"optimizer={optimizer_name}"]).optimizer
    return dict(OmegaConf.to_container(cfg, resolve=True))


#: The analytic optimizer-state models, each implemented by `tensor_state`: the values of an optimizer file's
#: `state` key (conf/optimizer/*.yaml).
STATE_MODELS = ("sgd", "adam", "rmsprop", "adagrad", "lion", "adafactor", "adam8bit", "muon", "lorafa")


def _adamw_matrices(params: Sequence[Any], model: Any) -> list[Shape]:
    """Shapes of the trainable `is_matrix` tensors among `params` that Muon leaves to AdamW (the embedding and
    head): the `adamw_matrices` option of the `muon` state model."""
    hidden = {id(p) for p in muon_matrices(model)}
    return [full_shape(p) for p in params if p.requires_grad and is_matrix(full_shape(p)) and id(p) not in hidden]


def check_state(name: str, state: Any) -> str:
    """An optimizer file's `state` key: one of `STATE_MODELS`.

    Args:
        name: the optimizer option, for the message.
        state: the `state` value of `conf/optimizer/<name>.yaml`.

    Returns:
        `state`.

    Raises:
        BadInput: a missing or unknown state model (the message lists the valid ones).
    """
    if state not in STATE_MODELS:
        raise BadInput(f"optimizer={name}: unknown state model {state!r} (conf/optimizer/{name}.yaml `state`); "
                       f"valid: {', '.join(STATE_MODELS)}")
    return state


def state_model(optimizer_name: str, options: Mapping[str, Any]) -> str:
    """The state model of an optimizer: its config file's `state` key (`check_state`)."""
    return check_state(optimizer_name, options.get("state"))


def tensor_state(kind: str, shape: Shape, dtype_bytes: int, opts: Mapping[str, Any]) -> tuple[int, int]:
    """`(per-element bytes, per-tensor bytes)` of one parameter tensor's optimizer state.

    The first part grows with the tensor's size (momenta, second moments, quantization statistics); the second
    is a constant per tensor (step counters, Adafactor's RMS, bitsandbytes' quantization maps)."""
    n = math.prod(shape)
    if kind == "sgd":
        return (n * dtype_bytes if opts.get("momentum", 0) else 0), 0
    if kind == "adam":
        return (3 if opts.get("amsgrad") else 2) * n * dtype_bytes, STEP_BYTES
    if kind == "rmsprop":
        buffers = 1 + bool(opts.get("momentum", 0)) + bool(opts.get("centered"))
        return buffers * n * dtype_bytes, STEP_BYTES
    if kind == "adagrad":
        return n * dtype_bytes, STEP_BYTES
    if kind == "lion":
        return n * dtype_bytes, 0
    if kind == "adafactor":  # transformers casts the gradient to fp32 and creates every state from it
        first = n * 4 if opts.get("beta1") is not None else 0
        second = (math.prod(shape[:-1]) + math.prod(shape[:-2] + shape[-1:])) * 4 if len(shape) >= 2 else n * 4
        return first + second, STEP_BYTES  # + `RMS`, a 0-d fp32 tensor
    if kind == "adam8bit":
        if n < opts.get("min_8bit_size", BNB_MIN_8BIT_SIZE):
            return 2 * n * 4, 0
        return 2 * n + 2 * 4 * math.ceil(n / BNB_BLOCK), BNB_QMAPS_BYTES
    if kind == "muon":  # torch.optim.Muon: a momentum_buffer like the gradient; AdamW for the rest
        return (n * dtype_bytes, 0) if is_matrix(shape) else tensor_state("adam", shape, dtype_bytes, {})
    if kind == "lorafa":  # PEFT's LoraFAOptimizer: exp_avg(_B), exp_avg_sq(_B); `step` is a Python int
        return 2 * n * dtype_bytes, 0
    raise BadInput(f"no analytic memory model for optimizer state {kind!r}")


def state_bytes_analytic(optimizer_name: str, shapes: Sequence[Shape], dtype_bytes: int = 4,
                         options: Mapping[str, Any] | None = None) -> int:
    """Bytes of optimizer state for trainable parameter tensors of the given shapes, exactly as the optimizer
    allocates it (the module docstring lists each optimizer's state tensors).

    Equal to `rlvr_cli.optimizers.state.state_bytes(optimizer)` (the measured sum of numel * element_size over
    `optimizer.state`) after the first `step()`, when every one of those tensors received a gradient (torch
    optimizers other than Adagrad create state lazily, for tensors with a gradient only). For bitsandbytes'
    8-bit AdamW the figure counts the two 256-value quantization maps once per tensor, as `state_bytes` does,
    although every tensor shares them (2 KiB per tensor; assumes bitsandbytes >= 0.45, block size 256).

    Args:
        optimizer_name: an option of the optimizer config group (`sgd`, `adamw`, ...).
        shapes: the trainable parameter tensors' shapes, each tensor once.
        dtype_bytes: bytes per element of the parameters the optimizer updates (4 for fp32, 2 for bf16/fp16):
            the dtype of torch's and Lion's states. Adafactor (always fp32), 8-bit AdamW (uint8, fp32) and the
            float32 step counters do not depend on it.
        options: the optimizer's keyword arguments (e.g. `optimizer_cls_and_kwargs(cfg)[1]`) over the config
            file's defaults: `momentum` (SGD, RMSprop), `amsgrad` (Adam), `centered` (RMSprop), `beta1`
            (Adafactor: an exp_avg when set), `min_8bit_size` (8-bit AdamW), `adamw_matrices` (Muon: the shapes of
            the `is_matrix` tensors that AdamW takes, the embedding and head, each once; without it every
            `is_matrix` shape counts as Muon's, as `MuonWithAdamW` does over bare parameters), `state` (the state
            model, over the file's: `lorafa` under LoRA-FA).

    Returns:
        Bytes (int).

    Raises:
        BadInput: an unknown optimizer name, or a config whose `state` key names no memory model here.
    """
    opts = {**optimizer_options(optimizer_name), **(options or {})}
    kind = state_model(optimizer_name, opts)
    aside = [tuple(s) for s in opts.get("adamw_matrices") or ()]  # Muon: these shapes go to AdamW, each once
    total = 0
    for shape in map(tuple, shapes):
        routed = kind
        if kind == "muon" and shape in aside:
            aside.remove(shape)
            routed = "adam"
        total += sum(tensor_state(routed, shape, dtype_bytes, opts))
    return total


def muon_options(optimizer_name: str, options: Mapping[str, Any] | None, params: Sequence[Any],
                  model: Any) -> Mapping[str, Any] | None:
    """`options`, plus `adamw_matrices` from the model (`_adamw_matrices` of `params`) when the optimizer's state
    model is `muon`: which matrices AdamW takes is known from the model, not from shapes."""
    opts = {**optimizer_options(optimizer_name), **(options or {})}
    if state_model(optimizer_name, opts) != "muon":
        return options
    return {"adamw_matrices": _adamw_matrices(params, model), **(options or {})}


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
