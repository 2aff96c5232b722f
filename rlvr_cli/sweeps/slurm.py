"""SLURM specifics of `rlvr sweep --launcher submitit_slurm`: one job per cell sized by the cell's `distributed`
group, the per-node arguments of a multi-node cell, and quiet, correct job polling on clusters without accounting.

A cell is one SLURM job with one task per node. That task runs the cell's `rlvr train`, which starts the cell's
`distributed.num_processes` processes on its node itself (torch.distributed.run), so the job gets
`distributed.num_machines` nodes, and per node N times the per-process GPUs, CPUs and memory of
`conf/hydra/launcher/slurm.yaml` (`job_settings`). Hydra's submitit launcher takes one set of executor parameters
per multirun, not per job, so `rlvr sweep` runs one multirun per distinct job shape (`rlvr_cli.sweeps.launch`).

Job polling: submitit's `SlurmInfoWatcher` asks `sacct` for the state of the jobs it waits for. Without SLURM
accounting (`AccountingStorageType=accounting_storage/none`, common on small clusters) every call fails, and
submitit logs "Bypassing sacct error ..., status may be inaccurate" at each poll (submitit 1.5.4,
`submitit/core/core.py` line 135, `InfoWatcher.update`:
https://github.com/facebookincubator/submitit/blob/main/submitit/core/core.py) and keeps the state `UNKNOWN`, which
it treats as unfinished: a job that dies without writing its result file (a time limit, `scancel`, a lost node)
is then waited for forever. submitit has no setting for another status source, and hydra-submitit-launcher builds
the executor itself, so `QueueWatcher` replaces the class attribute `submitit.slurm.slurm.SlurmJob.watcher`
(`watcher = SlurmInfoWatcher(delay_s=600)`, `submitit/slurm/slurm.py` line 104 of the same release) in the
multirun process only, installed by the Hydra callback `QuietPolling` that
`rlvr sweep` adds to the SLURM multirun's command line. With accounting it changes nothing; without, it reads
`squeue`, which also lists finished jobs for a few minutes (`MinJobAge`, https://slurm.schedmd.com/slurm.conf.html),
and calls a job that has left the queue done, so submitit then judges it by its result file, as always.
"""

from __future__ import annotations

import functools
import getpass
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from hydra.experimental.callback import Callback

from rlvr_cli.core.errors import BadInput, one_line

#: `hydra.launcher` keys that rlvr sets for each cell's job; the command line must not set them.
PER_CELL = {"nodes": "distributed.num_machines (one task per node)",
            "tasks_per_node": "rlvr train, which starts distributed.num_processes processes itself"}
#: The state `QueueWatcher` gives a job that `squeue` no longer lists (it ended; its result file tells how).
LEFT_QUEUE = "LEFT_QUEUE"
#: SLURM job states (https://slurm.schedmd.com/squeue.html#SECTION_JOB-STATE-CODES) of a job that is still queued,
#: running or about to run again: submitit's own unfinished states plus those it does not list.
UNFINISHED = frozenset({"READY", "PENDING", "RUNNING", "UNKNOWN", "REQUEUED", "COMPLETING", "PREEMPTED",
                        "CONFIGURING", "RESIZING", "SUSPENDED", "STOPPED", "SIGNALING", "STAGE_OUT",
                        "REQUEUE_HOLD", "REQUEUE_FED", "RESV_DEL_HOLD"})


@dataclass(frozen=True)
class JobSettings:
    """The SLURM job of one cell: sbatch's `--nodes`, `--ntasks-per-node`, `--gpus-per-node`, `--cpus-per-task`,
    `--mem` (GB, per node), `--time` (minutes) and `--partition` (None: the cluster's default). Integers, as
    hydra-submitit-launcher's `SlurmQueueConf` types them."""

    nodes: int
    tasks_per_node: int
    gpus_per_node: int
    cpus_per_task: int | None
    mem_gb: int | None
    timeout_min: int
    partition: str | None

    def overrides(self) -> list[str]:
        """The `hydra.launcher.*` overrides that give a multirun these settings (unset ones are left out)."""
        values = {"nodes": self.nodes, "tasks_per_node": self.tasks_per_node, "gpus_per_node": self.gpus_per_node,
                  "cpus_per_task": self.cpus_per_task, "mem_gb": self.mem_gb}
        return [f"hydra.launcher.{k}={v}" for k, v in values.items() if v is not None]

    def describe(self) -> str:
        """One line for the sweep's table: `1 node x 1 task, 2 GPUs, 16 CPUs, 128 GB, 1440 min, partition gpu`."""
        def n(count: int, unit: str) -> str:
            return f"{count} {unit}{'' if count == 1 else 's'}"

        parts = [f"{n(self.nodes, 'node')} x {n(self.tasks_per_node, 'task')}", n(self.gpus_per_node, "GPU")]
        if self.cpus_per_task is not None:
            parts.append(n(self.cpus_per_task, "CPU"))
        if self.mem_gb is not None:
            parts.append(f"{self.mem_gb} GB")
        parts += [f"{self.timeout_min} min", f"partition {self.partition or '(default)'}"]
        return ", ".join(parts)


