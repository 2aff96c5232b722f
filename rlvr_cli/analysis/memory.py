"""`rlvr memory MODEL`: the memory that training needs for weights, gradients, optimizer states and master
weights, per optimizer, for the whole run on one device: the optimizer state models (`STATE_MODELS`,
`state_bytes_analytic`), the precision breakdown (`PRECISIONS`, `breakdown`; a 4-bit QLoRA base, `nf4_bytes`), and
the figures of a live training run (`run_memory_analytic`). `estimate`, what `rlvr memory` prints, adds one GPU's
share under a plan (sharding, offload, activations, `--gpu-memory`: `rlvr_cli.analysis.planner`). Computed from
parameter shapes and the config, not measured.

Per parameter, by precision (the names of `rlvr train precision=`, `rlvr_cli.core.precision`; bytes from the
Hugging Face transformers docs, "Model training anatomy", section "Anatomy of Model's Memory";
https://huggingface.co/docs/transformers/model_memory_anatomy):

    precision   weights       gradients  optimizer states  master weights  frozen weight  AdamW total
    fp32        4 B           4 B        fp32              none            4 B            16 B/param (70B: 1120 GB)
    bf16-mixed  2 B (16-bit)  4 B (fp32) fp32              4 B (fp32)      6 B            18 B/param (70B: 1260 GB)
    fp16-mixed  as bf16-mixed
    bf16-true   2 B           2 B        param dtype, 2 B  none            2 B            8 B/param

`bf16-mixed` keeps fp32 weights and computes under autocast, which holds a 16-bit copy of every weight a matrix
product uses from the forward pass to the backward pass: 4 + 2 = 6 B per weight, HF's "6 bytes * number of
parameters for mixed precision training (maintains a model in fp32 and one in fp16 in memory)". For a trained
weight the table books that as a 2-byte working copy plus a 4-byte master (ZeRO's split, where the master is
sharded with the optimizer states); a frozen weight (the base model under an adapter) is held in fp32 with its
copy, 6 B. Gradients, optimizer states and master weights exist for the trainable parameters alone.

Optimizer state per trainable parameter, each optimizer's state model: `rlvr_cli.optimizers.state`.

1 GB = 1e9 bytes (decimal, as the standard figures are).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from rlvr_cli.analysis.planner import Activations, GpuMemory, Plan, check_plan, model_activations, per_gpu
from rlvr_cli.core.checks import check_rank
from rlvr_cli.core.compose import compose, group_options, plain
from rlvr_cli.core.errors import BadInput
from rlvr_cli.core.nodes import from_node
from rlvr_cli.core.run_config import Adapter
from rlvr_cli.models.adapters import adapter_meta_model
from rlvr_cli.models.parameters import full_numel, full_shape, meta_model
from rlvr_cli.optimizers.state import (
    Shape,
    check_optimizer,
    muon_options,
    optimizer_names,
    optimizer_options,
    state_bytes_analytic,
    state_model,
    tensor_state,
)

#: Bytes per element for each precision (`rlvr_cli.core.precision.DTYPES`' names): working weights, gradients,
#: master copy, optimizer states (trainable parameters), and a frozen weight.
_MIXED = {"weights": 2, "gradients": 4, "master": 4, "states": 4, "frozen": 6}
PRECISIONS: dict[str, dict[str, int]] = {
    "fp32": {"weights": 4, "gradients": 4, "master": 0, "states": 4, "frozen": 4},
    "bf16-mixed": _MIXED,
    "fp16-mixed": _MIXED,
    "bf16-true": {"weights": 2, "gradients": 2, "master": 0, "states": 2, "frozen": 2},
}
_MIXED_HELP = ("{}: fp32 weights + their 16-bit autocast copy (2 B working + 4 B master per trained weight, 6 B per "
               "frozen one), fp32 gradients 4 B, fp32 optimizer states")
PRECISION_HELP = {
    "fp32": "fp32: weights 4 B, gradients 4 B, fp32 optimizer states, no master copy",
    "bf16-mixed": _MIXED_HELP.format("bf16-mixed"),
    "fp16-mixed": _MIXED_HELP.format("fp16-mixed"),
    "bf16-true": "bf16-true: weights 2 B, gradients 2 B, optimizer states in the parameter dtype",
}
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
    (a model), False for a bare count. `rows` are the whole run's model states (one device, no sharding);
    `per_gpu` the same per optimizer on each GPU under `plan` (sharding, offload), with `activations` (from the
    model's config; None for a bare count).
    """

    model: str
    n_params: int
    n_trainable: int
    precision: str
    adapter: str
    r: int | None
    from_shapes: bool
    rows: dict[str, MemoryBreakdown] = field(default_factory=dict)
    plan: Plan | None = None
    activations: Activations | None = None
    per_gpu: dict[str, GpuMemory] = field(default_factory=dict)


