"""`rlvr train distributed=ddp distributed.num_processes=N`: start the N processes of a run through torch's own
launcher (`torch.distributed.run`, the code behind `torchrun`, which `accelerate launch` also wraps), and end with
the run's exit code.

This process (the launching one) checks the inputs, picks the run's name, and becomes torchrun's agent: it starts
`python -m rlvr_cli.cli train OVERRIDES run_name=NAME` once per local rank, each in its own session (so a Ctrl-C in
the terminal reaches the agent only) with `RANK`, `WORLD_SIZE`, `MASTER_ADDR`... set, and watches them
(https://pytorch.org/docs/stable/elastic/run.html). The workers write the run directory (rank 0) exactly as under a
`torchrun` the user starts. Then:

- SIGTERM or Ctrl-C to this process: the agent passes the signal on to every worker, which stops after its current
  optimizer step, saves and ends `interrupted` (exit 130); a worker still running `distributed.shutdown_timeout`
  seconds later is killed (torchrun's `--shutdown-timeout`).
- SIGKILL of this process (nothing can be passed on): each worker gets SIGTERM from the kernel as its parent dies
  (`distributed.end_with_launcher`, a parent-death signal) and stops after its step, as on Ctrl-C.
- A worker that dies (killed, out of memory): the agent stops the others and reports which rank died and how; if the
  run's summary.json is not final then, this process writes it `failed`, naming that rank.

Why torch's launcher and not `accelerate launch` on CPU: accelerate's multi-CPU mode wants MPI and starts a single
process here; torchrun gives real multi-process gloo runs. On GPUs both start the same workers (accelerate launch's
multi-GPU path calls `torch.distributed.run`); transformers' `Trainer` reads FSDP and DeepSpeed settings from its
own arguments (`rlvr_cli.training.parallelism`), so no accelerate environment is needed. The run directory keeps an
`accelerate_config.yaml` for starting the run again with `accelerate launch`.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rlvr_cli.core import modes, run_dir
from rlvr_cli.core.errors import BadInput, one_line
from rlvr_cli.core.run_config import RunConfig
from rlvr_cli.training import distributed, parallelism


def needs_launch(cfg: RunConfig) -> bool:
    """Whether `rlvr train` must start its processes itself: a `distributed` choice other than `none` with more
    than one process in all, and this process not already one of a launch (torchrun, accelerate launch or srun with
    several tasks: `distributed.launch_env`).

    Raises:
        BadInput: `distributed.num_processes` is null and no GPU is visible (`parallelism.world_size`).
    """
    dist = cfg.distributed
    if not modes.multi_process(dist) or distributed.launch_env().world_size > 1:
        return False
    return parallelism.world_size(dist) > 1


def torchrun_args(cfg: RunConfig, overrides: Sequence[str], run_name: str, as_json: bool = False) -> list[str]:
    """The `torchrun` command line (without `torchrun` itself) that starts every local process of the run: one
    machine rendezvous on a free local port (`--standalone`), or the static rendezvous at `main_process_ip:
    main_process_port` for several machines; no restarts (a failed rank fails the run); the run's name fixed so
    that every machine writes to the same run.

    Args:
        cfg: the typed run config; overrides: what it was composed from; run_name: the run's name.
        as_json: pass `--json` to the workers (rank 0 prints the summary as JSON).
    """
    dist = cfg.distributed
    args = ["--nnodes", str(dist.num_machines),
            "--nproc-per-node", str(parallelism.processes_per_machine(dist)), "--max-restarts", "0",
            "--shutdown-timeout", str(dist.shutdown_timeout)]
    if dist.num_machines == 1 and not dist.main_process_ip:
        args.append("--standalone")
    else:
        args += ["--node-rank", str(dist.machine_rank), "--rdzv-backend", "static",
                 "--master-addr", str(dist.main_process_ip), "--master-port", str(dist.main_process_port)]
    worker = [o for o in overrides if not o.startswith(("run_name=", "+run_name="))] + [f"run_name={run_name}"]
    return [*args, "-m", "rlvr_cli.cli", "train", *worker, *(["--json"] if as_json else [])]


def prepare(cfg: RunConfig) -> Path:
    """Make here every check the workers will make (`rlvr_cli.training.recipe.check_inputs`, in this one process,
    without a process group) and pick the run directory they will write.

    Returns:
        the run directory's path (not created yet: rank 0 creates it).

    Raises:
        BadInput: bad input, found before any process starts; a run of several machines without `run_name`.
    """
    from rlvr_cli.training.recipe import check_inputs

    dist = cfg.distributed
    if dist.num_machines > 1 and not cfg.run_name:
        raise BadInput(f"distributed.num_machines={dist.num_machines}: give the run a name, the same on every machine "
                       "(run_name=NAME), so that they all write one run")
    return check_inputs(cfg, claim=dist.machine_rank == 0).path


def launch(cfg: RunConfig, overrides: Sequence[str], path: Path, as_json: bool = False) -> int:
    """Start the run's processes through `torch.distributed.run` and wait for them.

    Args:
        cfg: the typed run config; overrides: what it was composed from.
        path: the run directory (`prepare`); its name is given to every worker.
        as_json: rank 0 prints the summary as JSON.

    Returns:
        the run's exit code (`run_dir.EXIT_CODES` of the final status in its summary.json: 0 completed, 1 failed,
        3 diverged, 130 interrupted).
    """
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import get_args_parser, run

    argv = torchrun_args(cfg, overrides, path.name, as_json)
    os.environ[distributed.LAUNCHER_ENV] = str(os.getpid())  # the ranks end with this process (end_with_launcher)
    print(f"launching {parallelism.world_size(cfg.distributed)} processes: torchrun {' '.join(argv)}",
          file=sys.stderr)
    failures: dict[int, Any] = {}
    signalled = None
    try:
        run(get_args_parser().parse_args(argv))
    except ChildFailedError as e:
        failures = e.failures
    except SignalException as e:
        signalled = signal.Signals(e.sigval).name
    return finish(path, failures, signalled)


def died(failures: dict[int, Any]) -> str | None:
    """`rank N died (SIGKILL)` for the rank that ended by a signal (`ProcessFailure.exitcode` < 0) first, another
    signal than SIGTERM before SIGTERM (torchrun SIGTERMs the survivors); None when every failed rank exited by
    itself."""
    dead = [(f.exitcode == -15, f.timestamp, rank, f) for rank, f in failures.items() if f.exitcode < 0]
    if not dead:  # SIGTERM last: it is what torchrun sends the survivors once one rank died
        return None
    _, _, rank, failure = min(dead, key=lambda d: d[:3])
    return f"rank {rank} died ({failure.signal_name()})"


def finish(path: Path, failures: dict[int, Any], signalled: str | None) -> int:
    """The exit code of a launched run, from its summary.json; a summary left `running` (a rank died, or the workers
    were killed before they wrote it) becomes `failed` (or `interrupted` after a stop signal), naming the dead rank,
    with `global_step` the last step metrics.jsonl logged (issue 19: it was null beside logged steps).
    A run whose every failed rank refused bad input (exit 2) exits 2 and touches no summary.json: the one there may
    be another run's (two runs racing for one `run_name`: the loser's rank 0 finds the directory taken). A run that
    never wrote a summary exits 1 when torchrun reported failures or a signal came (multi-machine runs: on the
    machines other than the first, whose run directory is rank 0's, this process reads no summary and reports
    torchrun's result)."""
    if failures and {f.exitcode for f in failures.values()} == {2}:
        return 2  # every rank refused bad input, e.g. a run directory another run created first: not this run's
    summary = run_dir.read_summary(path)
    dead = died(failures)
    if summary is None:
        return 1 if failures or signalled else 0
    if summary.get("status") in run_dir.FINAL:
        if dead and summary["status"] == run_dir.FAILED and dead not in (summary.get("reason") or ""):
            summary["reason"] = f"{dead}; then {summary.get('reason')}"
            run_dir.write_summary(run_dir.RunDir(path), summary)
            print(f"error: run failed: {summary['reason']}", file=sys.stderr)
        return run_dir.EXIT_CODES[summary["status"]]
    status = run_dir.INTERRUPTED if signalled and not dead else run_dir.FAILED
    reason = dead or (f"stopped by {signalled}; the workers did not finish within the shutdown timeout"
                      if signalled else "the workers ended without a final status")
    records = run_dir.read_metrics(run_dir.RunDir(path).metrics)  # the steps the run logged: what it got to
    summary.update(status=status, reason=reason, global_step=records[-1].get("step") if records else 0)
    try:
        run_dir.write_summary(run_dir.RunDir(path), summary)
    except OSError as e:
        print(f"error: cannot write {path}/summary.json: {one_line(e)}", file=sys.stderr)
    print(f"error: run {status}: {reason}", file=sys.stderr)
    return run_dir.EXIT_CODES[status]
