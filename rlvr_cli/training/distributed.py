"""Runs started by a multi-process launcher (`torchrun`, `accelerate launch`, `srun`): one run, whatever the
number of processes.

Every process (rank) runs the whole recipe; the main process (rank 0) alone creates the run directory and writes
metrics.jsonl, the heartbeat, summary.json, the final weights and the W&B run; the others follow it.

Which process this is comes from the environment the launcher sets on each worker:

- `torchrun` (and `accelerate launch`, which starts its workers through torchrun's launcher) sets `RANK`,
  `WORLD_SIZE`, `LOCAL_RANK`, `MASTER_ADDR` and `MASTER_PORT`:
  https://pytorch.org/docs/stable/elastic/run.html#environment-variables and
  https://huggingface.co/docs/accelerate/basic_tutorials/launch
- `srun` sets `SLURM_PROCID`, `SLURM_STEP_NUM_TASKS` (the tasks of this job step), `SLURM_NTASKS` and
  `SLURM_LOCALID` (https://slurm.schedmd.com/srun.html#SECTION_OUTPUT-ENVIRONMENT-VARIABLES); `use_slurm_env`
  copies them into torch's names (`srun torchrun ...` needs nothing: torchrun's `RANK` wins). The step's task
  count comes first, so that a batch script (one task) that runs `rlvr train` itself stays one process.

The process group itself is started by transformers (`TrainingArguments` starts accelerate's `PartialState`,
which calls `torch.distributed.init_process_group`: gloo on CPU, NCCL on CUDA); the helpers here only use it
once it exists, and do nothing in a single process.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from rlvr_cli.core.errors import BadInput, one_line

T = TypeVar("T")

#: Final statuses from the one that wins to the one that loses when ranks disagree (`agree`).
SEVERITY = ("failed", "diverged", "interrupted", "pruned", "completed")


@dataclass(frozen=True)
class Launch:
    """Where this process stands in a launch.

    Attributes:
        rank: this process's global rank (0 = the main process).
        world_size: the number of processes (1: no launcher).
        local_rank: its rank on this machine.
        launcher: `torchrun` (also `accelerate launch`), `slurm` (plain `srun`) or `none`.
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    launcher: str = "none"

    @property
    def is_main(self) -> bool:
        """Whether this is the main process (rank 0), the one that writes the run directory."""
        return self.rank == 0


def _int(environ: Mapping[str, str], key: str, default: int) -> int:
    try:
        return int(environ.get(key, default))
    except ValueError:
        raise BadInput(f"environment variable {key} must be an integer, got {environ.get(key)!r}") from None


def launch_env(environ: Mapping[str, str] | None = None) -> Launch:
    """This process's rank and the world size, from the launcher's environment (`RANK`, `WORLD_SIZE`,
    `LOCAL_RANK` first, else `SLURM_PROCID`, `SLURM_STEP_NUM_TASKS` or else `SLURM_NTASKS`, `SLURM_LOCALID`);
    `Launch()` (rank 0 of 1) without one.

    Args:
        environ: the environment to read; default `os.environ`.

    Raises:
        BadInput: one of these variables is not an integer.
    """
    env = os.environ if environ is None else environ
    if "RANK" in env and "WORLD_SIZE" in env:
        return Launch(_int(env, "RANK", 0), _int(env, "WORLD_SIZE", 1), _int(env, "LOCAL_RANK", 0), "torchrun")
    tasks = _int(env, "SLURM_STEP_NUM_TASKS" if "SLURM_STEP_NUM_TASKS" in env else "SLURM_NTASKS", 1)
    if "SLURM_PROCID" in env and tasks > 1:
        return Launch(_int(env, "SLURM_PROCID", 0), tasks, _int(env, "SLURM_LOCALID", 0), "slurm")
    return Launch()


