"""Weights & Biases tracking for a run (logger=wandb); logger=none tracks nothing.

rlvr starts the W&B run itself, so that project, group, tags, name and directory come from the
config; transformers' `WandbCallback` then finds the active run and logs every trainer metric
into it (`train/reward`, `train/loss`, ...).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from rlvr_cli.core.nodes import to_node
from rlvr_cli.core.run_config import RunConfig
from rlvr_cli.core.run_dir import COMPLETED

#: The W&B server's default address (`WANDB_BASE_URL` changes it), whose host a `wandb login` writes into netrc.
WANDB_DEFAULT_URL = "https://api.wandb.ai"


def has_credentials(environ: Mapping[str, str] | None = None) -> bool:
    """Whether W&B has credentials: `WANDB_API_KEY`, or the key `wandb login` saved for the W&B host
    (`WANDB_BASE_URL`, default `WANDB_DEFAULT_URL`) in the netrc file (`$NETRC`, default `~/.netrc`; the format W&B
    writes, https://docs.wandb.ai/ref/cli/wandb-login/). A netrc that does not parse counts as none."""
    import netrc

    env = os.environ if environ is None else environ
    if env.get("WANDB_API_KEY"):
        return True
    host = urlparse(env.get("WANDB_BASE_URL") or WANDB_DEFAULT_URL).hostname
    path = env.get("NETRC") or str(Path.home() / ".netrc")
    try:
        found = netrc.netrc(path).authenticators(host) if Path(path).is_file() else None
    except (netrc.NetrcParseError, OSError):
        return False
    return bool(found and found[2])


def wandb_mode(mode: str, environ: Mapping[str, str] | None = None) -> str | None:
    """The `mode` to give `wandb.init` for `logger.mode`.

    `auto`: None (W&B decides) when `WANDB_MODE` is set, so that `WANDB_MODE=disabled|offline|online` is honoured
    (an explicit `mode=` argument would override it: https://docs.wandb.ai/guides/track/environment-variables/);
    else `online` when W&B has credentials (`has_credentials`: an API key or `wandb login`), else `offline` (files
    under the run directory, `wandb sync` later). `online`, `offline`, `disabled`: as written.
    """
    env = os.environ if environ is None else environ
    if mode != "auto":
        return mode
    if env.get("WANDB_MODE"):
        return None
    return "online" if has_credentials(env) else "offline"


def start(cfg: RunConfig, run_path: Path, run_name: str) -> str | None:
    """Start the W&B run of a training run; return its id, or None for logger=none.

    Offline runs are written under `<run_path>/wandb/offline-run-*` and can be uploaded later
    with `wandb sync`. Under a launcher only the main process (rank 0) starts one: one W&B run per training run
    (transformers' `WandbCallback` logs from the main process only); the other ranks get None.
    """
    from rlvr_cli.training.distributed import launch_env

    if not cfg.use_wandb or not launch_env().is_main:
        return None
    import wandb

    log = cfg.logger
    run = wandb.init(
        project=log.project, entity=log.entity, group=log.group, tags=list(log.tags),
        name=run_name, dir=str(run_path), mode=wandb_mode(log.mode), config=to_node(cfg),
        settings=wandb.Settings(silent=True),
    )
    return run.id


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dicts as one level with `/`-joined keys: `{"eval": {"gsm8k": {"avg@4": 0.5}}}` ->
    `{"eval/gsm8k/avg@4": 0.5}` (W&B summaries take scalars)."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(flatten(v, f"{prefix}{k}/"))
        else:
            out[f"{prefix}{k}"] = v
    return out


def finish(summary: dict[str, Any]) -> None:
    """Copy the headline figures into the W&B run summary (nested ones flattened: `update_sparsity/changed_frac_tol`,
    `eval/gsm8k/avg@4`) and close the run, waiting until W&B has written all of it (no-op without a run)."""
    import sys

    wandb = sys.modules.get("wandb")
    if wandb is None or wandb.run is None:
        return
    wandb.run.summary.update({k: v for k, v in flatten(summary).items() if isinstance(v, (int, float, str))})
    wandb.finish(exit_code=0 if summary.get("status") == COMPLETED else 1)
    # `finish` only asks W&B's service process to close the run: on a loaded machine the run's .wandb file was still
    # being written after it returned. `teardown` waits until the service has written everything and stopped.
    wandb.teardown()


def log_eval(results: dict[str, Any], output_dir: Path, project: str = "rlvr") -> str:
    """Log `rlvr eval` results to a new W&B run (job type `eval`, files under `output_dir`); return its id.

    Scores go in as `<benchmark>/<metric>` in the run summary; the protocol and model identity as config.
    """
    import wandb

    run = wandb.init(project=project, job_type="eval", dir=str(output_dir), mode=wandb_mode("auto"),
                     name=f"eval-{Path(results['model']['spec']).name}",
                     config={"model": results["model"], "protocol": results["protocol"]},
                     settings=wandb.Settings(silent=True))
    run.summary.update(flatten({**results["benchmarks"], "overall": results["overall"]}))
    run.finish()
    wandb.teardown()  # everything written before rlvr says so (see `finish`)
    return run.id