def check_precision(precision: str) -> None:
    """Raises `BadInput` (listing fp32, bf16-mixed, fp16-mixed, bf16-true) unless `precision` is one of
    `PRECISIONS`."""
    if precision not in PRECISIONS:
        raise BadInput(f"unknown precision '{precision}'; valid precisions: {', '.join(PRECISIONS)}")


#: The largest parameter count `rlvr memory` takes: 1e15, some 500 times the largest models trained (about 2e12);
#: past it the byte counts lose their meaning (and, near 1e308, overflow a float).
MAX_PARAMS = 10**15


def parse_model_arg(s: str) -> int | None:
    """A parameter count written as a number (`70e9`, `1.7e9`, `135e6`, `135000000`, or with a suffix: `7B`,
    `135M`, `1.5K`), or None when `s` names a model instead (an embedded name, a directory, a hub id).

    An existing directory is always a model, even with a number for a name.

    Raises:
        BadInput: `s` is a number but not a whole count in 1..`MAX_PARAMS` (zero, negative, fractional, not
            finite, 1e400).
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
    if not value.is_finite() or value < 1 or value != value.to_integral_value() or value > MAX_PARAMS:
        raise BadInput(f"parameter count must be a whole number >= 1 and <= 1e15, got '{s}'; e.g. 70e9 or 1.7e9")
    return int(value)


def _shapes(params: Any) -> list[Shape]:
    return [full_shape(p) for p in params]  # whole shapes, also of ZeRO-3's partitioned parameters


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
        adapter: an option of the adapter config group (`full`, `lora`, `dora`, `pissa`, `ia3`, ...: conf/adapter/).
        r: the rank; None keeps the adapter config's.

    Raises:
        BadInput: an unknown adapter, r < 1, a rank for a method without one (IA3, LN tuning), or a model whose
            config cannot be read.
    """
    return _split_shapes(_adapter_model(model_name_or_path, adapter, r))


def _split_shapes(model: Any) -> tuple[list[Shape], list[Shape]]:
    params = list(model.parameters())
    return _shapes(params), _shapes(p for p in params if p.requires_grad)


def _adapter_model(model_name_or_path: str, adapter: str, r: int | None) -> Any:
    """The meta-device model, with the adapter applied unless `adapter == "full"` (see `adapter_shapes`).

    Raises:
        BadInput: an unknown adapter, a bad rank, or a rank above the largest of the model's weight matrices.
    """
    _check_adapter(adapter, r)
    base = meta_model(model_name_or_path)
    if adapter == "full":
        return base
    if r is not None:  # PEFT allocates the adapter's matrices: a rank past every weight's would ask for terabytes
        most = max((min(p.shape) for p in base.parameters() if p.dim() == 2), default=0)
        if r > most:
            raise BadInput(f"--r {r} is above the largest rank of any weight matrix of {model_name_or_path} ({most}); "
                           f"use --r {most} or less")
    overrides = [f"adapter={adapter}", *([f"adapter.r={r}"] if r is not None else [])]
    return adapter_meta_model(model_name_or_path, from_node(Adapter, plain(compose(overrides).adapter), "adapter"),
                              base=base)