def check_launcher_overrides(overrides: Sequence[str]) -> None:
    """Refuse `hydra.launcher.*` overrides that `rlvr sweep --launcher submitit_slurm` sets per cell (`PER_CELL`).

    Raises:
        BadInput: e.g. `hydra.launcher.nodes=2`, naming the `distributed` key that sets it instead.
    """
    for o in overrides:
        key = o.lstrip("+~").split("=", 1)[0]
        name = key.removeprefix("hydra.launcher.")
        if key.startswith("hydra.launcher.") and name in PER_CELL:
            raise BadInput(f"{o}: under submitit_slurm {key} is set for each cell from {PER_CELL[name]}; drop it "
                           "and set distributed.num_machines / distributed.num_processes in the sweep instead")


def launcher_settings(launcher_config: str, overrides: Sequence[str]) -> dict[str, Any]:
    """The `hydra.launcher` settings a sweep's multirun gets: Hydra composes `conf/hydra/launcher/<launcher_config>
    .yaml` (over the plugin's defaults) with the command line's `hydra.*` overrides, exactly as the multirun will, in
    this process (Hydra's compose API with the `hydra` node, `rlvr_cli.core.compose.hydra_session`: 0.14 s, where a
    `--cfg hydra` subprocess took 0.4 s; interpolations left as written).

    Args:
        launcher_config: an option of the `hydra/launcher` group, e.g. `slurm`.
        overrides: `hydra.*` overrides, e.g. `["hydra.launcher.gpus_per_node=0"]`.

    Raises:
        BadInput: Hydra refuses an override (an unknown key, a wrong type, bad syntax): its message in one line.
    """
    from hydra import compose as hydra_compose
    from omegaconf import OmegaConf

    from rlvr_cli.core.compose import hydra_session

    try:
        with hydra_session():
            cfg = hydra_compose(config_name="sweep_job", return_hydra_config=True,
                                overrides=["sweep_dir=.", "cell=0", f"hydra/launcher={launcher_config}", *overrides])
    except Exception as e:  # Hydra's composition and override-grammar errors, with OmegaConf's as their cause
        why = "; ".join(one_line(x) for x in (e, e.__cause__) if x is not None)
        raise BadInput(f"launcher settings: {one_line(why, 300)}") from None
    return OmegaConf.to_container(cfg.hydra.launcher, resolve=False)


def job_settings(launcher: Mapping[str, Any], num_processes: int | None, num_machines: int) -> JobSettings:
    """The SLURM job of a cell with `num_processes` processes on each of `num_machines` machines.

    One task per node (its `rlvr train` starts the node's processes). `gpus_per_node`, `cpus_per_task` and
    `mem_gb` of the launcher settings count per process, so a node gets N times each: N GPUs on a GPU partition
    (`gpus_per_node: 1`), none on a CPU cluster (`hydra.launcher.gpus_per_node=0`) and N times the CPUs there.
    `num_processes=None` (every visible GPU) takes the launcher's settings as they are: the job's GPUs then decide
    how many processes run.

    Args:
        launcher: `launcher_settings(...)`.
        num_processes: the cell's `distributed.num_processes` (>= 1, or None).
        num_machines: the cell's `distributed.num_machines` (>= 1).
    """
    k = num_processes or 1
    gpus = launcher.get("gpus_per_node") or 0
    cpus, mem = launcher.get("cpus_per_task"), launcher.get("mem_gb")
    return JobSettings(nodes=num_machines, tasks_per_node=1, gpus_per_node=gpus * k,
                       cpus_per_task=None if cpus is None else cpus * k,
                       mem_gb=None if mem is None else mem * k, timeout_min=launcher.get("timeout_min"),
                       partition=launcher.get("partition"))


def rendezvous_port(slurm_job_id: int) -> int:
    """The rendezvous port of a job's processes: 20000 + the job id mod 10000. The same on every node of the job,
    different for jobs that share a node (two 4-GPU cells on one 8-GPU node would both take the default 29500)
    unless their ids differ by a multiple of 10000, and below Linux's ephemeral ports (32768-60999), which the
    system hands out to outgoing connections.

    Args:
        slurm_job_id: `SLURM_JOB_ID` (an array element has its own).
    """
    return 20000 + slurm_job_id % 10000


def node_overrides(num_nodes: int, node: int, hostnames: Sequence[str], slurm_job_id: int) -> list[str]:
    """The overrides of one node's `rlvr train` in a cell's job: the rendezvous port (`rendezvous_port`; replaces
    the cell's `distributed.main_process_port`), and for a multi-node job this node's machine rank
    (`SLURM_NODEID`) and the job's first host as the rendezvous host (`distributed.main_process_ip`). `++`: the
    keys are added where the cell's `distributed` option lacks them (`distributed=none`: one process, unused).

    Args:
        num_nodes: the job's nodes (`SLURM_JOB_NUM_NODES`).
        node: this node's index, 0..num_nodes-1 (`SLURM_NODEID`).
        hostnames: the job's hosts in order (`SLURM_JOB_NODELIST` expanded, as `submitit.JobEnvironment().hostnames`).
        slurm_job_id: `SLURM_JOB_ID`.
    """
    port = [f"++distributed.main_process_port={rendezvous_port(slurm_job_id)}"]
    if num_nodes <= 1:
        return port
    return [f"++distributed.machine_rank={node}", f"++distributed.main_process_ip={hostnames[0]}", *port]


