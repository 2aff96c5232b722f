"""A run's final weights: saved as `save_format` says (`save_weights`: the whole model or adapter, or a sparse delta
against the base model), the update sparsity of sharded runs measured on the gathered weights (`sharded_sparsity`),
and the model the end-of-training evaluation samples from (`eval_model`). Called by `rlvr_cli.training.recipe`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rlvr_cli.core.run_config import RunConfig
from rlvr_cli.models import sparse_delta
from rlvr_cli.models.loading import load_model
from rlvr_cli.models.parameters import state_dict
from rlvr_cli.training import parallelism
from rlvr_cli.training.callbacks import SHARDED, UpdateSparsity


def save_weights(cfg: RunConfig, trainer: Any, tokenizer: Any, out: Path,
                 gathered: dict[str, Any] | None = None, run_axes: Sequence[Any] = (),
                 context: Any = None) -> dict[str, Any]:
    """Save the final weights into `out` as `cfg.save_format` says: `full` (the adapter for PEFT runs, else the
    whole model, with the tokenizer) or `sparse_delta` (`rlvr_cli.models.sparse_delta`: the entries that differ from
    the base model reloaded in the run's dtype).

    Args:
        gathered: the whole weights of a ZeRO-3 or FSDP run (`parallelism.gathered_state`), else None: the model
            then holds them.
        run_axes: the run's axes (`rlvr_cli.training.axes.Axis`): each one's `on_save` runs after a `full` save
            (PiSSA and MiLoRA convert their adapter to apply to the original base).
        context: what their hooks are given (`rlvr_cli.training.axes.RunContext`).

    Returns:
        `weights_dir`, `weights_bytes` (the .safetensors files written, bytes) and `full_weights_bytes` (the
        tensor bytes of the whole model: what a full checkpoint holds); `{}` on the other ranks of a launch,
        where only the main process writes (`trainer.save_model` is still called there: ZeRO-3 and FSDP gather
        the weights on every rank).
    """
    if not trainer.args.should_save:  # another rank than the main process: save_model does its share (FSDP)
        if cfg.save_format != "sparse_delta":
            trainer.save_model(str(out))
        return {}
    trained = state_dict(trainer.model) if gathered is None else gathered
    if cfg.save_format == "sparse_delta":
        with parallelism.whole_loading(trainer.args):
            base = state_dict(load_model(cfg.model.name_or_path, trained_dtype(trained))[0])
        trained = {k: trained[k] for k in base} if gathered is not None else trained  # tied weights once
        sparse_delta.save(trained, base, cfg.model.name_or_path, out)
        tokenizer.save_pretrained(out)
    else:
        trainer.save_model(str(out))
        for axis in run_axes:
            axis.on_save(trainer.model, context, out)
    return {"weights_dir": str(out), "weights_format": cfg.save_format,
            "weights_bytes": sum(f.stat().st_size for f in out.glob("*.safetensors")),
            "full_weights_bytes": sparse_delta.full_bytes(trained)}


def eval_model(trainer: Any, identity: dict[str, Any]) -> Any:
    """The model the final evaluation samples from: the trained model itself, or, where its weights are sharded
    over the processes (ZeRO-3, FSDP) and the main process evaluates alone, the saved final weights loaded whole
    (`identity`: `kind`, `path`, `base`, `dtype` of the run's weights, as `rlvr eval RUN` loads them)."""
    if not parallelism.shards_weights(trainer):
        return trainer.model
    from rlvr_cli.models.sources import ModelSource, load_eval_model

    source = ModelSource(identity["spec"], identity["kind"], identity["path"],
                         base=identity["base"] if identity["kind"] == "run-adapter" else None, dtype=identity["dtype"])
    return load_eval_model(source, with_tokenizer=False)[0]  # called inside parallelism.whole_loading


def sharded_sparsity(cfg: RunConfig, sparsity: UpdateSparsity, gathered: dict[str, Any], step: int,
                     adapter: Any, args: Any) -> None:
    """Update sparsity of a ZeRO-3 or FSDP run, measured once at the end on the main process: the gathered final
    weights against the base model reloaded in the run's dtype (`UpdateSparsity.measure_states`). An adapter run is
    not measured (the gathered adapter has other names than the base), and `sparsity.skipped` says so."""
    if adapter is not None:
        sparsity.skipped = f"{SHARDED}; not for adapter runs"
        return
    with parallelism.whole_loading(args):
        base = state_dict(load_model(cfg.model.name_or_path, trained_dtype(gathered))[0])
    sparsity.measure_states(base, {k: gathered[k] for k in base}, step)


def trained_dtype(state: dict[str, Any]) -> str:
    """The dtype the trained weights are in (`float32`, `bfloat16`): the precision's weights dtype, except under
    DeepSpeed, whose bf16 mode (`bf16-mixed` there) keeps 16-bit working weights and the fp32 master copy in its
    optimizer; the base model a sparse delta or update sparsity compares against is loaded in it."""
    return str(next(iter(state.values())).dtype).removeprefix("torch.")
