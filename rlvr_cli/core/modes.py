"""What a distributed mode and a generation backend are, read from the traits their config files state
(`conf/distributed/<name>.yaml`, `conf/generation/<name>.yaml`), never from their names: code asks
`shards_weights(dist)` or `uses_vllm(gen)` of a run's typed `Distributed` or `Generation`
(`rlvr_cli.core.run_config`), so that a new mode or backend is one file.

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
from pathlib import Path
from typing import Any

from rlvr_cli.core.errors import BadInput, one_line
from rlvr_cli.core.run_config import Distributed, Generation

#: What a process can hold 1/N of (`distributed.shards`).
SHARDABLE = ("weights", "gradients", "optimizer_state")
#: ZeRO stage -> what it shards (arXiv 1910.02054, section 5: P_os, P_os+g, P_os+g+p).
ZERO_SHARDS = {0: frozenset(), 1: frozenset({"optimizer_state"}), 2: frozenset({"optimizer_state", "gradients"}),
               3: frozenset(SHARDABLE)}


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
