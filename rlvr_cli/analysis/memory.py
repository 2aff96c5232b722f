"""`rlvr memory MODEL`: the memory that training needs for weights, gradients, optimizer states and master
weights, per optimizer. Computed from parameter shapes, not measured; activations are not included.

Per parameter, by precision (Hugging Face transformers docs, "Model training anatomy", section "Anatomy of
Model's Memory"; https://huggingface.co/docs/transformers/model_memory_anatomy):

    precision  weights         gradients  optimizer states          master weights   AdamW total
    fp32       4 B             4 B        fp32                      none             16 B/param (70B: 1120 GB)
    mixed      2 B (fp16/bf16) 4 B (fp32) fp32                      4 B (fp32)       18 B/param (70B: 1260 GB)
    bf16       2 B             2 B        parameter dtype (2 B)     none             8 B/param

Frozen weights (the base model under an adapter) need weights only; gradients, optimizer states and master
weights exist for the trainable parameters alone.

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

Torch optimizers create their state with `zeros_like(param)`, so states have the parameter's dtype (fp32 in
`fp32` and `mixed`, where the optimizer updates the fp32 master copy; 2 bytes in `bf16`). Their `step` counter
is a 0-d float32 tensor (4 bytes) per parameter tensor: counted when the shapes are known, so that
`state_bytes_analytic` equals `rlvr_cli.training.optimizers.state_bytes` (measured) exactly. From a bare parameter count
only the per-element part is known: per-tensor counters are left out, and Adafactor's factored second moments
cannot be computed (shown as ~0, a lower bound: give a model for the exact figure).

1 GB = 1e9 bytes (decimal, as the standard figures are).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from rlvr_cli.core.checks import check_rank
from rlvr_cli.core.config import compose, config_dir, group_options
from rlvr_cli.core.errors import BadInput
from rlvr_cli.models.adapters import peft_config
from rlvr_cli.models.state import meta_model

Shape = tuple[int, ...]

#: Bytes per element for each precision: working weights, gradients, master copy, optimizer states.
PRECISIONS: dict[str, dict[str, int]] = {
    "fp32": {"weights": 4, "gradients": 4, "master": 0, "states": 4},
    "mixed": {"weights": 2, "gradients": 4, "master": 4, "states": 4},
    "bf16": {"weights": 2, "gradients": 2, "master": 0, "states": 2},
}
PRECISION_HELP = {
    "fp32": "fp32: weights 4 B, gradients 4 B, fp32 optimizer states, no master copy",
    "mixed": "mixed: fp16/bf16 weights 2 B + fp32 master 4 B, fp32 gradients 4 B, fp32 optimizer states",
    "bf16": "bf16 (pure): weights 2 B, gradients 2 B, optimizer states in the parameter dtype",
}
#: Bytes of a torch optimizer's per-tensor `step` counter (a 0-d float32 tensor) and of Adafactor's `RMS`.
STEP_BYTES = 4
#: bitsandbytes block-wise 8-bit states: block size, the size under which a tensor keeps fp32 states
#: (`min_8bit_size`), and the bytes of its two 256-value fp32 quantization maps (`qmap1`, `qmap2`).
BNB_BLOCK = 256
BNB_MIN_8BIT_SIZE = 4096
BNB_QMAPS_BYTES = 2 * 256 * 4
GB = 10**9
SOURCE = ('Sources: Hugging Face transformers docs, "Model training anatomy" (anatomy of the model\'s memory: '
          "weights, gradients, optimizer states, fp32 master copy); each optimizer's state tensors, from its source "
          "(torch.optim; Adafactor, arXiv 1804.04235; 8-bit AdamW, arXiv 2110.02861; Lion, arXiv 2302.06675). "
          "Activations, temporary buffers and the CUDA context are not included. 1 GB = 1e9 bytes.")
_SUFFIXES = {"K": 10**3, "M": 10**6, "B": 10**9, "G": 10**9, "T": 10**12}


@dataclass(frozen=True)
class MemoryBreakdown:
    """Training memory of one optimizer, in bytes (int), and its total per model parameter.

    `weights`: every parameter (frozen ones too) at the working precision. `gradients`, `optimizer_states`,
    `master_weights`: the trainable parameters only. `total`: their sum. `bytes_per_param`: total / all
    parameters. `exact`: False when the figure is a lower bound (Adafactor from a bare parameter count);
    `note` then says why.
    """

    weights: int
    gradients: int
    optimizer_states: int
    master_weights: int
    total: int
    bytes_per_param: float
    exact: bool = True
    note: str = ""


@dataclass
class MemoryEstimate:
    """What `rlvr memory` prints: the model's parameter counts and one `MemoryBreakdown` per optimizer.

    `model` is the argument as given; `n_params` counts every parameter (tied weights once), `n_trainable` the
    trainable ones (all of them without an adapter). `from_shapes` is True when the parameter shapes were known
    (a model), False for a bare count.
    """

    model: str
    n_params: int
    n_trainable: int
    precision: str
    adapter: str
    r: int | None
    from_shapes: bool
    rows: dict[str, MemoryBreakdown] = field(default_factory=dict)


def optimizer_names() -> list[str]:
    """The optimizer options: the names of conf/optimizer/*.yaml."""

    return group_options("optimizer")


def check_optimizer(name: str) -> None:
    """Raises `BadInput` (listing the valid names) unless `name` is an option of the optimizer config group."""
    names = optimizer_names()
    if name not in names:
        raise BadInput(f"unknown optimizer '{name}'; valid optimizers: {', '.join(names)}")


def check_precision(precision: str) -> None:
    """Raises `BadInput` (listing fp32, mixed, bf16) unless `precision` is one of `PRECISIONS`."""
    if precision not in PRECISIONS:
        raise BadInput(f"unknown precision '{precision}'; valid precisions: {', '.join(PRECISIONS)}")


def parse_model_arg(s: str) -> int | None:
    """A parameter count written as a number (`70e9`, `1.7e9`, `135e6`, `135000000`, or with a suffix: `7B`,
    `135M`, `1.5K`), or None when `s` names a model instead (an embedded name, a directory, a hub id).

    An existing directory is always a model, even with a number for a name.

    Raises:
        BadInput: `s` is a number but not a whole count >= 1 (zero, negative, fractional, not finite).
    """
    text = s.strip().replace("_", "").replace(",", "")
    if not text or Path(s).expanduser().is_dir():
        return None
    scale = 1
    if text[-1].upper() in _SUFFIXES:
        scale, text = _SUFFIXES[text[-1].upper()], text[:-1]
    try:
        value = Decimal(text) * scale
    except InvalidOperation:
        return None
    if not value.is_finite() or value < 1 or value != value.to_integral_value():
        raise BadInput(f"parameter count must be a whole number >= 1, got '{s}'; e.g. 70e9 or 1.7e9")
    return int(value)


def _shapes(params: Any) -> list[Shape]:
    return [tuple(int(d) for d in p.shape) for p in params]


def param_shapes(model_name_or_path: str) -> list[Shape]:
    """The shape of every parameter of a causal LM, tied weights once, without loading any weight.

    The model is built from its config (`AutoConfig.from_pretrained`) on the meta device; `model.parameters()`
    yields a tied tensor (e.g. the input embedding shared with the output head) once.

    Args:
        model_name_or_path: `tiny-random`, `smollm2-135m`, a local model directory, or a hub id (needs the hub).

    Raises:
        BadInput: the model's config cannot be read (one line).
    """
    return _shapes(meta_model(model_name_or_path).parameters())


def adapter_shapes(model_name_or_path: str, adapter: str, r: int | None = None) -> tuple[list[Shape], list[Shape]]:
    """`(all parameter shapes, trainable parameter shapes)` of a model with a PEFT adapter, on the meta device.

    The adapter is the project's own (`conf/adapter/<adapter>.yaml` through `rlvr_cli.adapters.peft_config`),
    applied with `peft.get_peft_model` to the meta-device model (PEFT builds its layers there too, so nothing is
    loaded; checked against a loaded model in tests/test_memory.py). `adapter="full"` means every parameter trains.

    Args:
        model_name_or_path: as `param_shapes`.
        adapter: an option of the adapter config group (`full`, `lora`, `dora`, `rslora`, `vera`).
        r: the rank; None keeps the adapter config's.

    Raises:
        BadInput: an unknown adapter, r < 1, or a model whose config cannot be read.
    """
    _check_adapter(adapter, r)
    model = meta_model(model_name_or_path)
    if adapter != "full":
        from peft import get_peft_model


        overrides = [f"adapter={adapter}", *([f"adapter.r={r}"] if r is not None else [])]
        config = peft_config(compose(overrides).adapter)
        with warnings.catch_warnings():  # transformers' deprecation notices, raised inside PEFT
            warnings.simplefilter("ignore", FutureWarning)
            model = get_peft_model(model, config)
    params = list(model.parameters())
    return _shapes(params), _shapes(p for p in params if p.requires_grad)


def optimizer_options(optimizer_name: str) -> dict[str, Any]:
    """The keys of `conf/optimizer/<optimizer_name>.yaml` (`_target_`, `state`, momentum, betas, ...), read without
    Hydra.

    Raises:
        BadInput: an unknown optimizer (the message lists the valid ones).
    """
    from omegaconf import OmegaConf

    check_optimizer(optimizer_name)
    cfg = OmegaConf.load(config_dir() / "optimizer" / f"{optimizer_name}.yaml")
    return dict(OmegaConf.to_container(cfg, resolve=True))


#: The analytic optimizer-state models, each implemented by `_tensor_state`: the values of an optimizer file's
#: `state` key (conf/optimizer/*.yaml).
STATE_MODELS = ("sgd", "adam", "rmsprop", "adagrad", "lion", "adafactor", "adam8bit")


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


def _kind(optimizer_name: str, options: Mapping[str, Any]) -> str:
    """The state model of an optimizer: its config file's `state` key (`check_state`)."""
    return check_state(optimizer_name, options.get("state"))


def _tensor_state(kind: str, shape: Shape, dtype_bytes: int, opts: Mapping[str, Any]) -> tuple[int, int]:
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
    raise BadInput(f"no analytic memory model for optimizer state {kind!r}")


def state_bytes_analytic(optimizer_name: str, shapes: Sequence[Shape], dtype_bytes: int = 4,
                         options: Mapping[str, Any] | None = None) -> int:
    """Bytes of optimizer state for trainable parameter tensors of the given shapes, exactly as the optimizer
    allocates it (the module docstring lists each optimizer's state tensors).

    Equal to `rlvr_cli.training.optimizers.state_bytes(optimizer)` (the measured sum of numel * element_size over
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
            (Adafactor: an exp_avg when set), `min_8bit_size` (8-bit AdamW).

    Returns:
        Bytes (int).

    Raises:
        BadInput: an unknown optimizer name, or a config whose `state` key names no memory model here.
    """
    opts = {**optimizer_options(optimizer_name), **(options or {})}
    kind = _kind(optimizer_name, opts)
    return sum(sum(_tensor_state(kind, tuple(shape), dtype_bytes, opts)) for shape in shapes)


def breakdown(model: int | Sequence[Shape], optimizer: str, precision: str = "fp32",
              trainable: Sequence[Shape] | None = None, options: Mapping[str, Any] | None = None) -> MemoryBreakdown:
    """Training memory (weights, gradients, optimizer states, master weights) of one optimizer, in bytes.

    Args:
        model: a parameter count (bare number: per-element figures only, see the module docstring) or the
            shapes of every parameter tensor (exact).
        optimizer: an option of the optimizer config group.
        precision: `fp32`, `mixed` or `bf16` (`PRECISIONS`; the module docstring gives their bytes).
        trainable: shapes of the trainable tensors (an adapter's); None means every parameter trains. Needs
            `model` as shapes.
        options: the optimizer's keyword arguments, as for `state_bytes_analytic`.

    Returns:
        A `MemoryBreakdown`; `exact` is False for Adafactor from a bare count (its factored second moments need
        the matrices' shapes, so they count as 0 and the total is a lower bound).

    Raises:
        BadInput: an unknown optimizer or precision, a count < 1, or `trainable` with a bare count.
    """
    check_optimizer(optimizer)
    check_precision(precision)
    size = PRECISIONS[precision]
    exact, note = True, ""
    if isinstance(model, int):
        if trainable is not None:
            raise BadInput("trainable shapes need the model's shapes, not a parameter count")
        if model < 1:
            raise BadInput(f"parameter count must be >= 1, got {model}")
        n_params = n_trainable = model
        opts = {**optimizer_options(optimizer), **(options or {})}
        kind = _kind(optimizer, opts)
        if kind == "adafactor":
            states = model * 4 if opts.get("beta1") is not None else 0
            exact, note = False, "factored second moments need the matrices' shapes: ~0 B/param, a lower bound"
        else:
            states = _tensor_state(kind, (model,), size["states"], opts)[0]
    else:
        shapes = [tuple(s) for s in model]
        trainable = shapes if trainable is None else [tuple(s) for s in trainable]
        n_params, n_trainable = sum(map(math.prod, shapes)), sum(map(math.prod, trainable))
        states = state_bytes_analytic(optimizer, trainable, size["states"], options)
    weights = n_params * size["weights"]
    gradients = n_trainable * size["gradients"]
    master = n_trainable * size["master"]
    total = weights + gradients + states + master
    return MemoryBreakdown(weights, gradients, states, master, total, total / n_params if n_params else 0.0,
                           exact, note)


def precision_of(dtype: Any) -> str:
    """The `PRECISIONS` key of training in a parameter dtype: float32 -> `fp32`; bfloat16 and float16 ->
    `bf16` (2-byte weights, gradients and optimizer states, no master copy: what `rlvr train` does with
    `model.dtype=bfloat16` or `float16`, since the weights are loaded, and updated, in that dtype).

    Args:
        dtype: a `torch.dtype` or its name (`"float32"`, `"bfloat16"`, `"float16"`).

    Raises:
        BadInput: any other dtype.
    """
    name = str(dtype).removeprefix("torch.")
    if name == "float32":
        return "fp32"
    if name in ("bfloat16", "float16"):
        return "bf16"
    raise BadInput(f"no training precision for dtype {name}; use float32, bfloat16 or float16")


def run_memory_analytic(model: Any, optimizer_name: str, precision: str | None = None,
                        options: Mapping[str, Any] | None = None) -> dict[str, int]:
    """The analytic memory figures of a training run, from its live torch model, for its summary.json.

    With `precision=None` (what `rlvr train` uses) every parameter counts at its own dtype: weights for all
    parameters, gradients and optimizer states (in the parameter's dtype, as torch creates them) for the
    trainable ones, no master copy. For a model in one dtype that is `precision_of(dtype)`: float32 -> `fp32`,
    bfloat16 or float16 -> `bf16` (2-byte weights, gradients and states). It also stays exact where dtypes mix:
    PEFT keeps adapter weights in fp32 over a bf16 base, so their gradients and states take 4 bytes.

    Args:
        model: the model as trained (a PEFT model under an adapter): its parameters give every shape, and
            those with `requires_grad` the trainable ones (tied weights once).
        optimizer_name: an option of the optimizer config group.
        precision: None (the parameters' own dtypes), or `fp32`, `mixed` or `bf16` to count every parameter
            at that precision's bytes instead (`breakdown`).
        options: the optimizer's keyword arguments, as for `state_bytes_analytic` (None: the config file's).

    Returns:
        `{"optimizer_state_bytes_analytic": int, "memory_analytic_bytes": int}` in bytes: the optimizer state
        (comparable with the measured `optimizer_state_bytes`), and weights + gradients + optimizer states +
        master weights (to set beside the measured peak memory, which adds activations and everything else).

    Raises:
        BadInput: an unknown optimizer or precision.
    """
    check_optimizer(optimizer_name)
    params = list(model.parameters())
    trainable = [p for p in params if p.requires_grad]
    if precision is not None:
        b = breakdown(_shapes(params), optimizer_name, precision, _shapes(trainable), options)
        return {"optimizer_state_bytes_analytic": b.optimizer_states, "memory_analytic_bytes": b.total}
    by_size: dict[int, list[Shape]] = {}
    for p in trainable:
        by_size.setdefault(p.element_size(), []).append(tuple(p.shape))
    states = sum(state_bytes_analytic(optimizer_name, shapes, size, options) for size, shapes in by_size.items())
    weights = sum(p.numel() * p.element_size() for p in params)
    gradients = sum(p.numel() * p.element_size() for p in trainable)
    return {"optimizer_state_bytes_analytic": states, "memory_analytic_bytes": weights + gradients + states}


def _check_adapter(adapter: str, r: int | None) -> None:

    adapters = group_options("adapter")
    if adapter not in adapters:
        raise BadInput(f"unknown adapter '{adapter}'; valid adapters: {', '.join(adapters)}")
    if r is not None:
        check_rank(r, "--r")
    if r is not None and adapter == "full":
        raise BadInput("--r is an adapter's rank; --adapter full (every weight trains) has none: add --adapter lora")


def estimate(model: str, optimizers: Sequence[str] | None = None, precision: str = "fp32", adapter: str = "full",
             r: int | None = None) -> MemoryEstimate:
    """Everything `rlvr memory` prints: parameter counts and one `MemoryBreakdown` per optimizer.

    Every argument is checked before any model config is read.

    Args:
        model: a parameter count (`70e9`, see `parse_model_arg`) or a model (`tiny-random`, `smollm2-135m`, a
            local model directory, a hub id).
        optimizers: options of the optimizer config group; None or empty means all of them.
        precision: `fp32`, `mixed` or `bf16`.
        adapter: an option of the adapter config group; `full` trains every weight. Needs a model.
        r: the adapter's rank; None keeps its config's.

    Raises:
        BadInput: an unknown optimizer, precision or adapter, r < 1, an adapter with a bare count, or a MODEL
            that is neither a whole number >= 1 nor a readable model. One line each.
    """
    names = list(optimizers or optimizer_names())
    for name in names:
        check_optimizer(name)
    check_precision(precision)
    _check_adapter(adapter, r)
    count = parse_model_arg(model)
    if count is not None and adapter != "full":
        raise BadInput("--adapter needs a model (its layer shapes), not a parameter count")
    if count is not None:
        rows = {name: breakdown(count, name, precision) for name in names}
        return MemoryEstimate(model, count, count, precision, adapter, None, False, rows)
    shapes, trainable = adapter_shapes(model, adapter, r)
    rows = {name: breakdown(shapes, name, precision, trainable) for name in names}
    if adapter != "full" and r is None:

        r = compose([f"adapter={adapter}"]).adapter.get("r")
    return MemoryEstimate(model, sum(map(math.prod, shapes)), sum(map(math.prod, trainable)), precision, adapter,
                          r, True, rows)