def breakdown(model: int | Sequence[Shape], optimizer: str, precision: str = "fp32",
              trainable: Sequence[Shape] | None = None, options: Mapping[str, Any] | None = None,
              quantized: Sequence[Shape] | None = None) -> MemoryBreakdown:
    """Training memory (weights, gradients, optimizer states, master weights) of one optimizer, in bytes.

    Args:
        model: a parameter count (bare number: per-element figures only, see the module docstring) or the
            shapes of every parameter tensor (exact).
        optimizer: an option of the optimizer config group.
        precision: `fp32`, `bf16-mixed`, `fp16-mixed` or `bf16-true` (`PRECISIONS`; the module docstring gives
            their bytes).
        trainable: shapes of the trainable tensors (an adapter's); None means every parameter trains. Needs
            `model` as shapes.
        options: the optimizer's keyword arguments, as for `state_bytes_analytic`.
        quantized: shapes of frozen weights stored in 4 bits (QLoRA, `nf4_bytes`) instead of the working
            precision; they must be among `model`'s shapes and not trainable. None: no quantized weights.

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
        kind = state_model(optimizer, opts)
        if kind == "adafactor":
            states = model * 4 if opts.get("beta1") is not None else 0
            exact, note = False, "factored second moments need the matrices' shapes: ~0 B/param, a lower bound"
        elif kind == "muon":
            states = model * size["states"]
            exact, note = False, ("which tensors are hidden matrices (Muon, 1 element) needs the shapes: counted as "
                                  "Muon's, a lower bound (AdamW keeps 2 for the rest)")
        else:
            states = tensor_state(kind, (model,), size["states"], opts)[0]
    else:
        shapes = [tuple(s) for s in model]
        trainable = shapes if trainable is None else [tuple(s) for s in trainable]
        n_params, n_trainable = sum(map(math.prod, shapes)), sum(map(math.prod, trainable))
        states = state_bytes_analytic(optimizer, trainable, size["states"], options)
    quantized = [tuple(q) for q in quantized or []]
    n_frozen = n_params - n_trainable - sum(map(math.prod, quantized))
    weights = (n_trainable * size["weights"] + n_frozen * size["frozen"]
               + sum(nf4_bytes(math.prod(q)) for q in quantized))
    gradients = n_trainable * size["gradients"]
    master = n_trainable * size["master"]
    total = weights + gradients + states + master
    return MemoryBreakdown(weights, gradients, states, master, total, total / n_params if n_params else 0.0,
                           exact, note)


def precision_of(dtype: Any) -> str:
    """The `PRECISIONS` key of training in a parameter dtype: float32 -> `fp32`; bfloat16 and float16 ->
    `bf16-true` (2-byte weights, gradients and optimizer states, no master copy: what `rlvr train
    precision=bf16-true` does, since the weights are loaded, and updated, in that dtype).

    Args:
        dtype: a `torch.dtype` or its name (`"float32"`, `"bfloat16"`, `"float16"`).

    Raises:
        BadInput: any other dtype.
    """
    name = str(dtype).removeprefix("torch.")
    if name == "float32":
        return "fp32"
    if name in ("bfloat16", "float16"):
        return "bf16-true"
    raise BadInput(f"no training precision for dtype {name}; use float32, bfloat16 or float16")


def run_memory_analytic(model: Any, optimizer_name: str, precision: str | None = None,
                        options: Mapping[str, Any] | None = None) -> dict[str, int]:
    """The analytic memory figures of a training run, from its live torch model, for its summary.json.

    With `precision=None` (what `rlvr train` uses for fp32 and bf16-true) every parameter counts at its own dtype:
    weights for all parameters, gradients and optimizer states (in the parameter's dtype, as torch creates them)
    for the trainable ones, no master copy. For a model in one dtype that is `precision_of(dtype)`: float32 ->
    `fp32`, bfloat16 or float16 -> `bf16-true` (2-byte weights, gradients and states). A mixed-precision run
    passes its precision, which adds autocast's 16-bit copy of the weights. It also stays exact where dtypes mix:
    PEFT keeps adapter weights in fp32 over a bf16 base, so their gradients and states take 4 bytes.

    Args:
        model: the model as trained (a PEFT model under an adapter): its parameters give every shape, and
            those with `requires_grad` the trainable ones (tied weights once).
        optimizer_name: an option of the optimizer config group.
        precision: None (the parameters' own dtypes), or a `PRECISIONS` key to count every parameter at that
            precision's bytes instead (`breakdown`).
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
        b = breakdown(_shapes(params), optimizer_name, precision, _shapes(trainable),
                      muon_options(optimizer_name, options, trainable, model))
        return {"optimizer_state_bytes_analytic": b.optimizer_states, "memory_analytic_bytes": b.total}
    by_size: dict[int, list[Any]] = {}
    for p in trainable:
        by_size.setdefault(p.element_size(), []).append(p)
    states = sum(state_bytes_analytic(optimizer_name, _shapes(group), size,
                                      muon_options(optimizer_name, options, group, model))
                 for size, group in by_size.items())
    weights = sum(full_numel(p) * p.element_size() for p in params)
    gradients = sum(full_numel(p) * p.element_size() for p in trainable)
    return {"optimizer_state_bytes_analytic": states, "memory_analytic_bytes": weights + gradients + states}


def _check_adapter(adapter: str, r: int | None) -> None:

    adapters = group_options("adapter")
    if adapter not in adapters:
        raise BadInput(f"unknown adapter '{adapter}'; valid adapters: {', '.join(adapters)}")
    if r is not None:
        check_rank(r, "--r")
    if r is not None and adapter == "full":
        raise BadInput("--r is an adapter's rank; --adapter full (every weight trains) has none: add --adapter lora")


#: QLoRA's 4-bit NormalFloat storage (Dettmers et al., "QLoRA", arXiv 2305.14314, section 3; bitsandbytes
#: `quantize_4bit`): two values per byte plus one fp32 absmax per block of 64 values, no double quantization
#: (bitsandbytes' and transformers' default, `bnb_4bit_use_double_quant=False`): 0.5 + 4/64 = 0.5625 B/param.
NF4_BLOCK = 64
NF4_ABSMAX_BYTES = 4


def nf4_bytes(n: int) -> int:
    """Bytes of `n` weights stored in QLoRA's 4-bit NormalFloat (arXiv 2305.14314): ceil(n/2) bytes of 4-bit
    codes plus a 4-byte fp32 absmax per block of `NF4_BLOCK` (64) values, no double quantization."""
    return -(-n // 2) + NF4_ABSMAX_BYTES * -(-n // NF4_BLOCK)


def quantized_shapes(model: Any) -> list[Shape]:
    """Shapes of the weights that a 4-bit QLoRA load quantizes: the frozen `weight` of every `torch.nn.Linear`
    (PEFT's `base_layer`s included) except the input and output embeddings (transformers keeps `lm_head` in
    16 bits); biases, norms and embeddings keep the working precision. Each tensor once."""
    import torch

    skip = {id(e.weight) for e in (model.get_input_embeddings(), model.get_output_embeddings()) if e is not None}
    seen: dict[int, Shape] = {}
    for module in model.modules():
        if isinstance(module, torch.nn.Linear) and not module.weight.requires_grad and id(module.weight) not in skip:
            seen[id(module.weight)] = tuple(module.weight.shape)
    return list(seen.values())


def estimate(model: str, optimizers: Sequence[str] | None = None, precision: str = "bf16-mixed", adapter: str = "full",
             r: int | None = None, plan: Plan | None = None,
             options: Mapping[str, Mapping[str, Any]] | None = None) -> MemoryEstimate:
    """Everything `rlvr memory` prints: parameter counts, one `MemoryBreakdown` per optimizer (the whole run),
    and, per optimizer, one GPU's memory under `plan` (`per_gpu`) with activations from the model's config.

    Every argument is checked before any model config is read.

    Args:
        model: a parameter count (`70e9`, see `parse_model_arg`) or a model (`tiny-random`, `smollm2-135m`, a
            local model directory, a hub id).
        optimizers: options of the optimizer config group; None or empty means all of them.
        precision: `fp32`, `bf16-mixed`, `fp16-mixed` or `bf16-true` (`PRECISIONS`).
        adapter: an option of the adapter config group; `full` trains every weight. Needs a model.
        r: the adapter's rank; None keeps its config's.
        plan: GPUs, sharding, offload, `--gpu-memory`, a 4-bit base, activation settings; None: `Plan()`.
        options: per optimizer name, keyword arguments over its config file's (e.g. `{"adafactor":
            {"beta1": 0.9}}`: Adafactor's first moment), as for `state_bytes_analytic`.

    Raises:
        BadInput: an unknown optimizer, precision or adapter, r < 1, an adapter with a bare count, an
            inconsistent plan (`check_plan`), or a MODEL that is neither a whole number >= 1 nor a readable
            model. One line each.
    """
    plan = plan or Plan()
    options = options or {}
    names = list(optimizers or optimizer_names())
    for name in names:
        check_optimizer(name)
    check_precision(precision)
    _check_adapter(adapter, r)
    check_plan(plan, adapter)
    if adapter != "full" and compose([f"adapter={adapter}"]).adapter.get("optimizer_factory") == "lorafa":
        if optimizers and set(optimizers) != {"adamw"}:  # rlvr train refuses the others (optimizers.build)
            raise BadInput(f"--adapter {adapter} trains with PEFT's LoRA-FA optimizer, an AdamW: use --optimizer adamw")
        names = ["adamw"]
        options = {**options, "adamw": {"state": "lorafa", **(options.get("adamw") or {})}}
    count = parse_model_arg(model)
    if count is not None and adapter != "full":
        raise BadInput("--adapter needs a model (its layer shapes), not a parameter count")
    if count is not None:
        rows = {name: breakdown(count, name, precision, options=options.get(name)) for name in names}
        est = MemoryEstimate(model, count, count, precision, adapter, None, False, rows, plan)
    else:
        built = _adapter_model(model, adapter, r)
        shapes, trainable = _split_shapes(built)
        quantized = quantized_shapes(built) if plan.base_bits == 4 else None
        grads = [p for p in built.parameters() if p.requires_grad]
        rows = {name: breakdown(shapes, name, precision, trainable,
                                muon_options(name, options.get(name), grads, built), quantized) for name in names}
        if adapter != "full" and r is None:
            r = compose([f"adapter={adapter}"]).adapter.get("r")
        act = model_activations(model, plan.seq_len, plan.micro_batch, plan.activation_checkpointing)
        est = MemoryEstimate(model, sum(map(math.prod, shapes)), sum(map(math.prod, trainable)), precision,
                             adapter, r, True, rows, plan, act)
    act_bytes = est.activations.total if est.activations else None
    est.per_gpu = {name: per_gpu(b, plan, act_bytes) for name, b in est.rows.items()}
    return est
