"""DeepSpeed's log lines kept off stdout, where rlvr writes its tables and `--json` documents."""

from __future__ import annotations


def deepspeed_logs_to_stderr() -> None:
    """Import DeepSpeed, when it is installed and not imported yet, with stdout pointed at stderr. DeepSpeed's logger
    writes to the `sys.stdout` of its first import (`deepspeed/utils/logging.py`: `StreamHandler(stream=sys.stdout)`),
    and transformers imports DeepSpeed while it loads any model, so its log lines ("Setting accelerator to CPU")
    would otherwise mix into rlvr's stdout: the summary tables, `--json` documents, a parent's parsed output.

    Without a CUDA GPU it also sets `DS_ACCELERATOR=cpu` (unless set), the accelerator DeepSpeed's auto-detection
    picks there anyway, so that DeepSpeed does not warn "Setting accelerator to CPU" on every command that loads a
    model (https://www.deepspeed.ai/tutorials/accelerator-abstraction-interface/: DS_ACCELERATOR)."""
    import contextlib
    import importlib.util
    import os
    import sys

    if "deepspeed" in sys.modules or importlib.util.find_spec("deepspeed") is None:
        return
    import torch

    if not torch.cuda.is_available():
        os.environ.setdefault("DS_ACCELERATOR", "cpu")
    with contextlib.redirect_stdout(sys.stderr):
        import deepspeed  # noqa: F401
