"""One GPU's memory under a plan (`Plan`): how a run's model states (weights, gradients, optimizer states, master
weights, in bytes for the whole run on one device: `rlvr_cli.analysis.memory.breakdown`) spread over the GPUs of
a data-parallel run, sharded as a distributed mode of conf/distributed/ says (`shard_parts`: DDP, ZeRO-1/2/3,
FSDP) and offloaded to CPU (`OFFLOADS`); the
activations of one GPU's micro-batch from the model's config (`activation_bytes`, arXiv 2205.05198); a colocated
vLLM engine's share of each GPU (`Plan.vllm_gpu_memory_utilization`); and whether the GPU's total fits in
`--gpu-memory` (`per_gpu`). What `rlvr memory --num-gpus/--shard/--offload/--gpu-memory/--seq-len/--micro-batch/
--vllm-gpu-memory-utilization` sets, through `rlvr_cli.analysis.memory.estimate`.

The planner knows nothing of optimizers or precisions: it takes the four model-state parts of a breakdown
(`ModelStates`). Computed, not measured; 1 GB = 1e9 bytes.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Protocol

from rlvr_cli.core import modes
from rlvr_cli.core.errors import BadInput
from rlvr_cli.core.groups import group_options
from rlvr_cli.core.modes import Distributed
from rlvr_cli.core.nodes import from_node

#: What a distributed mode shards (`rlvr_cli.core.modes.SHARDABLE`) -> the model-state parts it splits over the GPUs.
#: ZeRO (Rajbhandari et al., "ZeRO: Memory Optimizations Toward Training Trillion Parameter Models", arXiv
#: 1910.02054, section 5): the optimizer state partition holds the fp32 master weights too. FSDP's FULL_SHARD (FSDP2
#: `fully_shard`) splits states, gradients and parameters, as ZeRO-3.
PARTS_OF = {"optimizer_state": ("optimizer_states", "master_weights"), "gradients": ("gradients",),
            "weights": ("weights",)}
#: `--offload` modes: the model-state parts moved to CPU memory, and what a `--shard` mode needs to support it.
#: `optimizer` (DeepSpeed `offload_optimizer`, any ZeRO stage): optimizer states, master weights and the gradient
#: partition the CPU optimizer reads move to CPU (ZeRO-Offload, Ren et al., arXiv 2101.06840: only the 16-bit
#: parameters stay on the GPU). `params` (DeepSpeed `offload_param`, ZeRO-3 only; FSDP `CPUOffload(
#: offload_params=True)`, which has no optimizer-only mode): the parameters too, for modes that shard the weights.
OFFLOADS: dict[str, frozenset[str]] = {
    "none": frozenset(),
    "optimizer": frozenset({"optimizer_states", "master_weights", "gradients"}),
    "params": frozenset({"optimizer_states", "master_weights", "gradients", "weights"}),
}


@functools.cache
def shard_mode(name: str) -> Distributed:
    """The typed `distributed` of `--shard NAME`: a file of conf/distributed/ (`rlvr train distributed=NAME`), so
    that the planner and training share one list of modes and their traits (`rlvr_cli.core.modes`).

    Raises:
        BadInput: no such file (the message lists them, least sharded first).
    """
    from rlvr_cli.core.compose import compose, plain

    if name not in group_options("distributed"):
        raise BadInput(f"unknown --shard '{name}'; valid: {', '.join(shard_names())}")
    return from_node(Distributed, plain(compose([f"distributed={name}"]).distributed), "distributed")


def shard_parts(name: str) -> frozenset[str]:
    """The model-state parts (`PARTS`) that `--shard NAME` splits over the GPUs; the others are replicated.

    Raises:
        BadInput: as `shard_mode`.
    """
    return frozenset(part for s in modes.sharded(shard_mode(name)) for part in PARTS_OF[s])


def shard_names() -> list[str]:
    """The `--shard` modes, least sharded first: one process, then the data-parallel modes by how much they split
    (DeepSpeed's stages before FSDP where they split the same)."""
    names = group_options("distributed")
    dists = {n: shard_mode(n) for n in names}
    return sorted(names, key=lambda n: (modes.multi_process(dists[n]), len(modes.sharded(dists[n])),
                                        modes.backend(dists[n]) == "fsdp", n))


def offload_supported(offload: str, shard: str) -> bool:
    """Whether `--shard SHARD` can `--offload OFFLOAD`: `optimizer` needs DeepSpeed (ZeRO-Offload), `params` a mode
    that shards the weights (ZeRO-3, FSDP).

    Raises:
        BadInput: as `shard_mode`.
    """
    dist = shard_mode(shard)
    if offload == "optimizer":
        return modes.backend(dist) == "deepspeed"
    return offload == "none" or (offload == "params" and modes.shards_weights(dist))


#: The model-state parts a plan places (the byte fields of `ModelStates`).
PARTS = ("weights", "gradients", "optimizer_states", "master_weights")
#: `--base-bits` values: 4, a QLoRA base whose frozen weights are stored in 4-bit NormalFloat
#: (`rlvr_cli.analysis.memory.nf4_bytes`).
BASE_BITS = (4,)
#: The caption line that names the source of the activation figures (`activation_bytes`).
ACTIVATION_SOURCE = ("Activations: Korthikanti et al., \"Reducing Activation Recomputation in Large Transformer "
                     "Models\", arXiv 2205.05198, section 4: per layer s*b*(18h + 4f) + 5*a*s^2*b bytes in 16-bit "
                     "(= s*b*h*(34 + 5*a*s/h) for f = 4h), 2*s*b*h with full checkpointing, + s*b*V*4 fp32 "
                     "logits; attention scores materialised (no FlashAttention), dropout masks counted.")
#: `parse_size` units, in bytes: decimal (1 GB = 1e9) and binary (1 GiB = 2**30).
_SIZE_UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12, "K": 10**3, "M": 10**6,
               "G": 10**9, "T": 10**12, "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}


class ModelStates(Protocol):
    """The whole run's model states on one device, in bytes (int) per part (`PARTS`): what `per_gpu` spreads over
    the GPUs. `rlvr_cli.analysis.memory.MemoryBreakdown` is one."""

    @property
    def weights(self) -> int: ...

    @property
    def gradients(self) -> int: ...

    @property
    def optimizer_states(self) -> int: ...

    @property
    def master_weights(self) -> int: ...


@dataclass(frozen=True)
class Plan:
    """How a run is laid out over GPUs: `num_gpus` (>= 1), `shard` (`SHARDS`), `offload` (`OFFLOADS`),
    `gpu_memory` (bytes per GPU to check against, or None), `base_bits` (4: a QLoRA base; None: the working
    precision), and the activation settings: `seq_len` (tokens per sequence), `micro_batch` (sequences per GPU
    per forward), `activation_checkpointing` (full recomputation of each decoder layer), and
    `vllm_gpu_memory_utilization` (rlvr train generation=vllm_colocate: the share of each GPU a colocated vLLM
    engine reserves for its weights, activations and KV cache, in (0, 1); needs `gpu_memory`; None: no vLLM)."""

    num_gpus: int = 1
    shard: str = "none"
    offload: str = "none"
    gpu_memory: int | None = None
    base_bits: int | None = None
    seq_len: int = 1024
    micro_batch: int = 1
    activation_checkpointing: bool = False
    vllm_gpu_memory_utilization: float | None = None


@dataclass(frozen=True)
class Activations:
    """Activation memory of one GPU's micro-batch, in bytes, and the config figures it came from.

    `layers` (L), `hidden` (h), `heads` (a), `intermediate` (f), `vocab` (V); `per_layer`: bytes kept by one
    decoder layer; `logits`: the fp32 logits; `total` = L * per_layer + logits (`activation_bytes`)."""

    layers: int
    hidden: int
    heads: int
    intermediate: int
    vocab: int
    seq_len: int
    micro_batch: int
    checkpointing: bool
    per_layer: int
    logits: int
    total: int


@dataclass(frozen=True)
class GpuMemory:
    """Memory of one GPU (and the CPU memory its offloaded share takes), in bytes, for one optimizer.

    `weights`, `gradients`, `optimizer_states`, `master_weights`: what stays on the GPU, each sharded as the
    plan's stage shards it (rounded up to whole bytes). `activations`: None when unknown (a bare count).
    `total`: the GPU's sum (activations counted when known). `cpu`: bytes this GPU's rank offloads to CPU;
    `cpu_total`: over all GPUs. `fits`: `total <= gpu_memory`, None without `--gpu-memory`. `vllm`: the bytes a
    colocated vLLM engine reserves on the GPU (`ceil(vllm_gpu_memory_utilization * gpu_memory)`, in `total`), None
    without it."""

    weights: int
    gradients: int
    optimizer_states: int
    master_weights: int
    activations: int | None
    total: int
    cpu: int
    cpu_total: int
    fits: bool | None = None
    vllm: int | None = None


#: The largest `--gpu-memory`: 1 PB (1e15 bytes), some 7,000 times a 141 GB H200.
MAX_GPU_MEMORY = 10**15


def parse_size(s: str) -> int:
    """A memory size in bytes: `80GB`, `80G`, `80e9` (decimal, 1 GB = 1e9 bytes), `80GiB` (binary, 2**30),
    `141 GB`; a bare number is bytes.

    Args:
        s: the size as typed (`--gpu-memory`); case, spaces, `_` and `,` do not matter.

    Raises:
        BadInput: not a size, not > 0, or above `MAX_GPU_MEMORY`.
    """
    text = s.strip().replace("_", "").replace(",", "").replace(" ", "").upper()
    number = text.rstrip("KMGTIB")
    unit = text[len(number):]
    try:
        value = Decimal(number) * _SIZE_UNITS[unit]
    except (InvalidOperation, KeyError):
        value = None
    if value is None or not value.is_finite() or value <= 0 or value > MAX_GPU_MEMORY:
        raise BadInput(f"--gpu-memory must be a size such as 80GB, 80GiB or 80e9 (bytes), at most 1PB, got '{s}'")
    return int(value)


def check_plan(plan: Plan, adapter: str = "full") -> None:
    """Raises `BadInput` (one line) unless the plan is consistent: num_gpus >= 1, a known `--shard` and
    `--offload`, an offload that the shard mode supports (`offload_supported`), more than one GPU only with a
    data-parallel mode, `--base-bits 4` only with an adapter, seq_len and micro_batch >= 1, a vLLM share
    (`--vllm-gpu-memory-utilization`) in (0, 1) and only with `--gpu-memory`.

    Args:
        plan: the plan to check.
        adapter: the run's adapter option (`full`: every weight trains, so no frozen base to quantize).
    """
    if plan.num_gpus < 1:
        raise BadInput(f"--num-gpus must be an integer >= 1, got {plan.num_gpus}")
    dist = shard_mode(plan.shard)
    if plan.offload not in OFFLOADS:
        raise BadInput(f"unknown --offload '{plan.offload}'; valid: {', '.join(OFFLOADS)}")
    if not offload_supported(plan.offload, plan.shard):
        supported = [n for n in shard_names() if offload_supported(plan.offload, n)]
        fsdp = modes.backend(dist) == "fsdp"
        raise BadInput(f"--offload {plan.offload} needs --shard {' or '.join(supported)}, got --shard {plan.shard}"
                       + ("; FSDP offloads parameters only: use --offload params" if fsdp else ""))
    if plan.num_gpus > 1 and not modes.multi_process(dist):
        parallel = [n for n in shard_names() if modes.multi_process(shard_mode(n))]
        raise BadInput(f"--num-gpus {plan.num_gpus} needs a data-parallel mode: --shard {', '.join(parallel[:-1])} or "
                       f"{parallel[-1]}")
    if plan.base_bits is not None and plan.base_bits not in BASE_BITS:
        raise BadInput(f"--base-bits must be 4 (a QLoRA base), got {plan.base_bits}")
    if plan.base_bits is not None and adapter == "full":
        raise BadInput("--base-bits 4 quantizes the frozen base under an adapter: add --adapter lora (and a model)")
    for name, value in (("--seq-len", plan.seq_len), ("--micro-batch", plan.micro_batch)):
        if value < 1:
            raise BadInput(f"{name} must be an integer >= 1, got {value}")
    u = plan.vllm_gpu_memory_utilization
    if u is not None and not 0 < u < 1:
        raise BadInput(f"--vllm-gpu-memory-utilization must be in (0, 1) (the share of each GPU vLLM reserves; "
                       f"training needs the rest), got {u}; e.g. --vllm-gpu-memory-utilization 0.3")
    if u is not None and plan.gpu_memory is None:
        raise BadInput("--vllm-gpu-memory-utilization is a share of --gpu-memory: add --gpu-memory, e.g. 80GB")


def activation_bytes(layers: int, hidden: int, heads: int, intermediate: int, vocab: int, seq_len: int,
                     micro_batch: int, checkpointing: bool = False) -> tuple[int, int]:
    """`(per decoder layer, logits)` activation bytes of one micro-batch, from Korthikanti et al., "Reducing
    Activation Recomputation in Large Transformer Models" (arXiv 2205.05198), section 4 (activation memory).

    Without recomputation a layer keeps s*b*h*(34 + 5*a*s/h) bytes: attention 11sbh + 5as^2b, MLP 19sbh,
    two layer norms 4sbh. The MLP's 19sbh is 3sbh + 4*s*b*(4h); here 4h is the config's intermediate size f,
    so a layer keeps s*b*(18h + 4f) + 5*a*s^2*b (the paper's figure when f = 4h). With full activation
    checkpointing a layer keeps its 16-bit input, 2*s*b*h (the paper's full-recomputation figure). The logits
    are s*b*V*4 bytes (fp32).

    Assumptions (the paper's): 16-bit activations, no tensor or sequence parallelism, attention scores and
    softmax materialised (an upper bound under FlashAttention / SDPA, which keep no a*s^2 tensors), a 1-byte
    dropout mask per dropout, a two-matrix MLP (a gated MLP such as SwiGLU keeps two more 16-bit s*b*f
    tensors, 4*s*b*f bytes, not counted), all heads for keys and values (grouped-query attention keeps less).
    Not counted: the one layer recomputed at a time under checkpointing, the loss's temporaries, GRPO's
    reference-model forward.

    Args:
        layers (L), hidden (h), heads (a), intermediate (f), vocab (V): from the model's config.
        seq_len (s): tokens per sequence. micro_batch (b): sequences per GPU per forward.
        checkpointing: full activation checkpointing of each decoder layer.

    Returns:
        Bytes per decoder layer and bytes of the logits (ints).
    """
    s, b, h, a, f = seq_len, micro_batch, hidden, heads, intermediate
    per_layer = 2 * s * b * h if checkpointing else s * b * (18 * h + 4 * f) + 5 * a * s * s * b
    return per_layer, s * b * vocab * 4


def model_activations(model_name_or_path: str, seq_len: int = 1024, micro_batch: int = 1,
                      checkpointing: bool = False) -> Activations | None:
    """`activation_bytes` for a model, from its config (`num_hidden_layers`, `hidden_size`,
    `num_attention_heads`, `intermediate_size` (4 * hidden when unset), `vocab_size`; the text config of a
    multimodal model). None when the config lacks one of them.

    Raises:
        BadInput: the model's config cannot be read.
    """
    from rlvr_cli.models.loading import load_config

    config = load_config(model_name_or_path)
    config = config.get_text_config() if hasattr(config, "get_text_config") else config
    keys = ("num_hidden_layers", "hidden_size", "num_attention_heads", "vocab_size")
    values = [getattr(config, k, None) for k in keys]
    if not all(isinstance(v, int) for v in values):
        return None
    layers, hidden, heads, vocab = values
    intermediate = getattr(config, "intermediate_size", None) or 4 * hidden
    per_layer, logits = activation_bytes(layers, hidden, heads, intermediate, vocab, seq_len, micro_batch,
                                         checkpointing)
    return Activations(layers, hidden, heads, intermediate, vocab, seq_len, micro_batch, checkpointing, per_layer,
                       logits, layers * per_layer + logits)


def per_gpu(b: ModelStates, plan: Plan, activations: int | None = None) -> GpuMemory:
    """One GPU's share of a run's model states (`b`, the whole run on one device) under `plan`, in bytes.

    Each part in `shard_parts(plan.shard)` is divided over `plan.num_gpus` GPUs (rounded up; DeepSpeed's alignment
    padding is not counted), the others are replicated. Parts in `OFFLOADS[plan.offload]` move to CPU,
    partitioned (ZeRO-1 with offload moves its rank's gradient partition only): this GPU's share is `cpu`.
    The GPU's `total` adds `activations` (bytes of one GPU's micro-batch, not sharded: data parallelism splits
    the batch, not the sequences). Under ZeRO-3 / FSDP the layer gathered whole on the GPU while it runs is not
    counted (DeepSpeed's estimator adds 4 B per parameter of the largest layer), nor are communication buckets.

    Args:
        b: the whole run's model states on one device, in bytes (`ModelStates`, e.g. a
            `rlvr_cli.analysis.memory.MemoryBreakdown`).
        plan: the layout, checked by `check_plan`.
        activations: bytes of one GPU's micro-batch activations (`Activations.total`), or None when unknown.

    Returns:
        a `GpuMemory`, in bytes.
    """
    n, sharded, moved = plan.num_gpus, shard_parts(plan.shard), OFFLOADS[plan.offload]
    share = {part: -(-getattr(b, part) // n) if part in sharded | moved else getattr(b, part) for part in PARTS}
    gpu = {part: 0 if part in moved else share[part] for part in PARTS}
    cpu = sum(share[part] for part in moved)
    # A colocated vLLM engine (TRL vllm_mode="colocate") takes its share of every GPU for itself (vLLM's
    # gpu_memory_utilization: https://docs.vllm.ai/en/latest/configuration/engine_args.html); training gets the rest.
    u = plan.vllm_gpu_memory_utilization
    vllm = None if u is None or plan.gpu_memory is None else math.ceil(Decimal(repr(u)) * plan.gpu_memory)
    total = sum(gpu.values()) + (activations or 0) + (vllm or 0)
    fits = None if plan.gpu_memory is None else total <= plan.gpu_memory
    return GpuMemory(gpu["weights"], gpu["gradients"], gpu["optimizer_states"], gpu["master_weights"], activations,
                     total, cpu, cpu * n, fits, vllm)
