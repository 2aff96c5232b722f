"""`rlvr sweep --launcher submitit_slurm` on a real one-node SLURM cluster (tests/slurm/start_cluster.sh, which
installs and starts it; root and apt-get needed, else these tests skip): every cell one sbatch job sized by its
`distributed` group, a two-process DDP cell on the CPU, and job polling that stays quiet without accounting and
still ends a job that left the queue without a result."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
from conftest import REPO
from omegaconf import OmegaConf

pytestmark = pytest.mark.slow

START = REPO / "tests" / "slurm" / "start_cluster.sh"
SWEEP = REPO / "tests" / "slurm" / "sweep.yaml"
#: What submitit prints at each status poll when sacct fails, and what sacct itself prints without accounting.
NOISE = ("Bypassing sacct error", "accounting storage is disabled")


@pytest.fixture(scope="module")
def cluster():
    """A running one-node cluster; stopped at the end when this fixture started it."""
    if os.geteuid() != 0:
        pytest.skip("needs root: tests/slurm/start_cluster.sh installs and starts munged, slurmctld and slurmd")
    if shutil.which("slurmctld") is None and shutil.which("apt-get") is None:
        pytest.skip("SLURM is not installed and there is no apt-get to install it")
    if (os.cpu_count() or 1) < 2:
        pytest.skip("the two-process cell needs 2 CPUs")
    started = subprocess.run([str(START)], capture_output=True, text=True, timeout=900)
    if started.returncode in (2, 3):  # not root, or SLURM could not be installed
        pytest.skip(f"no SLURM cluster: {started.stderr.strip()}")
    assert started.returncode == 0, started.stdout + started.stderr
    yield
    if "rlvr-slurm: started" in started.stdout:
        subprocess.run([str(START), "--stop"], check=True, capture_output=True, timeout=120)


def test_sweep_runs_every_cell_as_one_slurm_job_sized_by_its_processes(cluster, tmp_path):
    out = tmp_path / "sweep"
    proc = subprocess.run(
        [sys.executable, "-m", "rlvr_cli.cli", "sweep", str(SWEEP), "--launcher", "submitit_slurm",
         "--max-parallel", "2", "--output-dir", str(out), "--json", "hydra.launcher.gpus_per_node=0",
         "hydra.launcher.cpus_per_task=1", "hydra.launcher.mem_gb=1", "hydra.launcher.timeout_min=20"],
        capture_output=True, text=True, timeout=1200, cwd=REPO, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-4000:]
    for noise in NOISE:
        assert noise not in proc.stdout + proc.stderr
    doc = json.loads(proc.stdout)
    cells = {c["name"]: c for c in doc["cells"]}
    assert len(cells) == 4 and {c["status"] for c in cells.values()} == {"completed"}, cells
    assert {c["name"]: c["status"] for c in doc["report"]["cells"]} == {n: "completed" for n in cells}
    two = "sgd-lr0.01_num_processes2"
    assert cells[two]["job"] == {"nodes": 1, "tasks_per_node": 1, "gpus_per_node": 0, "cpus_per_task": 2,
                                 "mem_gb": 2, "timeout_min": 20, "partition": None}
    assert cells["sgd-lr0.01_num_processes1"]["job"]["cpus_per_task"] == 1

    # each job went through sbatch with its cell's settings: two arrays, one per job shape
    scripts = sorted((out / ".hydra" / ".submitit").glob("*/*_submission.sh"), key=lambda s: int(s.parent.name))
    assert len(scripts) == 2, scripts
    flags = [{ln for ln in s.read_text().splitlines() if ln.startswith("#SBATCH")} for s in scripts]
    for f, cpus in zip(flags, ("1", "2"), strict=True):
        assert {f"#SBATCH --cpus-per-task={cpus}", "#SBATCH --nodes=1", "#SBATCH --ntasks-per-node=1",
                "#SBATCH --gpus-per-node=0", "#SBATCH --array=0-1%2"} <= f, f

    # the report agrees, read back from the directory alone
    report = subprocess.run([sys.executable, "-m", "rlvr_cli.cli", "report", str(out), "--json"],
                            capture_output=True, text=True, check=True, cwd=REPO)
    assert {c["status"] for c in json.loads(report.stdout)["cells"]} == {"completed"}

    # every job's processes meet on a port of the job's own (cells that share a node do not collide)
    ports = {n: OmegaConf.load(out / "runs" / n / "config.yaml").distributed.main_process_port for n in cells}
    assert len(set(ports.values())) == 4 and all(20000 <= p < 30000 for p in ports.values()), ports

    # the two-process cell ran as two ranks (its rlvr train started them inside the job's one task)
    summary = json.loads((out / "runs" / two / "summary.json").read_text())
    assert summary["world_size"] == 2, summary.get("world_size")


POLL = """
import sys, time, subprocess, submitit
from submitit.core.utils import UncompletedJobError
from rlvr_cli.sweeps.slurm import poll_quietly
poll_quietly()
ex = submitit.AutoExecutor(folder=sys.argv[1], cluster="slurm")
ex.update_parameters(timeout_min=5, cpus_per_task=1, mem_gb=1)
job = ex.submit(time.sleep, 600)
deadline = time.time() + 120
while job.watcher.get_state(job.job_id, mode="force") != "RUNNING":
    assert time.time() < deadline, job.state
    time.sleep(1)
subprocess.run(["scancel", job.job_id], check=True)
start = time.time()
job.wait()  # without a status source this waits forever: no result file ever comes
error = job.exception()
assert isinstance(error, UncompletedJobError), error
print(job.state, round(time.time() - start))
"""


def test_a_job_cancelled_without_result_ends_and_polling_stays_quiet(cluster, tmp_path):
    """No sacct here: the watcher reads squeue, so a cancelled job is seen as ended, and submitit then reports it
    failed for want of its result file, instead of waiting on an `UNKNOWN` state for ever."""
    proc = subprocess.run([sys.executable, "-c", POLL, str(tmp_path)], capture_output=True, text=True,
                          timeout=300, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    state, waited = proc.stdout.split()
    assert state in ("CANCELLED", "LEFT_QUEUE") and int(waited) < 120, proc.stdout
    for noise in NOISE:
        assert noise not in proc.stderr
