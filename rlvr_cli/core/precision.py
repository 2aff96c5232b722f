"""Training precision: the dtype the weights are kept in and the dtype the matrix products run in, under one name.

    precision   weights (and gradients, optimizer states)   compute (matrix products)      TrainingArguments
    fp32        float32                                     float32                        -
    bf16-mixed  float32                                     bfloat16 (torch autocast)      bf16=True
    fp16-mixed  float32                                     float16 (autocast, loss scaling) fp16=True (CUDA only)
    bf16-true   bfloat16                                    bfloat16                       bf16=True
    auto        bf16-mixed where the hardware has fast bf16, else fp32 (`resolve`)

The names are PyTorch Lightning's (https://lightning.ai/docs/pytorch/stable/common/precision_basic.html).
`bf16-mixed` is what TRL and verl train with by default (TRL's `GRPOConfig(bf16=True)` over fp32 weights; verl's
FSDP mixed precision keeps fp32 parameters and computes in bf16), with the update sparsity of fp32 weights; on GPUs
its matrix products run on bf16 tensor cores. `bf16-true` stores the weights themselves in bfloat16 (half the weight
memory; the regime of the bf16 update-sparsity figures of arXiv 2505.11711, where bf16 rounding absorbs small
updates). Measured on a 2-core CPU with AMX (SmolLM2-135M, the demo's settings; docs/benchmarks/training.md):
fp32 5.7 s, bf16-mixed 5.5 s and bf16-true 3.9 s per optimizer step.
"""

from __future__ import annotations

from dataclasses import dataclass

from rlvr_cli.core.errors import BadInput

#: precision name -> (weights dtype, compute dtype), torch dtype names.
DTYPES: dict[str, tuple[str, str]] = {
    "fp32": ("float32", "float32"),
    "bf16-mixed": ("float32", "bfloat16"),
    "fp16-mixed": ("float32", "float16"),
    "bf16-true": ("bfloat16", "bfloat16"),
}
#: The values of the `precision` key: the fixed precisions and `auto`.
PRECISIONS = ("auto", *DTYPES)
#: The old weights-dtype key `model.dtype` -> the precision that keeps those weights.
FROM_MODEL_DTYPE = {"float32": "fp32", "bfloat16": "bf16-true", "float16": "fp16-mixed"}


@dataclass(frozen=True)
class Precision:
    """A resolved precision (never `auto`): `name` (a key of `DTYPES`), `weights_dtype` (the dtype of the weights,
    their gradients and the optimizer states: `float32` or `bfloat16`), `compute_dtype` (of the matrix products:
    `float32`, `bfloat16` or `float16`), `requested` (what the config said, e.g. `auto`) and `why` (how `auto`
    chose, e.g. `CUDA GPU with bf16`; empty for a fixed choice)."""

    name: str
    weights_dtype: str
    compute_dtype: str
    requested: str
    why: str = ""

    def trainer_fields(self) -> dict[str, bool]:
        """transformers `TrainingArguments` fields: `bf16` / `fp16` turn on autocast (and, for fp16, loss scaling)
        over the weights as loaded. https://huggingface.co/docs/transformers/main_classes/trainer#transformers.TrainingArguments"""
        return {"bf16": self.compute_dtype == "bfloat16", "fp16": self.compute_dtype == "float16"}

    @property
    def accelerate_name(self) -> str:
        """accelerate's `mixed_precision` of an `accelerate_config.yaml`: `no`, `bf16` or `fp16`."""
        return {"float32": "no", "bfloat16": "bf16", "float16": "fp16"}[self.compute_dtype]

    def summary(self) -> dict[str, str]:
        """The keys summary.json records: `precision`, `precision_requested`, `weights_dtype`, `compute_dtype`."""
        return {"precision": self.name, "precision_requested": self.requested, "weights_dtype": self.weights_dtype,
                "compute_dtype": self.compute_dtype}


def check(name: str) -> None:
    """Raises `BadInput` naming the valid precisions unless `name` is one of `PRECISIONS`."""
    if name not in PRECISIONS:
        raise BadInput(f"precision must be one of {', '.join(PRECISIONS)}, got {name!r}; e.g. precision=bf16-mixed")


def weights_dtype(name: str) -> str:
    """The dtype a run of precision `name` keeps its weights in, without looking at the hardware: `auto` always
    resolves to fp32 weights (bf16-mixed or fp32), so its weights are `float32`.

    Raises:
        BadInput: an unknown precision (`check`).
    """
    check(name)
    return "float32" if name == "auto" else DTYPES[name][0]


def fast_bf16(cuda: bool | None = None) -> tuple[bool, str]:
    """Whether the device a run trains on has fast bfloat16 matrix products, and what was seen.

    CUDA: `torch.cuda.is_bf16_supported()` (Ampere and newer). CPU: torch's CPU capability probes for AVX512-BF16
    or AMX tiles (`torch.cpu._is_avx512_bf16_supported`, `torch.cpu._is_amx_tile_supported`; oneDNN runs bf16
    matmuls on them, https://www.intel.com/content/www/us/en/developer/articles/technical/pytorch-on-xeon-processors-with-amx.html).

    Args:
        cuda: whether the run trains on a CUDA GPU; default `torch.cuda.is_available()`.

    Returns:
        `(fast, description)`, e.g. `(True, "CPU with AMX")`.
    """
    import torch

    cuda = torch.cuda.is_available() if cuda is None else cuda
    if cuda:
        return (bool(torch.cuda.is_bf16_supported()), "CUDA GPU with bf16" if torch.cuda.is_bf16_supported()
                else "CUDA GPU without bf16")
    probes = {"AMX": "_is_amx_tile_supported", "AVX512-BF16": "_is_avx512_bf16_supported"}
    found = [name for name, fn in probes.items() if getattr(torch.cpu, fn, lambda: False)()]
    return (bool(found), f"CPU with {' and '.join(found)}" if found else "CPU without AVX512-BF16 or AMX")


def resolve(name: str, cuda: bool | None = None) -> Precision:
    """The precision a run trains in on this machine.

    Args:
        name: the `precision` key: one of `PRECISIONS`.
        cuda: whether the run trains on a CUDA GPU; default `torch.cuda.is_available()`.

    Raises:
        BadInput: an unknown name; `fp16-mixed` without CUDA (transformers' fp16 autocast with loss scaling needs a
            GPU); `bf16-true` or `bf16-mixed` on a GPU without bf16 (pre-Ampere: use fp16-mixed or fp32).
    """
    import torch

    check(name)
    cuda = torch.cuda.is_available() if cuda is None else cuda
    requested, why = name, ""
    if name == "auto":
        fast, why = fast_bf16(cuda)
        name = "bf16-mixed" if fast else "fp32"
    elif name == "fp16-mixed" and not cuda:
        raise BadInput("precision=fp16-mixed needs a CUDA GPU (fp16 autocast with loss scaling); on a CPU use "
                       "precision=bf16-mixed or precision=fp32")
    elif name.startswith("bf16") and cuda and not fast_bf16(True)[0]:
        raise BadInput(f"precision={name} needs a GPU with bf16 (Ampere or newer) and this one has none; use "
                       "precision=fp16-mixed or precision=fp32")
    weights, compute = DTYPES[name]
    return Precision(name, weights, compute, requested, why)