def use_slurm_env(environ: dict[str, str] | None = None) -> Launch:
    """Under a plain `srun` with more than one task, set `RANK`, `WORLD_SIZE` and `LOCAL_RANK` from the SLURM
    variables, so that accelerate starts the process group; return this process's `Launch`.

    Raises:
        BadInput: `MASTER_ADDR` or `MASTER_PORT` is not set (the rendezvous address: the first node's host name
            and a free port, which srun does not set).
    """
    env = os.environ if environ is None else environ
    launch = launch_env(env)
    if launch.launcher != "slurm":
        return launch
    missing = [k for k in ("MASTER_ADDR", "MASTER_PORT") if not env.get(k)]
    if missing:
        raise BadInput(f"srun with {launch.world_size} tasks: {' and '.join(missing)} not set; export the first "
                       "node's host name and a free port, e.g. MASTER_ADDR=$(scontrol show hostnames "
                       "$SLURM_JOB_NODELIST | head -n1) MASTER_PORT=29500, or start `srun torchrun ...`")
    env.update(RANK=str(launch.rank), WORLD_SIZE=str(launch.world_size), LOCAL_RANK=str(launch.local_rank))
    return launch


def start_cpu_group(launch: Launch, timeout_s: float | None) -> None:
    """On CPU, start the gloo process group of a launch of several processes with a bounded collective timeout
    (`timeout_s` seconds; None: torch's default of 30 minutes), so that a rank that stops answering fails the others
    instead of holding them. transformers passes `ddp_timeout` to accelerate on GPUs only (the `use_cpu` branch of
    `TrainingArguments._setup_devices` gives no timeout); accelerate then uses the group started here. Nothing in a
    single process, on CUDA, or once a group runs. Reads `MASTER_ADDR`/`MASTER_PORT` from the launcher
    (`init_method="env://"`)."""
    import datetime

    import torch
    import torch.distributed as dist

    if launch.world_size <= 1 or torch.cuda.is_available() or initialised() or timeout_s is None:
        return
    dist.init_process_group("gloo", rank=launch.rank, world_size=launch.world_size,
                            timeout=datetime.timedelta(seconds=float(timeout_s)))


def initialised() -> bool:
    """Whether a `torch.distributed` process group is running in this process."""
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized()


def check_started(launch: Launch) -> None:
    """Refuse a launch of several processes whose process group did not start (call after the `GRPOConfig` is
    built): each process would train alone and race for the same run directory.

    Raises:
        BadInput: `launch.world_size > 1` and no process group is running.
    """
    if launch.world_size > 1 and not initialised():
        raise BadInput(f"launched as rank {launch.rank} of {launch.world_size} but no torch.distributed process "
                       "group started; start the run with torchrun, accelerate launch or srun")


def on_main(fn: Callable[[], T]) -> T:
    """Run `fn` on the main process only and give its result to every rank (`broadcast_object_list`); in a
    single process, just `fn()`.

    Raises:
        BadInput: on the other ranks, when `fn` raised on the main process (the same message); on the main
            process, whatever `fn` raised.
    """
    if not initialised():
        return fn()
    import torch.distributed as dist

    result, error, raised = None, None, None
    if dist.get_rank() == 0:
        try:
            result = fn()
        except Exception as e:  # noqa: BLE001 - re-raised below, after the other ranks have heard of it
            raised, error = e, str(e) if isinstance(e, BadInput) else f"{type(e).__name__}: {one_line(e)}"
    box = [(result, error)]
    dist.broadcast_object_list(box, src=0)
    if raised is not None:
        raise raised
    result, error = box[0]
    if error is not None:
        raise BadInput(error)
    return result


def gather(value: Any) -> list[Any]:
    """`value` of every rank, in rank order (`all_gather_object`); `[value]` in a single process."""
    if not initialised():
        return [value]
    import torch.distributed as dist

    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, value)
    return out


