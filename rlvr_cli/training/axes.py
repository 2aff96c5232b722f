"""Every axis of a run behind one protocol: `Axis`, the same few hooks for each (the checks before any model loads,
the TRL `GRPOConfig` fields, the trainer class and callbacks, a service for the run's duration, hooks after the model
loads, after training and on save, the summary's fields). `rlvr_cli.training.recipe` loops over `run_axes(cfg)` and
names no optimizer, adapter, precision, distributed mode or backend.

Every hook is given the `RunContext`: the run's config, its resolved precision and its process counts (what the
distributed and generation checks need to know about the launch).

The built-in axes (`BUILT_IN`) wire rlvr's generic code:
- `precision`: the Trainer's autocast fields (`rlvr_cli.core.precision`);
- `distributed`: its checks and Trainer fields (`rlvr_cli.training.parallelism`);
- `generation`: its checks, TRL's vLLM fields and, where rlvr starts one, the vLLM server for the run's duration
  (`rlvr_cli.training.generation`);
- `adapter`: its checks, initialisation and converted save (`rlvr_cli.models.adapters`: PEFT, residual-base adapters
  such as PiSSA and MiLoRA);
- `pruning`: a search trial's study checks, its reports to the study and the status it ends with, pruned or paused
  (`rlvr_cli.training.pruning`); nothing outside a search.
The optimizer is built by `rlvr_cli.optimizers.build` from its file alone, and the rewards and the data are the
trainer's inputs (`rlvr_cli.training.rewards`, `rlvr_cli.data.problems`), built by the recipe's check.

An option with training behaviour of its own names one module in its file's `hooks` key, e.g. `conf/adapter/
adalora.yaml` has `hooks: rlvr_cli.training.adalora` (its rank schedule, trainer subclass and final ranks) and
`conf/optimizer/muon.yaml` has `hooks: rlvr_cli.optimizers.muon` (its check that the adapter trains a matrix). That
module defines any of the functions named in `HOOKS`, with `Axis`'s signatures; the others do nothing. So a new
adapter with its own behaviour is its YAML and one module, and a new optimizer with an existing state model is one
YAML (the `state` key: `rlvr_cli.optimizers.state`).
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rlvr_cli.core.errors import BadInput, root_cause
from rlvr_cli.core.precision import Precision
from rlvr_cli.core.run_config import Adapter, Optimizer, RunConfig

#: The hook functions an option's `hooks` module may define (`Axis` gives each one's signature).
HOOKS = ("check", "trainer_fields", "trainer_class", "callbacks", "serve", "after_model_load", "after_train",
         "on_save", "summary_fields")
#: The config groups whose option files may name a `hooks` module.
HOOK_GROUPS = ("optimizer", "adapter")


@dataclass(frozen=True)
class RunContext:
    """What every hook of a run is given.

    Attributes:
        cfg: the run's typed, validated config (`rlvr_cli.core.compose.compose_run`).
        precision: its resolved precision (`rlvr_cli.core.precision.resolve`: `auto` made concrete).
        world_size: the run's processes over all machines, launched or to launch (`parallelism.run_processes`).
        local_processes: its processes on this machine (`world_size / distributed.num_machines`).
        main: whether this process is the run's main process (global rank 0: it writes the files).
        launched: the world size of the launch this process is part of (1: none yet; `distributed.launch_env`).
    """

    cfg: RunConfig
    precision: Precision
    world_size: int = 1
    local_processes: int = 1
    main: bool = True
    launched: int = 1


def run_context(cfg: RunConfig, launched: int = 1, main: bool = True) -> RunContext:
    """The `RunContext` of a run config in a launch of `launched` processes (1: none; `distributed.launch_env`).

    Args:
        cfg: the run's validated config.
        launched: the launch's world size; the run's own is `distributed.num_processes x num_machines` without one.
        main: whether this process is global rank 0.

    Raises:
        BadInput: an unknown `precision` (`rlvr_cli.core.precision.resolve`).
    """
    from rlvr_cli.core import precision
    from rlvr_cli.training import parallelism

    processes = parallelism.run_processes(cfg.distributed, launched)  # launched or to launch
    return RunContext(cfg, precision.resolve(cfg.precision, cuda=parallelism.cuda_available()), world_size=processes,
                      local_processes=processes // cfg.distributed.num_machines, main=main, launched=launched)


def _nothing(*_: Any) -> None:
    return None


def _no_fields(*_: Any) -> dict[str, Any]:
    return {}


def _no_callbacks(*_: Any) -> list[Any]:
    return []


def _no_service(*_: Any) -> AbstractContextManager[Any]:
    return contextlib.nullcontext()


def _same(cls: type, _run: RunContext) -> type:
    return cls


@dataclass(frozen=True)
class Axis:
    """One axis of a run: what it adds at each stage of `rlvr_cli.training.recipe.GRPORecipe`; every hook is
    optional (the default does nothing). `run` is the `RunContext`.

    Attributes:
        name: the axis (`adapter`, `generation`, ...), or `<group>=<option> hooks <module>` for an option's module.
        check: `check(run)`, before any model loads and before the run directory exists; raises `BadInput` on a
            value the axis cannot run.
        trainer_fields: `trainer_fields(run) -> dict`: TRL `GRPOConfig` fields the axis sets (the `grpo` group's
            own fields override them).
        trainer_class: `trainer_class(cls, run) -> type`: the trainer class to build (TRL's `GRPOTrainer` or a
            subclass of the class it is given).
        callbacks: `callbacks(run, run_path) -> list`: `transformers.TrainerCallback`s for the trainer.
        serve: `serve(run, run_path) -> context manager`: a service the run needs while it lives (entered before
            the model loads, left when the run ends, whatever happens).
        after_model_load: `after_model_load(model, run, run_path)`: once the trainer has wrapped the model (PEFT
            built the adapter), before any step.
        after_train: `after_train(trainer, run, run_path, status) -> dict`: after training, which ended `status`
            (`completed`, `interrupted`, `diverged`; `rlvr_cli.core.run_dir`): summary.json keys, and, for a run
            that completed, `status` and `reason` where the axis ended it otherwise (`pruned`, `paused`).
        on_save: `on_save(model, run, out)`: after the final weights were saved into `out` (main process).
        summary_fields: `summary_fields(model, run) -> dict`: keys for summary.json at the end of the run.
    """

    name: str
    check: Callable[[RunContext], None] = _nothing
    trainer_fields: Callable[[RunContext], dict[str, Any]] = _no_fields
    trainer_class: Callable[[type, RunContext], type] = _same
    callbacks: Callable[[RunContext, Path], list[Any]] = _no_callbacks
    serve: Callable[[RunContext, Path], AbstractContextManager[Any]] = _no_service
    after_model_load: Callable[[Any, RunContext, Path], None] = _nothing
    after_train: Callable[[Any, RunContext, Path, str], dict[str, Any]] = _no_fields
    on_save: Callable[[Any, RunContext, Path], None] = _nothing
    summary_fields: Callable[[Any, RunContext], dict[str, Any]] = _no_fields


# --- precision ----------------------------------------------------------------------------------------------------

def _precision_fields(run: RunContext) -> dict[str, Any]:
    return run.precision.trainer_fields()  # bf16 / fp16 autocast


# --- distributed --------------------------------------------------------------------------------------------------

def _distributed_check(run: RunContext) -> None:
    from rlvr_cli.training import parallelism

    parallelism.check(run.cfg, run.launched)


def _distributed_fields(run: RunContext) -> dict[str, Any]:
    import torch

    from rlvr_cli.training import parallelism

    return parallelism.trainer_fields(run.cfg.distributed, cuda=torch.cuda.is_available())


# --- generation ---------------------------------------------------------------------------------------------------

def _generation_check(run: RunContext) -> None:
    from rlvr_cli.training import generation

    generation.check_generation(run.cfg.generation, num_processes=run.world_size, main_process=run.main,
                                local_processes=run.local_processes)


def _generation_fields(run: RunContext) -> dict[str, Any]:
    from rlvr_cli.training import generation

    return generation.grpo_fields(run.cfg.generation)


def _generation_serve(run: RunContext, run_path: Path) -> AbstractContextManager[Any]:
    if not run.main:  # TRL's main process is the one that talks to the server
        return contextlib.nullcontext()
    from rlvr_cli.training import generation

    return generation.vllm_server(run.cfg.generation, run.cfg.model.name_or_path,
                                  local_processes=run.local_processes, log_path=run_path / "vllm_server.log")


# --- adapter ------------------------------------------------------------------------------------------------------

def _adapter_check(run: RunContext) -> None:
    from rlvr_cli.models import adapters

    adapters.check_run(run.cfg)  # residual-base adapters (PiSSA, MiLoRA): no sharding, no KL
    adapters.check_on_meta(run.cfg)  # on the model's shapes (meta device): targets exist, PiSSA/MiLoRA ranks fit


def _adapter_after_load(model: Any, run: RunContext, run_path: Path) -> None:
    from rlvr_cli.models import adapters

    # a `post_init` (MiLoRA's init); residual-base adapters keep their initial adapter for the final conversion
    adapters.initialize(model, run.cfg.adapter, run_path / adapters.INITIAL_DIR, save=run.main)


def _adapter_on_save(model: Any, run: RunContext, out: Path) -> None:
    from rlvr_cli.models import adapters

    adapters.save_converted(model, out, run.cfg.adapter, out.parent / adapters.INITIAL_DIR)  # PiSSA, MiLoRA


# --- pruning ------------------------------------------------------------------------------------------------------

def _pruning_check(run: RunContext) -> None:
    if run.cfg.trial is None:
        return
    from rlvr_cli.training import pruning

    pruning.open_trial(run.cfg.trial)  # the study and the trial exist, and the trial is not finished
    pruning.check_pause(run.cfg.trial, run.cfg.grpo.max_steps, run.cfg.run_name)


def _pruning_callbacks(run: RunContext, run_path: Path) -> list[Any]:
    if run.cfg.trial is None:
        return []
    from rlvr_cli.core.run_dir import RunDir, read_metrics
    from rlvr_cli.training import pruning

    earlier = [r["reward"] for r in read_metrics(RunDir(run_path).metrics) if "reward" in r]  # a resumed trial's
    return [pruning.TrialPruning(run.cfg.trial, run.main, earlier)]


def _pruning_after_train(trainer: Any, run: RunContext, run_path: Path, status: str) -> dict[str, Any]:
    from rlvr_cli.training import pruning

    trial = next((c for c in trainer.callback_handler.callbacks if isinstance(c, pruning.TrialPruning)), None)
    return {} if trial is None else pruning.outcome(trial, run_path, status, run.main)


#: rlvr's own axes, in the order their hooks run.
BUILT_IN = (
    Axis("precision", trainer_fields=_precision_fields),
    Axis("distributed", check=_distributed_check, trainer_fields=_distributed_fields),
    Axis("generation", check=_generation_check, trainer_fields=_generation_fields, serve=_generation_serve),
    Axis("adapter", check=_adapter_check, after_model_load=_adapter_after_load, on_save=_adapter_on_save),
    Axis("pruning", check=_pruning_check, callbacks=_pruning_callbacks, after_train=_pruning_after_train),
)


def option_hooks(group: str, node: Optimizer | Adapter) -> Axis | None:
    """The `Axis` of an option file's `hooks` module (its functions named in `HOOKS`), or None without one.

    Args:
        group: the config group (`optimizer`, `adapter`).
        node: the run's `Optimizer` or `Adapter` (`cfg.adapter`).

    Raises:
        BadInput: `hooks` is not a module path, cannot be imported, or defines none of `HOOKS`.
    """
    path = node.hooks
    if path is None:
        return None
    where = f"{group}={node.name}: hooks {path!r}"
    if not isinstance(path, str) or not all(p.isidentifier() for p in path.split(".")):
        raise BadInput(f"{where} must be a module path such as rlvr_cli.training.adalora")
    try:
        module = importlib.import_module(path)
    except Exception as e:
        raise BadInput(f"{where}: cannot import it: {root_cause(e)}") from None
    found = {h: getattr(module, h) for h in HOOKS if callable(getattr(module, h, None))}
    if not found:
        raise BadInput(f"{where} defines none of {', '.join(HOOKS)}")
    return Axis(f"{group}={node.name} hooks {path}", **found)


def run_axes(cfg: RunConfig) -> list[Axis]:
    """The axes of a run, in order: the `hooks` modules of its optimizer and adapter files (their checks are the
    more specific: AdaLoRA's schedule is refused before PEFT's own error), then `BUILT_IN`.

    Raises:
        BadInput: as `option_hooks`.
    """
    own = [option_hooks(group, getattr(cfg, group)) for group in HOOK_GROUPS]
    return [*(a for a in own if a is not None), *BUILT_IN]
