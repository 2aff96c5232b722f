"""Every axis of a run behind one protocol: `Axis`, the same few hooks for each (the checks before any model loads,
the TRL `GRPOConfig` fields, the trainer class, a hook after the model loads, a hook on save, the summary's fields).
`rlvr_cli.training.recipe` loops over `run_axes(cfg)` and names no optimizer, adapter or backend.

The built-in axes (`BUILT_IN`) wire rlvr's generic code: the adapter's checks, initialisation and converted save
(`rlvr_cli.models.adapters`: PEFT, residual-base adapters such as PiSSA and MiLoRA), and the trainer fields of the
distributed mode (`rlvr_cli.training.parallelism`) and of the generation backend (`rlvr_cli.training.generation`).
The optimizer is built by `rlvr_cli.optimizers.build` from its file alone.

An option with training behaviour of its own names one module in its file's `hooks` key, e.g. `conf/adapter/
adalora.yaml` has `hooks: rlvr_cli.training.adalora` (its rank schedule, trainer subclass and final ranks) and
`conf/optimizer/muon.yaml` has `hooks: rlvr_cli.optimizers.muon` (its check that the adapter trains a matrix). That
module defines any of the functions named in `HOOKS`, with `Axis`'s signatures; the others do nothing. So a new
adapter with its own behaviour is its YAML and one module, and a new optimizer with an existing state model is one
YAML (the `state` key: `rlvr_cli.optimizers.state`).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from rlvr_cli.core.errors import BadInput, root_cause

#: The hook functions an option's `hooks` module may define (`Axis` gives each one's signature).
HOOKS = ("check", "trainer_fields", "trainer_class", "after_model_load", "on_save", "summary_fields")
#: The config groups whose option files may name a `hooks` module.
HOOK_GROUPS = ("optimizer", "adapter")


def _nothing(*_: Any) -> None:
    return None


def _no_fields(*_: Any) -> dict[str, Any]:
    return {}


def _same(cls: type, _cfg: DictConfig) -> type:
    return cls


@dataclass(frozen=True)
class Axis:
    """One axis of a run: what it adds at each stage of `rlvr_cli.training.recipe.GRPORecipe`; every hook is
    optional (the default does nothing).

    Attributes:
        name: the axis (`adapter`, `optimizer`, ...), or `<group>=<option> hooks <module>` for an option's module.
        check: `check(cfg)`, before any model loads; raises `BadInput` on a value the axis cannot run.
        trainer_fields: `trainer_fields(cfg) -> dict`: TRL `GRPOConfig` fields the axis sets.
        trainer_class: `trainer_class(cls, cfg) -> type`: the trainer class to build (TRL's `GRPOTrainer` or a
            subclass of the class it is given).
        after_model_load: `after_model_load(model, cfg, run_path, main)`: once the trainer has wrapped the model
            (PEFT built the adapter), before any step; `main`: this process writes files.
        on_save: `on_save(model, cfg, out)`: after the final weights were saved into `out` (main process).
        summary_fields: `summary_fields(model, cfg) -> dict`: keys for summary.json at the end of the run.
    """

    name: str
    check: Callable[[DictConfig], None] = _nothing
    trainer_fields: Callable[[DictConfig], dict[str, Any]] = _no_fields
    trainer_class: Callable[[type, DictConfig], type] = _same
    after_model_load: Callable[[Any, DictConfig, Path, bool], None] = _nothing
    on_save: Callable[[Any, DictConfig, Path], None] = _nothing
    summary_fields: Callable[[Any, DictConfig], dict[str, Any]] = _no_fields


def _adapter_check(cfg: DictConfig) -> None:
    from rlvr_cli.models import adapters

    adapters.check_run(cfg)  # residual-base adapters (PiSSA, MiLoRA): no sharding, no KL
    adapters.check_on_meta(cfg)  # on the model's shapes (meta device): targets exist, PiSSA/MiLoRA ranks fit


def _adapter_after_load(model: Any, cfg: DictConfig, run_path: Path, main: bool) -> None:
    from rlvr_cli.models import adapters

    # a `post_init` (MiLoRA's init); residual-base adapters keep their initial adapter for the final conversion
    adapters.initialize(model, cfg.adapter, run_path / adapters.INITIAL_DIR, save=main)


def _adapter_on_save(model: Any, cfg: DictConfig, out: Path) -> None:
    from rlvr_cli.models import adapters

    adapters.save_converted(model, out, cfg.adapter, out.parent / adapters.INITIAL_DIR)  # PiSSA, MiLoRA


def _distributed_fields(cfg: DictConfig) -> dict[str, Any]:
    import torch

    from rlvr_cli.training import parallelism

    return parallelism.trainer_fields(cfg.get("distributed") or {}, cuda=torch.cuda.is_available())


def _generation_fields(cfg: DictConfig) -> dict[str, Any]:
    from rlvr_cli.training import generation

    return generation.grpo_fields(cfg.get("generation") or {"name": "hf"})


#: rlvr's own axes, in the order their hooks run.
BUILT_IN = (
    Axis("distributed", trainer_fields=_distributed_fields),
    Axis("generation", trainer_fields=_generation_fields),
    Axis("adapter", check=_adapter_check, after_model_load=_adapter_after_load, on_save=_adapter_on_save),
)


def option_hooks(group: str, node: Any) -> Axis | None:
    """The `Axis` of an option file's `hooks` module (its functions named in `HOOKS`), or None without one.

    Args:
        group: the config group (`optimizer`, `adapter`).
        node: the run's node of that group (`cfg.adapter`).

    Raises:
        BadInput: `hooks` is not a module path, cannot be imported, or defines none of `HOOKS`.
    """
    path = node.get("hooks") if node is not None else None
    if path is None:
        return None
    where = f"{group}={node.get('name', '?')}: hooks {path!r}"
    if not isinstance(path, str) or not all(p.isidentifier() for p in path.split(".")):
        raise BadInput(f"{where} must be a module path such as rlvr_cli.training.adalora")
    try:
        module = importlib.import_module(path)
    except Exception as e:
        raise BadInput(f"{where}: cannot import it: {root_cause(e)}") from None
    found = {h: getattr(module, h) for h in HOOKS if callable(getattr(module, h, None))}
    if not found:
        raise BadInput(f"{where} defines none of {', '.join(HOOKS)}")
    return Axis(f"{group}={node.get('name', '?')} hooks {path}", **found)


def run_axes(cfg: DictConfig) -> list[Axis]:
    """The axes of a run, in order: the `hooks` modules of its optimizer and adapter files (their checks are the
    more specific: AdaLoRA's schedule is refused before PEFT's own error), then `BUILT_IN`.

    Raises:
        BadInput: as `option_hooks`.
    """
    own = [option_hooks(group, cfg.get(group)) for group in HOOK_GROUPS]
    return [*(a for a in own if a is not None), *BUILT_IN]