#: Variables a launcher sets per task; the task's `rlvr train` is the launcher of its processes, so it must not see
#: them (it would take itself for one rank of an `srun` of several tasks: `rlvr_cli.training.distributed`).
TASK_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT",
                  "SLURM_PROCID", "SLURM_LOCALID", "SLURM_NTASKS", "SLURM_NPROCS", "SLURM_STEP_NUM_TASKS")


def train_env(environ: Mapping[str, str]) -> dict[str, str]:
    """The environment of a cell's `rlvr train` inside its SLURM task: `environ` without `TASK_VARIABLES` (the job
    id, node list and the rest of SLURM's variables stay)."""
    return {k: v for k, v in environ.items() if k not in TASK_VARIABLES}


def accounting_enabled() -> bool:
    """Whether the cluster keeps job accounting (`sacct` answers): `scontrol show config`'s AccountingStorageType
    (https://slurm.schedmd.com/slurm.conf.html#OPT_AccountingStorageType) names a storage other than
    `accounting_storage/none` (unset in newer SLURM: `(null)`). True when scontrol fails (then submitit's own
    `sacct` polling runs, as without rlvr)."""
    try:
        out = subprocess.run(["scontrol", "show", "config"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return True
    for line in out.splitlines():
        key, _, value = line.partition("=")
        if key.strip() == "AccountingStorageType":
            return value.strip() not in ("", "(null)", "none", "accounting_storage/none")
    return True


@functools.cache
def _queue_watcher_class() -> type:
    from submitit.slurm.slurm import SlurmInfoWatcher

    class QueueWatcher(SlurmInfoWatcher):
        """submitit's SLURM watcher, with `squeue` instead of `sacct` on clusters without accounting (see the
        module docstring). Job ids as submitit keeps them: `123` or `123_4` (array element 4)."""

        def __init__(self, delay_s: int = 600) -> None:
            super().__init__(delay_s=delay_s)
            self.accounting: bool | None = None  # decided at the first poll

        def _make_command(self) -> list[str] | None:
            if self.accounting is None:
                self.accounting = accounting_enabled()
            if self.accounting:
                return super()._make_command()
            if not self._registered - self._finished:
                return None
            # every job of this user, array elements one per line, finished ones too while slurmctld keeps them
            # (`squeue -j` fails as a whole once one of the ids has been purged)
            return ["squeue", "--noheader", "--array", "--states=all", "--format=%i|%T|%N",
                    f"--user={getpass.getuser()}"]

        def read_info(self, string: bytes | str) -> dict[str, dict[str, str]]:
            """Job id -> `{"JobID", "State", "NodeList"}` from squeue's `%i|%T|%N` lines (sacct's output with
            accounting); a job waited for that squeue does not list gets the state `LEFT_QUEUE`."""
            if self.accounting:
                return super().read_info(string)
            text = string.decode() if isinstance(string, bytes) else string
            info: dict[str, dict[str, str]] = {}
            for line in text.splitlines():
                fields = line.strip().split("|")
                if len(fields) == 3:
                    info[fields[0]] = {"JobID": fields[0], "State": fields[1], "NodeList": fields[2]}
            for job_id in self._registered - self._finished:
                if job_id not in info:
                    info[job_id] = {"JobID": job_id, "State": LEFT_QUEUE, "NodeList": ""}
            return info

        def is_done(self, job_id: str, mode: str = "standard") -> bool:
            """Whether the job has ended: its state is not one of `UNFINISHED` (`mode` as submitit's)."""
            if self.accounting:
                return super().is_done(job_id, mode=mode)
            return self.get_state(job_id, mode=mode).upper() not in UNFINISHED

    return QueueWatcher


def poll_quietly() -> None:
    """Make submitit's SLURM jobs in this process poll through `QueueWatcher` (see the module docstring). Jobs
    made before the call keep their watcher; call it before any job is submitted. Idempotent."""
    from submitit.slurm.slurm import SlurmJob

    watcher_class = _queue_watcher_class()
    if not isinstance(SlurmJob.watcher, watcher_class):
        SlurmJob.watcher = watcher_class(delay_s=SlurmJob.watcher._delay_s)


class QuietPolling(Callback):
    """Hydra callback (https://hydra.cc/docs/experimental/callbacks/) that calls `poll_quietly` in the multirun
    process before the launcher submits anything. `rlvr sweep` adds it to SLURM multiruns as
    `+hydra.callbacks.quiet_polling._target_=rlvr_cli.sweeps.slurm.QuietPolling`."""

    def on_multirun_start(self, config: Any, **kwargs: Any) -> None:
        """Install the watcher (`poll_quietly`)."""
        poll_quietly()
