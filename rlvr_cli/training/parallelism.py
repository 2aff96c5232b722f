"""How a run's model is spread over its processes: the `distributed` config group (conf/distributed/) made into
transformers `TrainingArguments` fields, checked before any model loads, and written into the run directory as
accelerate's launch config.

| `distributed=` | what each process holds | through |
|---|---|---|
| `none` | everything (one process) | - |
| `ddp` | the whole model, gradients and optimizer state; gradients all-reduced | torch DDP |
| `fsdp` | 1/N of weights, gradients and optimizer state (FSDP2, `fully_shard` per decoder layer) | `fsdp_config` |
| `zero2` | whole weights, 1/N of gradients and optimizer state | DeepSpeed ZeRO-2 |
| `zero3` | 1/N of weights, gradients and optimizer state | DeepSpeed ZeRO-3 |

ZeRO: Rajbhandari et al., arXiv 1910.02054; FSDP: Zhao et al., arXiv 2304.11277. transformers' `Trainer` applies
them (`TrainingArguments.fsdp`/`fsdp_config`/`deepspeed`, https://huggingface.co/docs/transformers/deepspeed and
https://huggingface.co/docs/transformers/fsdp) and accelerate prepares the model; rlvr only fills the fields and
refuses what would silently do something else:

- FSDP without CUDA: accelerate turns an FSDP plugin into FSDP only for multi-GPU runs (`AcceleratorState`, state.py:
  the `MULTI_GPU` branch); on CPU the run would train as plain DDP while saying FSDP.
- A DeepSpeed config with its own `optimizer` or `scheduler` section: DeepSpeed would build that optimizer and
  silently replace rlvr's (transformers `deepspeed_optim_sched`).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rlvr_cli.core import modes
from rlvr_cli.core.errors import BadInput, one_line
from rlvr_cli.core.modes import Distributed
from rlvr_cli.core.run_config import RunConfig

#: DeepSpeed config sections that would replace what rlvr builds (the optimizer and its learning-rate schedule).
DEEPSPEED_REFUSED = ("optimizer", "scheduler")


def cuda_available() -> bool:
    """Whether torch sees a CUDA GPU (`torch.cuda.is_available()`)."""
    import torch

    return torch.cuda.is_available()


def processes_per_machine(dist: Distributed) -> int:
    """`distributed.num_processes`, with null meaning every visible GPU (`torch.cuda.device_count()`).

    Raises:
        BadInput: num_processes is null and this machine has no GPU.
    """
    if dist.num_processes is not None:
        return dist.num_processes
    import torch

    if not torch.cuda.device_count():
        raise BadInput("distributed.num_processes=null means one process per visible GPU, and this machine has "
                       "none; give the number of CPU processes (gloo), e.g. distributed.num_processes=2")
    return torch.cuda.device_count()


def world_size(dist: Distributed) -> int:
    """Processes over all machines: `processes_per_machine * num_machines`.

    Raises:
        BadInput: as `processes_per_machine`.
    """
    return processes_per_machine(dist) * dist.num_machines


def run_processes(dist: Distributed, launched: int = 1) -> int:
    """The world size a run will have: the launch's (`launched` > 1: this process is one of a launch), else
    `world_size(dist)` for a `distributed` choice rlvr starts itself, else 1."""
    if launched > 1 or not modes.multi_process(dist):
        return launched
    return world_size(dist)


def deepspeed_config(dist: Distributed) -> dict[str, Any] | None:
    """The DeepSpeed config of a `zero2`/`zero3` run (https://www.deepspeed.ai/docs/config-json/): the group's
    `deepspeed` mapping, or the JSON file it names, with `offload_optimizer` (ZeRO-Offload, arXiv 2101.06840) and,
    for stage 3, `offload_params` applied as `zero_optimization.offload_optimizer`/`offload_param` on the CPU.
    "auto" values stay for transformers to fill from the `grpo` group. None when the group has no `deepspeed`.

    Raises:
        BadInput: the file is missing or not JSON; the config has an `optimizer` or `scheduler` section (it would
            replace rlvr's optimizer or schedule); `offload_params` without stage 3.
    """
    ds = modes.deepspeed_section(dist)
    if ds is None:
        return None
    refused = [s for s in DEEPSPEED_REFUSED if s in ds]
    if refused:
        raise BadInput(f"distributed.deepspeed has a DeepSpeed `{refused[0]}` section, which would silently replace "
                       f"rlvr's {'optimizer' if refused[0] == 'optimizer' else 'learning-rate schedule'}; remove it "
                       f"and choose it with optimizer=... / grpo.lr_scheduler_type=...")
    zero = ds.setdefault("zero_optimization", {})
    if dist.offload_optimizer:
        zero["offload_optimizer"] = {"device": "cpu", "pin_memory": True}
    if dist.offload_params:
        if zero.get("stage") != 3:
            raise BadInput("distributed.offload_params=true needs ZeRO stage 3 (weights are replicated below it); "
                           "use distributed=zero3, or distributed.offload_optimizer=true")
        zero["offload_param"] = {"device": "cpu", "pin_memory": True}
    return ds


def trainer_fields(dist: Distributed, cuda: bool | None = None) -> dict[str, Any]:
    """The transformers `TrainingArguments` fields of a `distributed` choice: `ddp_timeout` (seconds a collective
    waits: a rank that stops answering fails the run after it), `fsdp` and `fsdp_config`, or `deepspeed`. `{}` for
    `none`. Mixed precision is the run's `precision`, not the distributed mode's (`Precision.trainer_fields`).

    Args:
        dist: the run's `distributed`.
        cuda: whether the run trains on CUDA GPUs; default `cuda_available()`.

    Raises:
        BadInput: as `deepspeed_config`.
    """
    backend = modes.backend(dist)
    if backend == "none":
        return {}
    cuda = cuda_available() if cuda is None else cuda
    out: dict[str, Any] = {"ddp_timeout": int(dist.timeout_s)}
    if backend == "fsdp":
        out["fsdp"] = "full_shard auto_wrap" + (" offload" if dist.offload_params else "")
        out["fsdp_config"] = copy.deepcopy(dist.fsdp_config or {})
    if backend == "deepspeed":
        out["deepspeed"] = deepspeed_config(dist)
    return out


def check(cfg: RunConfig, launched: int = 1) -> None:
    """Refuse, before any model loads, a `distributed` choice that cannot do what it says here.

    Args:
        cfg: the typed run config.
        launched: the world size of the launch this process is part of (1: none; `distributed.launch_env`).

    Raises:
        BadInput: `fsdp` without CUDA GPUs; `zero2`/`zero3` without DeepSpeed installed; a DeepSpeed config rlvr
            refuses (`deepspeed_config`); `machine_rank` not below `num_machines`; several machines without
            `main_process_ip`; `num_processes` null without GPUs; the same setting given both through
            `distributed` and as a `grpo` field; a launch of another size than `num_processes * num_machines`.
    """
    dist = cfg.distributed
    name, backend = dist.name, modes.backend(dist)
    if backend == "none":
        return
    for key in ("fsdp", "fsdp_config", "deepspeed"):
        if key in cfg.grpo.fields:
            raise BadInput(f"grpo.{key} and distributed={name} both set how the model is spread; drop grpo.{key} "
                           f"and use the distributed group's fields (distributed.{key if key != 'fsdp' else 'name'})")
    if backend == "fsdp" and not cuda_available():
        raise BadInput(f"distributed={name} needs CUDA GPUs: accelerate applies FSDP to multi-GPU runs only, and on "
                       "CPU "
                       "the run would train unsharded while saying FSDP; on CPU use distributed=ddp, zero2 or zero3")
    if backend == "deepspeed":
        import importlib.util

        if importlib.util.find_spec("deepspeed") is None:
            raise BadInput(f"distributed={name} needs DeepSpeed, which is not installed: "
                           "pip install --no-build-isolation 'deepspeed==0.19.8' (make setup does)")
        ds = deepspeed_config(dist)
        zero = ds.get("zero_optimization", {})
        if zero.get("stage") == 3 and not zero.get("stage3_gather_16bit_weights_on_model_save"):
            raise BadInput(f"distributed={name} needs "
                           "zero_optimization.stage3_gather_16bit_weights_on_model_save=true, "
                           "so that the final weights are one checkpoint gathered on rank 0 "
                           "(conf/distributed/zero3.yaml)")
    machines = dist.num_machines
    if dist.machine_rank >= machines:
        raise BadInput(f"distributed.machine_rank={dist.machine_rank} must be below distributed.num_machines="
                       f"{machines}; machines are numbered 0..{machines - 1}")
    if machines > 1 and not dist.main_process_ip:
        raise BadInput(f"distributed.num_machines={machines} needs the rendezvous host: "
                       "distributed.main_process_ip=HOST (machine 0's address)")
    if launched == 1 or dist.num_processes is not None:
        n = world_size(dist)
        if launched > 1 and n != launched:
            raise BadInput(f"launched as {launched} processes, but distributed.num_processes x num_machines is {n}; "
                           f"give distributed.num_processes=null to follow the launcher, or launch {n}")


def check_deepspeed(args: Any) -> None:
    """Check the DeepSpeed config of a built `GRPOConfig`, its "auto" values filled by transformers
    (`args.hf_deepspeed_config`), with DeepSpeed's own config class (`deepspeed.runtime.config.DeepSpeedConfig`),
    so that a misspelled or mistyped key fails before any model loads. Nothing without DeepSpeed.

    Raises:
        BadInput: DeepSpeed rejects the config, with its message.
    """
    hf = getattr(args, "hf_deepspeed_config", None)
    if hf is None:
        return
    from deepspeed.runtime.config import DeepSpeedConfig

    try:
        DeepSpeedConfig(copy.deepcopy(hf.config))
    except Exception as e:  # noqa: BLE001 - pydantic's ValidationError, AssertionError, ValueError: all bad input
        raise BadInput(f"distributed.deepspeed: DeepSpeed rejects the config: {one_line(e)}") from None


def accelerate_config(dist: Distributed, processes: int, cuda: bool,
                      deepspeed_file: str | None = None, mixed_precision: str = "no") -> dict[str, Any]:
    """accelerate's launch config (the YAML of `accelerate config`, read by accelerate's `ClusterConfig`) for a
    `distributed` choice, so that a run can be started again with `accelerate launch --config_file FILE`.

    Args:
        dist: the run's `distributed`.
        processes: the run's world size (processes over all machines).
        cuda: whether the run trains on CUDA GPUs (else `use_cpu: true`, and DDP is `MULTI_CPU`).
        deepspeed_file: where the run's DeepSpeed JSON is written (zero2/zero3).
        mixed_precision: accelerate's name of the run's compute dtype, `no`, `bf16` or `fp16`
            (`Precision.accelerate_name`).
    """
    backend = modes.backend(dist)
    kind = dist.accelerate_type
    out: dict[str, Any] = {
        "compute_environment": "LOCAL_MACHINE",
        "distributed_type": "MULTI_CPU" if kind == "MULTI_GPU" and not cuda else kind,
        "num_processes": processes,
        "num_machines": dist.num_machines,
        "machine_rank": dist.machine_rank,
        "main_process_ip": dist.main_process_ip,
        "main_process_port": dist.main_process_port,
        "rdzv_backend": "static",
        "same_network": True,
        "mixed_precision": mixed_precision,
        "use_cpu": not cuda,
    }
    if backend == "fsdp":
        out["fsdp_config"] = {f"fsdp_{k}": copy.deepcopy(v) for k, v in (dist.fsdp_config or {}).items()}
        out["fsdp_config"]["fsdp_offload_params"] = dist.offload_params
    if backend == "deepspeed":
        out["deepspeed_config"] = {"deepspeed_config_file": deepspeed_file,
                                   "zero3_init_flag": modes.shards_weights(dist)}
    return {k: v for k, v in out.items() if v is not None}


#: The launch files of a run directory (`launch_files`).
ACCELERATE_FILE, DEEPSPEED_FILE = "accelerate_config.yaml", "deepspeed.json"


def launch_files(run_path: Path, cfg: RunConfig, overrides: list[str], processes: int,
                 mixed_precision: str = "no") -> dict[str, str]:
    """The launch of a run as files for its directory: `accelerate_config.yaml` (`accelerate_config`, headed by the
    commands that start the run again) and, for zero2/zero3, `deepspeed.json`. `{}` for `distributed=none`.

    Args:
        run_path: the run directory (named inside the files).
        cfg: the typed run config; overrides: what it was composed from.
        processes: the run's world size.
        mixed_precision: accelerate's name of the run's compute dtype (`Precision.accelerate_name`).

    Returns:
        file name -> text.

    Raises:
        BadInput: as `deepspeed_config`.
    """
    import yaml

    dist = cfg.distributed
    if not modes.multi_process(dist):
        return {}
    files = {}
    ds = deepspeed_config(dist)
    if ds is not None:
        files[DEEPSPEED_FILE] = json.dumps(ds, indent=2) + "\n"
    config = accelerate_config(dist, processes, cuda_available(),
                               str(run_path / DEEPSPEED_FILE) if ds is not None else None, mixed_precision)
    args = " ".join(["-m rlvr_cli.cli train", *(o for o in overrides if not o.startswith("run_name="))])
    per_machine = processes // cfg.distributed.num_machines
    files[ACCELERATE_FILE] = (
        "# The launch of this run, in accelerate's format. Start it again on each machine with:\n"
        f"#   accelerate launch --config_file {run_path / ACCELERATE_FILE} {args}\n"
        "# or with torch's launcher (on CPU, accelerate launch starts one process):\n"
        f"#   torchrun --nproc-per-node {per_machine} --nnodes {config['num_machines']} {args}\n"
        + yaml.safe_dump(config, sort_keys=False))
    return files


def mode(trainer: Any) -> str:
    """How the built trainer actually spreads the model: `zero2`/`zero3` (DeepSpeed, with its stage), `fsdp`,
    `ddp` (several processes, each the whole model) or `none` - read from the trainer's accelerator, not from the
    config, so that summary.json says what ran."""
    if getattr(trainer, "is_deepspeed_enabled", False):
        stage = trainer.accelerator.state.deepspeed_plugin.zero_stage
        return f"zero{stage}"
    if getattr(trainer, "is_fsdp_enabled", False):
        return "fsdp"
    return "ddp" if trainer.args.world_size > 1 else "none"


def shards_weights(trainer: Any) -> bool:
    """Whether the built trainer holds no whole weights on any process: DeepSpeed at ZeRO stage 3, or FSDP (read
    from the trainer's accelerator, as `mode`)."""
    if getattr(trainer, "is_deepspeed_enabled", False):
        return trainer.accelerator.state.deepspeed_plugin.zero_stage == 3
    return bool(getattr(trainer, "is_fsdp_enabled", False))


def gathered_state(trainer: Any) -> dict[str, Any] | None:
    """The whole final weights of a run whose weights are sharded (ZeRO-3, FSDP), gathered from every rank onto the
    main process's CPU by accelerate (`Accelerator.get_state_dict`: DeepSpeed's
    `_zero3_consolidated_16bit_state_dict`, FSDP2's full state dict): name -> tensor, a tied weight under its first
    name only (as `model.named_parameters()` gives it). A collective: every rank must call it. None on the other
    ranks, and where weights are not sharded (the model itself then holds them whole).
    """
    if not shards_weights(trainer):
        return None
    state = trainer.accelerator.get_state_dict(trainer.model_wrapped)
    if not trainer.args.should_save:
        return None
    model = trainer.model
    kept = {n for n, _ in model.named_parameters()} | {n for n, _ in model.named_buffers()}  # tied weights once
    once = {k: v for k, v in state.items() if k in kept}
    return once or state


@contextmanager
def whole_loading(args: Any) -> Iterator[None]:
    """Load and run models whole in this process while inside: under a ZeRO-3 config transformers builds every
    `from_pretrained` partitioned over all ranks (`deepspeed.zero.Init`, a collective; see
    `transformers.integrations.deepspeed.is_deepspeed_zero3_enabled`) and `generate` syncs every token with the
    other ranks (`synced_gpus`), so a model loaded or sampled on the main process alone (the base for update
    sparsity or a sparse delta, the final evaluation) would wait for the other ranks until the collective timeout.
    Nothing changes for other runs.

    Args:
        args: the run's `GRPOConfig` (its `hf_deepspeed_config`, set by transformers for DeepSpeed runs).
    """
    active = getattr(args, "hf_deepspeed_config", None)
    if active is None:
        yield
        return
    from transformers.integrations.deepspeed import set_hf_deepspeed_config, unset_hf_deepspeed_config

    unset_hf_deepspeed_config()
    try:
        yield
    finally:
        set_hf_deepspeed_config(active)
