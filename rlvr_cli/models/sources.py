"""What a model argument points at (a preset, a directory, a hub id, a run directory, a sparse delta), resolved
before anything loads, and the loading of it for generation or comparison."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from rlvr_cli.core.errors import BadInput
from rlvr_cli.core.precision import weights_dtype
from rlvr_cli.core.run_dir import RunDir, check_finished, read_summary
from rlvr_cli.models import sparse_delta
from rlvr_cli.models.embedded import EMBEDDED
from rlvr_cli.models.loading import check_model_source, load_model


@dataclass(frozen=True)
class ModelSource:
    """What `rlvr eval MODEL` points at, resolved without loading anything.

    `kind` is `preset` (smollm2-135m, tiny-random), `dir` (a model directory), `hub` (a hub id),
    `sparse-delta` (a sparse-delta checkpoint directory, `rlvr_cli.models.sparse_delta`), or `run-full`,
    `run-adapter` or `run-sparse-delta` (a `rlvr train` run directory and what its final/ holds).
    `path` is what to load (for an adapter or a sparse delta, its directory), `base` the model it
    applies to (set exactly when the weights are rebuilt on a base model, else None), `dtype` the
    run's weight dtype when known.
    """

    spec: str
    kind: str
    path: str
    base: str | None = None
    dtype: str | None = None


def run_dtype(cfg: Any) -> str:
    """The weights dtype of a run from its config: its `precision` (`rlvr_cli.core.precision.weights_dtype`), or
    `model.dtype` for a run directory written before `precision` existed."""
    if "precision" in cfg:
        return weights_dtype(cfg.precision)
    return cfg.model.get("dtype", "float32")


def resolve_model(spec: str) -> ModelSource:
    """Classify MODEL before loading it.

    Raises:
        BadInput: a path that does not exist, or a run directory without saved weights.
    """
    if spec in EMBEDDED:
        return ModelSource(spec, "preset", spec)
    p = Path(spec).expanduser()
    summary = read_summary(p)
    if summary is not None and (p / "config.yaml").is_file():
        check_finished(spec, summary)  # a live run: "still running (pid N on HOST)"; a dead one: "dead"
        cfg = OmegaConf.load(p / "config.yaml")
        status = summary.get("status")
        weights = RunDir(p).weights
        if (weights / "adapter_config.json").is_file():
            return ModelSource(spec, "run-adapter", str(weights), base=cfg.model.name_or_path, dtype=run_dtype(cfg))
        if (weights / "config.json").is_file():
            return ModelSource(spec, "run-full", str(weights), dtype=run_dtype(cfg))
        if sparse_delta.is_sparse_delta(weights):
            meta = sparse_delta.read_meta(weights)
            return ModelSource(spec, "run-sparse-delta", str(weights), base=meta["base"], dtype=meta["dtype"])
        raise BadInput(f"run directory {spec} has no weights in final/ (status: {status}); evaluate another run")
    if sparse_delta.is_sparse_delta(p):
        meta = sparse_delta.read_meta(p)
        return ModelSource(spec, "sparse-delta", str(p), base=meta["base"], dtype=meta["dtype"])
    if p.is_dir():
        return ModelSource(spec, "dir", str(p))
    check_model_source(spec)  # path-like names must exist
    return ModelSource(spec, "hub", spec)


def load_eval_model(source: ModelSource, dtype: str | None = None, with_tokenizer: bool = True) -> tuple[Any, Any]:
    """Load a resolved MODEL for generation; an adapter run is merged into its base model, a sparse delta
    rebuilt on its base (in the dtype it was made in: `dtype` does not apply).

    `dtype` defaults to the run's dtype, else float32 on CPU and bfloat16 on CUDA (float32 for presets);
    `auto` keeps the dtype the checkpoint was stored in. `with_tokenizer=False` loads the weights only.

    Raises:
        BadInput: the model cannot be loaded; a sparse delta's base does not match its recorded hash.
    """
    import torch


    if dtype is None:
        dtype = source.dtype or ("bfloat16" if torch.cuda.is_available() and source.kind != "preset" else "float32")
    if source.kind == "run-adapter":
        from peft import PeftModel

        base, tokenizer = load_model(source.base, dtype, with_tokenizer)
        model = PeftModel.from_pretrained(base, source.path).merge_and_unload()
    elif source.kind.endswith("sparse-delta"):
        model, tokenizer = sparse_delta.load(source.path, with_tokenizer=with_tokenizer)
    else:
        model, tokenizer = load_model(source.path, dtype, with_tokenizer)
    if torch.cuda.is_available():
        model = model.to("cuda")
    return model, tokenizer