def every_rank(value: int, device: Any = "cpu") -> list[int]:
    """One small integer from every rank, in rank order (an all-reduce of one vector of world-size numbers on
    `device`, the trainer's device: NCCL reduces CUDA tensors only); `[value]` in a single process. Cheap enough
    for every optimizer step (GracefulStop agrees on stop signals with it)."""
    if not initialised():
        return [value]
    import torch
    import torch.distributed as dist

    t = torch.zeros(dist.get_world_size(), device=device)
    t[dist.get_rank()] = float(value)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return [int(v) for v in t.tolist()]


def agree(status: str, reason: str | None, figures: dict[str, Any]) -> tuple[str, str | None, list[dict[str, Any]]]:
    """The final status of the run from every rank's own: the most severe one wins (failed, diverged,
    interrupted, pruned, completed), with the reason of the first rank that has it (prefixed `rank N: ` for another
    rank than 0), so that every rank ends with the same status and exit code.

    Args:
        status, reason: this rank's final status and reason.
        figures: this rank's per-rank figures (e.g. `optimizer_state_bytes`, bytes).

    Returns:
        `(status, reason, [figures of rank 0, rank 1, ...])`.
    """
    ranks = gather({"status": status, "reason": reason, "figures": figures})
    worst = min(range(len(ranks)), key=lambda r: SEVERITY.index(ranks[r]["status"])
                if ranks[r]["status"] in SEVERITY else -1)
    why = ranks[worst]["reason"]
    if worst != 0 and why and ranks[0]["status"] != ranks[worst]["status"]:
        why = f"rank {worst}: {why}"
    return ranks[worst]["status"], why, [r["figures"] for r in ranks]


def barrier() -> None:
    """Wait until every rank gets here (`torch.distributed.barrier`); nothing in a single process. A failure of the
    collective (another rank gone) is ignored: the caller is ending."""
    if not initialised():
        return
    import torch.distributed as dist

    try:
        dist.barrier()
    except Exception:  # noqa: BLE001, S110 - ending anyway
        pass


#: Seconds a rank other than the main process waits before it exits with a non-zero code (`linger`).
LINGER_S = 3.0


def linger(code: int, launch: Launch | None = None, all_ranks: bool = False) -> None:
    """Before a rank other than the main process exits with the non-zero `code`, give the main process `LINGER_S`
    seconds to exit first: torchrun ends every worker (SIGTERM) as soon as one exits non-zero, so the main process
    would otherwise report -15 instead of the run's exit code. The SIGTERM that torchrun then sends this rank ends
    it with `code` too. Nothing on the main process (unless `all_ranks`: every rank refusing the same bad input, the
    first to exit gets the others SIGTERMed, which each answers with `code`), outside a launch, or for code 0."""
    import signal
    import sys
    import time

    launch = launch_env() if launch is None else launch
    if not code or (launch.is_main and not all_ranks) or launch.world_size <= 1:
        return

    def leave(signum, frame):
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)

    signal.signal(signal.SIGTERM, leave)
    # The main process (all_ranks) waits a third as long: it exits first, while the others sleep with the handler
    # installed (a SIGTERM during interpreter shutdown, once Python restored the default handler, would read -15).
    time.sleep(LINGER_S / 3 if launch.is_main else LINGER_S)


#: Set by `rlvr train`'s own launcher (`rlvr_cli.training.launcher.launch`) to its pid, for the ranks it starts.
LAUNCHER_ENV = "RLVR_LAUNCHER_PID"
def end_with_launcher(environ: Mapping[str, str] | None = None) -> bool:
    """In a rank that rlvr's launcher started (`LAUNCHER_ENV` set), ask the kernel for SIGTERM when the launcher
    dies (`rlvr_cli.core.parent_death.on_parent_death`), so that a SIGKILLed launcher leaves no rank running: each
    then stops after its step as on Ctrl-C. Nothing elsewhere (torchrun, srun, one process).

    Returns:
        whether the parent-death signal is armed.
    """
    import signal

    from rlvr_cli.core.parent_death import on_parent_death

    launcher = (os.environ if environ is None else environ).get(LAUNCHER_ENV)
    return bool(launcher) and on_parent_death(signal.SIGTERM, parent=int(launcher))
