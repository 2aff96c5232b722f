"""Sparse-delta checkpoints: a fine-tuned model stored as the entries that differ from its base model.

A run that changes 0.01% of an 8B model need not store 16 GB. A sparse-delta checkpoint is a
directory with

    sparse_delta.safetensors   per changed tensor either `<name>/indices` (int32, or int64 beyond 2^31
                               entries: flat positions) and `<name>/values` (the new values, in the run's
                               dtype), or `<name>/dense` when storing the whole tensor is smaller
    sparse_delta.json          format, the base model (`name_or_path`), the dtype the base is cast to,
                               the SHA-256 of the base weights in that dtype, and the sizes

"Differ" is bitwise (the bit patterns of the two values), so loading rebuilds the trained weights bit
for bit; a base whose hash does not match is refused. Untouched tensors are not stored at all.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rlvr_cli.core.errors import BadInput, one_line
from rlvr_cli.models.loading import load_model
from rlvr_cli.models.parameters import check_compatible, state_dict

if TYPE_CHECKING:
    import torch

FORMAT = "rlvr-sparse-delta/1"
TENSORS = "sparse_delta.safetensors"
META = "sparse_delta.json"


def is_sparse_delta(path: str | Path) -> bool:
    """True when `path` is a directory holding a sparse-delta checkpoint."""
    return (Path(path) / META).is_file()


def read_meta(path: str | Path) -> dict[str, Any]:
    """The `sparse_delta.json` of a checkpoint.

    Raises:
        BadInput: the file is missing, or names another format.
    """
    file = Path(path) / META
    if not file.is_file():
        raise BadInput(f"{path} is not a sparse-delta checkpoint (no {META})")
    meta = json.loads(file.read_text())
    if meta.get("format") != FORMAT:
        raise BadInput(f"{file}: format {meta.get('format')!r} is not {FORMAT}")
    return meta


def _bits(t: torch.Tensor) -> torch.Tensor:
    """The tensor's bit patterns as integers of the same width (so NaNs and -0.0 compare by bits)."""
    import torch

    return t.view({8: torch.int64, 4: torch.int32, 2: torch.int16, 1: torch.uint8}[t.element_size()])


def weights_sha256(state: dict[str, torch.Tensor]) -> str:
    """SHA-256 over a state dict: for each name in sorted order, the name, dtype, shape and raw bytes."""
    import torch

    h = hashlib.sha256()
    for name in sorted(state):
        t = state[name].detach().to("cpu").contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def full_bytes(state: dict[str, torch.Tensor]) -> int:
    """Bytes of tensor data a full checkpoint of `state` holds (safetensors adds only a small header)."""
    return sum(t.numel() * t.element_size() for t in state.values())


def save(trained: dict[str, torch.Tensor], base: dict[str, torch.Tensor], base_name: str, out_dir: Path) -> dict:
    """Write the entries of `trained` that differ bitwise from `base` into `out_dir`.

    Args:
        trained: the fine-tuned state dict (`rlvr_cli.models.parameters.state_dict` of the model).
        base: the base model's state dict, same names, shapes and dtypes (the base loaded in the run's dtype).
        base_name: the base model's `name_or_path` (an embedded name, a directory or a hub id).
        out_dir: created if needed.

    Returns:
        The metadata written to `sparse_delta.json`: `base`, `dtype`, `base_sha256`, `n_params`,
        `n_changed` (entries), `tensors_changed`, `bytes` (the .safetensors file), `full_bytes`.

    Raises:
        BadInput: the state dicts differ in names, shapes or dtypes.
    """
    import torch
    from safetensors.torch import save_file


    check_compatible(base, trained)
    tensors: dict[str, torch.Tensor] = {}
    n_changed = 0
    for name, t in trained.items():
        b = base[name]
        if t.dtype != b.dtype:
            raise BadInput(f"dtype mismatch at {name}: trained {t.dtype} vs base {b.dtype}; load the base in the "
                           f"run's dtype")
        t = t.detach().to("cpu").contiguous().reshape(-1)
        idx = (_bits(t) != _bits(b.detach().to("cpu").contiguous().reshape(-1))).nonzero().reshape(-1)
        if idx.numel() == 0:
            continue
        n_changed += idx.numel()
        index_dtype = torch.int32 if t.numel() < 2**31 else torch.int64
        sparse_size = idx.numel() * (index_dtype.itemsize + t.element_size())
        if sparse_size < t.numel() * t.element_size():
            tensors[f"{name}/indices"] = idx.to(index_dtype)
            tensors[f"{name}/values"] = t[idx].clone()
        else:
            tensors[f"{name}/dense"] = t.clone()
    dtype = str(next(iter(base.values())).dtype).removeprefix("torch.")  # load_model gives one dtype to all
    meta = {"format": FORMAT, "base": base_name, "dtype": dtype,
            "base_sha256": weights_sha256(base), "n_params": sum(t.numel() for t in base.values()),
            "n_changed": n_changed, "tensors_changed": len({k.rsplit("/", 1)[0] for k in tensors}),
            "full_bytes": full_bytes(trained)}
    out_dir.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(out_dir / TENSORS), metadata={"format": FORMAT, "base_sha256": meta["base_sha256"]})
    meta["bytes"] = (out_dir / TENSORS).stat().st_size
    (out_dir / META).write_text(json.dumps(meta, indent=2) + "\n")
    return meta


def apply(base: dict[str, torch.Tensor], path: str | Path) -> None:
    """Rebuild the trained weights in place: write the checkpoint's entries into `base` (the base model's
    live tensors, e.g. `rlvr_cli.models.parameters.state_dict(model)`), after checking the base's hash.

    Raises:
        BadInput: the base's SHA-256 differs from the one recorded (another model, another dtype, or a changed
            checkpoint), or a stored tensor is not in the base.
    """
    import torch
    from safetensors.torch import load_file

    meta = read_meta(path)
    digest = weights_sha256(base)
    if digest != meta["base_sha256"]:
        raise BadInput(f"{path} was made against {meta['base']} ({meta['dtype']}, sha256 {meta['base_sha256'][:12]}); "
                       f"the base given has sha256 {digest[:12]}: refusing to rebuild on a different base")
    try:
        stored = load_file(str(Path(path) / TENSORS))
    except Exception as e:
        if type(e).__name__ != "SafetensorError":
            raise
        raise BadInput(f"cannot read {Path(path) / TENSORS}: damaged (truncated or not safetensors: {one_line(e)}); "
                       "save or train it again") from None
    with torch.no_grad():
        for key, value in stored.items():
            name, part = key.rsplit("/", 1)
            if name not in base:
                raise BadInput(f"{path}: tensor {name} is not in the base model")
            flat = base[name].view(-1)
            if part == "dense":
                flat.copy_(value.to(flat.device))
            elif part == "indices":
                flat[value.to(flat.device).long()] = stored[f"{name}/values"].to(flat.device)


def load(path: str | Path, base: str | None = None, with_tokenizer: bool = True) -> tuple[Any, Any]:
    """Load a sparse-delta checkpoint as a model: its base model (or `base`), cast to the recorded dtype,
    with the stored entries written in. Returns `(model, tokenizer)` (tokenizer None without `with_tokenizer`);
    the model is bit-identical to the trained one.

    Raises:
        BadInput: not a checkpoint, the base cannot be loaded, or its hash does not match.
    """

    meta = read_meta(path)
    model, tokenizer = load_model(base or meta["base"], meta["dtype"], with_tokenizer)
    apply(state_dict(model), path)
    return model, tokenizer
