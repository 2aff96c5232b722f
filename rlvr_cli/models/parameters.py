"""Parameters of a model by name: state dicts (each storage once), shapes on the meta device, counts, and which
parameters are the hidden weight matrices that Muon updates (`is_matrix`, `muon_matrices`: used by
`optimizer=muon` in `rlvr_cli.optimizers.build` and by its memory model in `rlvr_cli.analysis.memory`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from rlvr_cli.core.errors import BadInput, one_line
from rlvr_cli.models.loading import load_config

if TYPE_CHECKING:
    import torch


def check_compatible(base: dict[str, torch.Tensor], target: dict[str, torch.Tensor]) -> None:
    """Same parameter names and shapes on both sides.

    Raises:
        BadInput: naming the first parameter missing on one side, or the first shape mismatch.
    """
    only_base, only_target = sorted(set(base) - set(target)), sorted(set(target) - set(base))
    if only_base or only_target:
        side, names = ("TARGET", only_base) if only_base else ("BASE", only_target)
        raise BadInput(f"BASE and TARGET are different architectures: {len(names)} parameters missing from {side}, "
                       f"e.g. {names[0]}")
    for name, t in base.items():
        if t.shape != target[name].shape:
            raise BadInput(f"BASE and TARGET differ in shape at {name}: {tuple(t.shape)} vs "
                           f"{tuple(target[name].shape)}")


def state_dict(model: Any) -> dict[str, torch.Tensor]:
    """A model's parameters and buffers by name, each storage once (tied weights keep their first name, as
    safetensors checkpoints do); non-float buffers (e.g. position ids) are left out."""
    seen: set[int] = set()
    out = {}
    for name, t in model.state_dict().items():
        if not t.is_floating_point() or t.data_ptr() in seen:
            continue
        seen.add(t.data_ptr())
        out[name] = t
    return out


def architecture(source: Any) -> dict[str, torch.Tensor]:
    """The parameters of what an `evaluation.ModelSource` points at, built from its config on the meta device
    (shapes only, nothing loaded): the run's saved config for a full run, else the base model's for an adapter
    or a sparse delta.

    Raises:
        BadInput: no config can be read.
    """

    return dict(meta_model(source.base or source.path).named_parameters())


def meta_model(model_name_or_path: str) -> Any:
    """The model built from its config on the meta device: shapes, no weights, no memory.

    Raises:
        BadInput: no config can be read for `model_name_or_path` (not a model directory, and the hub did not
            serve it).
    """
    import torch
    from transformers import AutoModelForCausalLM

    config = load_config(model_name_or_path)
    try:
        with torch.device("meta"):
            return AutoModelForCausalLM.from_config(config)
    except (OSError, ValueError, KeyError) as e:  # an architecture transformers has no causal-LM class for
        raise BadInput(f"cannot build model '{model_name_or_path}' from its config: {one_line(e)}") from None


def full_shape(p: torch.Tensor) -> tuple[int, ...]:
    """A parameter's whole shape, also when DeepSpeed ZeRO-3 holds only this rank's slice of it (its `ds_shape`,
    https://deepspeed.readthedocs.io/en/latest/zero3.html; the tensor itself is then empty)."""
    return tuple(int(d) for d in getattr(p, "ds_shape", p.shape))


def full_numel(p: torch.Tensor) -> int:
    """A parameter's whole number of entries (`ds_numel` under ZeRO-3, else `numel()`)."""
    return int(getattr(p, "ds_numel", p.numel()))


def count_params(model: Any) -> tuple[int, int]:
    """`(trainable, total)` parameter counts of a model (tied weights counted once; whole parameters under
    ZeRO-3, not this rank's slices)."""
    params = list(model.parameters())
    return sum(full_numel(p) for p in params if p.requires_grad), sum(full_numel(p) for p in params)


def is_matrix(shape: Sequence[int]) -> bool:
    """Whether Muon orthogonalises a tensor of this shape: 2-D with both dimensions > 1. A 2-D tensor with a
    dimension of 1 is a vector (IA3's scaling vectors `[out, 1]`, AdaLoRA's `lora_E` `[r, 1]`, LoRA factors at
    r = 1), for which Newton-Schulz would only normalise the update: AdamW takes it, with the 1-D tensors.

    Args:
        shape: a tensor's whole shape (ints; `full_shape` for a ZeRO-3 slice).
    """
    return len(shape) == 2 and min(shape) > 1


def muon_matrices(model: Any) -> list[Any]:
    """The trainable parameters that `optimizer=muon` gives to Muon (Jordan et al. 2024,
    https://kellerjordan.github.io/posts/muon/): the 2-D hidden weight matrices (`is_matrix`), not the input
    embedding or the output head (tied or not), which AdamW takes with the rest. Each tensor once, in
    `model.parameters()` order.

    Args:
        model: a torch model (a PEFT model too; on the meta device too).

    Returns:
        the parameters (torch tensors, not copies).
    """
    skip = {id(e.weight) for e in (model.get_input_embeddings(), model.get_output_embeddings())
            if e is not None and getattr(e, "weight", None) is not None}
    return [p for p in model.parameters() if p.requires_grad and is_matrix(full_shape(p)) and id(p) not in skip]
