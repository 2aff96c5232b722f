"""DeepSpeed's log lines kept off stdout, where rlvr writes its tables and `--json` documents."""

from __future__ import annotations


def deepspeed_logs_to_stderr() -> None:
    """Import DeepSpeed, when it is installed and not imported yet, with stdout pointed at stderr. DeepSpeed's logger
    writes to the `sys.stdout` of its first import (`deepspeed/utils/logging.py`: `StreamHandler(stream=sys.stdout)`),
    and transformers imports DeepSpeed while it loads any model, so its log lines ("Setting accelerator to CPU")
    would otherwise mix into rlvr's stdout: the summary tables, `--json` documents, a parent's parsed output."""
    import contextlib
    import importlib.util
    import sys

    if "deepspeed" in sys.modules or importlib.util.find_spec("deepspeed") is None:
        return
    with contextlib.redirect_stdout(sys.stderr):
        import deepspeed  # noqa: F401
