"""What a distributed mode and a generation backend are, read from the traits their config files state
(`conf/distributed/<name>.yaml`, `conf/generation/<name>.yaml`), never from their names: code asks
`shards_weights(dist)` or `uses_vllm(gen)` of a run's typed `Distributed` or `Generation` (the run config's two
groups defined here, each field with its type, default, unit and range: `rlvr_cli.core.run_config`), so that a new
mode or backend is one file.

A distributed file states its `backend` (`none`, `ddp`, `fsdp` or `deepspeed`), accelerate's `accelerate_type`, and
what each process holds 1/N of (`shards`: `weights`, `gradients`, `optimizer_state`). Under DeepSpeed what is sharded
follows the ZeRO stage of its `deepspeed` config instead (Rajbhandari et al., arXiv 1910.02054, section 5: stage 1
shards the optimizer state, stage 2 also the gradients, stage 3 also the weights), so that `distributed=zero2
+distributed.deepspeed.zero_optimization.stage=3` is the ZeRO-3 it says. A generation file states TRL's own traits:
`use_vllm` and `vllm_mode` (TRL `GRPOConfig`, https://huggingface.co/docs/trl/main/en/vllm_integration).
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from rlvr_cli.core.errors import BadInput, one_line
from rlvr_cli.core.groups import GroupOptions
from rlvr_cli.core.nodes import setting
from rlvr_cli.core.rules import LibraryKey, library_key

#: `distributed.backend` values: what spreads the model (torch DDP, torch FSDP, DeepSpeed), or one process.
BACKENDS = ("none", "ddp", "fsdp", "deepspeed")
#: `generation.vllm_mode` values (TRL `GRPOConfig.vllm_mode`).
VLLM_MODES = ("colocate", "server")

#: What a process can hold 1/N of (`distributed.shards`).
SHARDABLE = ("weights", "gradients", "optimizer_state")
#: ZeRO stage -> what it shards (arXiv 1910.02054, section 5: P_os, P_os+g, P_os+g+p).
ZERO_SHARDS = {0: frozenset(), 1: frozenset({"optimizer_state"}), 2: frozenset({"optimizer_state", "gradients"}),
               3: frozenset(SHARDABLE)}


@dataclass(frozen=True)
class Distributed:
    """`distributed` group (`conf/distributed/*.yaml`): how many processes on how many machines, and what spreads
    the model over them (accelerate's launch names: https://huggingface.co/docs/accelerate/package_reference/cli).

    Attributes:
        name: the option's name (`none`, `ddp`, `fsdp`, `zero1`, `zero2`, `zero3`).
        backend: `none`, `ddp`, `fsdp` or `deepspeed` (`rlvr_cli.core.modes.BACKENDS`).
        accelerate_type: accelerate's `distributed_type` (`NO`, `MULTI_GPU`, `FSDP`, `DEEPSPEED`).
        shards: what each process holds 1/N of (`weights`, `gradients`, `optimizer_state`); None under DeepSpeed:
            what the ZeRO stage shards.
        num_processes: processes per machine; None: every visible GPU.
        num_machines, machine_rank: machines (nodes) and this one's rank.
        main_process_ip, main_process_port: the rendezvous host (None: this machine) and port.
        timeout_s: seconds a collective waits for a rank.
        shutdown_timeout: seconds the processes get to finish a step and save after a stop signal.
        offload_params, offload_optimizer: DeepSpeed's CPU offload of the weights and of the optimizer state.
        fsdp_config: transformers' `fsdp_config` mapping; None: its defaults.
        deepspeed: a DeepSpeed config mapping or JSON file path; None: none.
    """

    name: str = setting("none", required=True, choices=GroupOptions("distributed"))
    backend: str = setting("none", required=True, choices=BACKENDS, why="what spreads the model")
    accelerate_type: str = setting("NO", required=True, choices=("NO", "MULTI_GPU", "FSDP", "DEEPSPEED"))
    shards: tuple[str, ...] | None = ()  # rlvr_cli.core.modes.sharded checks the names
    num_processes: int | None = setting(1, ge=1, why="processes per machine; null: every visible GPU", example=8)
    num_machines: int = setting(1, ge=1, example=1)
    machine_rank: int = setting(0, ge=0, example=0)
    main_process_ip: str | None = None
    main_process_port: int = setting(29500, ge=1, le=65535, example=29500)
    timeout_s: float = setting(1800, gt=0, why="seconds a collective waits for a rank", example=1800)
    shutdown_timeout: int = setting(300, ge=0, why="seconds to finish a step and save after a stop signal",
                                    example=300)
    offload_params: bool = False
    offload_optimizer: bool = False
    fsdp_config: dict[str, Any] | None = setting(None, keep_list=True)  # transformers checks it
    deepspeed: Any = setting(None, keep_list=True)  # a mapping or a JSON file; DeepSpeed's config class checks it


@dataclass(frozen=True)
class VllmServer:
    """`generation.server` (`conf/generation/vllm_server.yaml`): the vLLM server rlvr starts, under the names of
    TRL's `trl vllm-serve` arguments (`trl.scripts.vllm_serve.ScriptArguments`), plus rlvr's `start` and `gpus`.

    Attributes:
        start: rlvr starts the server for the run's duration (False: one runs already at the host and port).
        gpus: CUDA device ids for it; None: the next free ones after the training processes'.
        tensor_parallel_size, data_parallel_size: GPUs one copy of the model spans, and copies (ScriptArguments').
        args: every other `ScriptArguments` field (`gpu_memory_utilization`, `max_model_len`, `dtype`, ...).
    """

    REST: ClassVar[str] = "args"

    start: bool = False
    gpus: tuple[int, ...] | None = None
    tensor_parallel_size: int = setting(1, ge=1, why="GPUs one copy of the model spans", example=1)
    data_parallel_size: int = setting(1, ge=1, example=1)
    args: dict[str, Any] = field(default_factory=dict)

    #: `ScriptArguments` fields the shipped file sets, typed and range-checked before `trl vllm-serve` sees them.
    LIBRARY_KEYS: ClassVar[dict[str, LibraryKey]] = {
        "gpu_memory_utilization": library_key(float, gt=0, le=1, why="share of each server GPU vLLM reserves",
                                              example=0.9),
        "max_model_len": library_key(int | None, ge=1, why="tokens; null: the model's context", example=4096),
        "dtype": library_key(str),
    }

    @property
    def size(self) -> int:
        """GPUs the server takes: `tensor_parallel_size x data_parallel_size`."""
        return self.tensor_parallel_size * self.data_parallel_size

    def script_arguments(self) -> dict[str, Any]:
        """Its `trl vllm-serve` arguments: the parallel sizes and `args` (not rlvr's `start` and `gpus`)."""
        return {"tensor_parallel_size": self.tensor_parallel_size, "data_parallel_size": self.data_parallel_size,
                **copy.deepcopy(self.args)}


#: TRL `GRPOConfig` defaults (TRL 1.16) of the vLLM fields `Generation` types: what TRL does when a file sets none.
TRL_VLLM_DEFAULTS = {"use_vllm": False, "vllm_mode": "colocate", "vllm_tensor_parallel_size": 1,
                     "vllm_server_host": "0.0.0.0", "vllm_server_port": 8000, "vllm_server_base_url": None,
                     "vllm_server_timeout": 240.0}


@dataclass(frozen=True)
class Generation:
    """`generation` group (`conf/generation/*.yaml`): which engine samples a GRPO step's completions, with TRL's
    `GRPOConfig` names for its vLLM fields (https://huggingface.co/docs/trl/main/en/vllm_integration).

    Attributes:
        name: the option's name (`hf`, `vllm_colocate`, `vllm_server`).
        use_vllm: TRL generates with vLLM (the file's trait; `hf`: False).
        vllm_mode: `colocate` (an engine in every training process) or `server` (a separate vLLM server).
        vllm_tensor_parallel_size: GPUs one colocated engine spans.
        vllm_server_host, vllm_server_port: where the trainer reaches the server.
        vllm_server_base_url: a running server's URL, instead of host and port; None: host and port.
        vllm_server_timeout: seconds the trainer (and rlvr, for a server it starts) waits for the server.
        server: the vLLM server rlvr starts; None: none.
        trl: every other key, TRL `GRPOConfig` fields (`vllm_gpu_memory_utilization`, `vllm_*`), as composed.
    The typed TRL fields default to TRL's own (`TRL_VLLM_DEFAULTS`).
    """

    REST: ClassVar[str] = "trl"

    name: str = setting("hf", required=True, choices=GroupOptions("generation"))
    use_vllm: bool = False
    vllm_mode: str = setting("colocate", choices=VLLM_MODES)
    vllm_tensor_parallel_size: int = setting(1, ge=1, why="GPUs one vLLM engine spans", example=1)
    vllm_server_host: str = "0.0.0.0"
    vllm_server_port: int = setting(8000, ge=1, le=65535, example=8000)
    vllm_server_base_url: str | None = None
    vllm_server_timeout: float = setting(240.0, gt=0, why="seconds to wait for the server", example=240)
    server: VllmServer | None = setting(None, nested=VllmServer)
    trl: dict[str, Any] = field(default_factory=dict)

    #: The other `GRPOConfig` vLLM fields the shipped files set, typed and range-checked before TRL sees them.
    LIBRARY_KEYS: ClassVar[dict[str, LibraryKey]] = {
        "vllm_gpu_memory_utilization": library_key(float, gt=0, le=1, why="share of each GPU vLLM reserves",
                                                   example=0.3),
        "vllm_max_model_length": library_key(int | None, ge=1, why="tokens; null: the model's context", example=4096),
        "vllm_enable_sleep_mode": library_key(bool),
        "vllm_group_port": library_key(int, ge=1, le=65535, example=51216),
    }

    def grpo_fields(self) -> dict[str, Any]:
        """Its TRL `GRPOConfig` fields: the typed ones (TRL's defaults where the file sets none) and `trl`."""
        return {k: getattr(self, k) for k in TRL_VLLM_DEFAULTS} | copy.deepcopy(self.trl)


def backend(dist: Distributed) -> str:
    """`distributed.backend`: `none` (one process), `ddp`, `fsdp` or `deepspeed`."""
    return dist.backend


def multi_process(dist: Distributed) -> bool:
    """Whether the mode runs several processes (any backend but `none`)."""
    return backend(dist) != "none"


def deepspeed_section(dist: Distributed) -> dict[str, Any] | None:
    """`distributed.deepspeed` as a new plain dict: a copy of the mapping, or the DeepSpeed JSON file it names
    (https://www.deepspeed.ai/docs/config-json/); None when the mode has none.

    Raises:
        BadInput: the file is missing or not JSON.
    """
    ds = dist.deepspeed
    if ds is None:
        return None
    if isinstance(ds, str):
        try:
            return json.loads(Path(ds).expanduser().read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise BadInput(f"distributed.deepspeed={ds}: cannot read a DeepSpeed JSON config: {one_line(e)}") from None
    return copy.deepcopy(dict(ds))


def zero_stage(dist: Distributed) -> int | None:
    """The ZeRO stage (0-3) of a `deepspeed` backend's config (`zero_optimization.stage`, DeepSpeed's default 0);
    None for other backends.

    Raises:
        BadInput: as `deepspeed_section`; a stage that is not 0, 1, 2 or 3.
    """
    if backend(dist) != "deepspeed":
        return None
    zero = (deepspeed_section(dist) or {}).get("zero_optimization") or {}  # DeepSpeed's config, its defaults
    stage = zero.get("stage", 0)
    if stage not in ZERO_SHARDS:
        raise BadInput(f"distributed.deepspeed.zero_optimization.stage must be 0, 1, 2 or 3, got {stage!r}")
    return int(stage)


def sharded(dist: Distributed) -> frozenset[str]:
    """What each process holds 1/N of, a subset of `SHARDABLE`: the ZeRO stage's under DeepSpeed (`ZERO_SHARDS`),
    else the file's `shards` list.

    Raises:
        BadInput: as `zero_stage`; a `shards` entry outside `SHARDABLE`.
    """
    stage = zero_stage(dist)
    if stage is not None:
        return ZERO_SHARDS[stage]
    shards = frozenset(dist.shards or ())
    if bad := sorted(shards - set(SHARDABLE)):
        raise BadInput(f"distributed.shards names {bad[0]!r}; it lists what each process holds 1/N of: "
                       f"{', '.join(SHARDABLE)}")
    return shards


def shards_weights(dist: Distributed) -> bool:
    """Whether no process holds the whole weights (FSDP full shard, ZeRO-3): the main process then cannot
    initialise, convert or compare them without gathering.

    Raises:
        BadInput: as `sharded`.
    """
    return "weights" in sharded(dist)


def uses_vllm(gen: Generation) -> bool:
    """Whether the generation backend samples with vLLM (TRL `GRPOConfig.use_vllm`)."""
    return gen.use_vllm


def vllm_mode(gen: Generation) -> str | None:
    """TRL's `vllm_mode` of a vLLM backend: `colocate` (an engine in every training process) or `server` (a separate
    vLLM server); None without vLLM."""
    return gen.vllm_mode if gen.use_vllm else None


def starts_server(gen: Generation) -> bool:
    """Whether rlvr starts a vLLM server itself for the run (`vllm_mode: server` with `server.start`)."""
    return vllm_mode(gen) == "server" and gen.server is not None and gen.server.start
