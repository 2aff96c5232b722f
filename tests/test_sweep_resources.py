"""`rlvr sweep --launcher submitit_slurm` without a cluster: each cell's SLURM job from its `distributed` group,
cells grouped into one multirun per job shape, the dry run's job column, the per-node arguments of a multi-node
cell, and the squeue-based polling of `rlvr_cli.sweeps.slurm` (tests/test_slurm.py runs it all on a real SLURM)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from rlvr_cli.cli.main import app
from rlvr_cli.core.compose import compose
from rlvr_cli.sweeps.launch import cell_job, job_groups, multirun_command
from rlvr_cli.sweeps.slurm import JobSettings, job_settings, launcher_settings, node_overrides, train_env

runner = CliRunner()
SMOKE = Path(__file__).resolve().parents[1] / "sweeps" / "smoke.yaml"

#: Two optimizers x one or two processes x one or two machines: three job shapes.
SWEEP = """\
name: shapes
base: [model=tiny-random, logger=none, grpo.max_steps=2, distributed=ddp]
axes:
  optimizer: {sgd: {lr: [0.01]}, adamw: {lr: [1.0e-4]}}
  overrides: {distributed.num_processes: [1, 2], distributed.num_machines: [1, 2]}
"""


def test_a_cell_gets_one_task_per_node_and_n_times_the_per_process_resources():
    gpu = {"gpus_per_node": 1, "cpus_per_task": 8, "mem_gb": 64, "timeout_min": 1440, "partition": "gpu"}
    assert job_settings(gpu, 4, 2) == JobSettings(nodes=2, tasks_per_node=1, gpus_per_node=4, cpus_per_task=32,
                                                  mem_gb=256, timeout_min=1440, partition="gpu")
    assert job_settings(gpu, 1, 1).overrides() == [
        "hydra.launcher.nodes=1", "hydra.launcher.tasks_per_node=1", "hydra.launcher.gpus_per_node=1",
        "hydra.launcher.cpus_per_task=8", "hydra.launcher.mem_gb=64"]
    cpu = {**gpu, "gpus_per_node": 0, "cpus_per_task": 1, "mem_gb": 3, "partition": None}
    two = job_settings(cpu, 2, 1)  # a CPU cluster: no GPUs, twice the CPUs
    assert (two.gpus_per_node, two.cpus_per_task, two.mem_gb) == (0, 2, 6)
    assert two.describe() == "1 node x 1 task, 0 GPUs, 2 CPUs, 6 GB, 1440 min, partition (default)"
    # null processes (every visible GPU): the launcher's settings as they are
    assert job_settings({**gpu, "gpus_per_node": 8}, None, 1).gpus_per_node == 8
    assert job_settings({**gpu, "cpus_per_task": None, "mem_gb": None}, 2, 1).overrides()[-1].startswith(
        "hydra.launcher.gpus_per_node=")


def test_cells_are_grouped_by_job_in_the_order_of_their_first_cell():
    a, b = JobSettings(1, 1, 1, 8, 64, 60, None), JobSettings(1, 1, 2, 16, 128, 60, None)
    jobs = [a, b, a, None, b]
    assert job_groups([0, 1, 2, 4], jobs) == [(a, [0, 2]), (b, [1, 4])]
    assert job_groups([3], jobs) == [(None, [3])]  # the local launchers: one multirun, as before


def test_each_group_multirun_composes_its_job_settings_through_hydra(tmp_path):
    """The group's overrides reach the submitit launcher's config (Hydra's own composition, `--cfg hydra`), after
    the command line's, and the SLURM multirun installs the quiet polling callback."""
    settings = launcher_settings("slurm", ["hydra.launcher.gpus_per_node=0", "hydra.launcher.cpus_per_task=1",
                                           "hydra.launcher.partition=debug"])
    assert (settings["gpus_per_node"], settings["cpus_per_task"], settings["timeout_min"]) == (0, 1, 1440)
    job = cell_job(compose(["distributed=ddp", "distributed.num_processes=2", "distributed.num_machines=3"]),
                   "submitit_slurm", settings)
    assert job == JobSettings(nodes=3, tasks_per_node=1, gpus_per_node=0, cpus_per_task=2, mem_gb=128,
                              timeout_min=1440, partition="debug")
    cmd = multirun_command(tmp_path, [1, 3], "submitit_slurm", 2, ["hydra.launcher.cpus_per_task=1",
                                                                   *job.overrides()])
    assert "+hydra.callbacks.quiet_polling._target_=rlvr_cli.sweeps.slurm.QuietPolling" in cmd
    single = [a if not a.startswith("cell=") else "cell=1" for a in cmd[4:]]
    shown = subprocess.run([*cmd[:3], "--cfg", "hydra", *single], capture_output=True, text=True, check=True).stdout
    launcher = shown.split("\n  launcher:\n", 1)[1].split("\n  sweeper:\n", 1)[0]
    for line in ("nodes: 3", "tasks_per_node: 1", "gpus_per_node: 0", "cpus_per_task: 2", "mem_gb: 128",
                 "array_parallelism: 2"):
        assert f"    {line}\n" in launcher, line
    assert "rlvr_cli.sweeps.slurm.QuietPolling" in shown.split("\n  callbacks:\n", 1)[1]
    assert cell_job(compose([]), "submitit_local", settings) is None


def test_dry_run_shows_each_cells_slurm_job_in_the_table_and_the_json(tmp_path):
    sweep = tmp_path / "shapes.yaml"
    sweep.write_text(SWEEP)
    args = ["sweep", str(sweep), "--dry-run", "--launcher", "submitit_slurm", "--output-dir", str(tmp_path / "out"),
            "hydra.launcher.gpus_per_node=0", "hydra.launcher.cpus_per_task=1", "hydra.launcher.mem_gb=1",
            "hydra.launcher.partition=debug", "hydra.launcher.timeout_min=30"]
    r = runner.invoke(app, [*args, "--json"])
    assert r.exit_code == 0, r.output
    cells = {c["name"]: c["job"] for c in json.loads(r.stdout)["cells"]}
    assert len(cells) == 8
    assert cells["sgd-lr0.01_num_processes2_num_machines2"] == {
        "nodes": 2, "tasks_per_node": 1, "gpus_per_node": 0, "cpus_per_task": 2, "mem_gb": 2, "timeout_min": 30,
        "partition": "debug"}
    assert cells["adamw-lr0.0001_num_processes1_num_machines1"]["cpus_per_task"] == 1
    assert not (tmp_path / "out").exists()

    table = subprocess.run([sys.executable, "-m", "rlvr_cli.cli", *args], capture_output=True, text=True,
                           env={**os.environ, "COLUMNS": "250"}, check=True).stdout
    assert "SLURM job" in table
    assert table.count("2 nodes x 1 task, 0 GPUs, 2 CPUs, 2 GB, 30 min, partition debug") == 2
    assert table.count("1 node x 1 task, 0 GPUs, 1 CPU, 1 GB, 30 min, partition debug") == 2

    basic = runner.invoke(app, ["sweep", str(sweep), "--dry-run", "--json", "--output-dir", str(tmp_path / "o")])
    assert basic.exit_code == 0 and {c["job"] for c in json.loads(basic.stdout)["cells"]} == {None}


@pytest.mark.parametrize("override,message", [
    ("hydra.launcher.nodes=2", "hydra.launcher.nodes=2: under submitit_slurm hydra.launcher.nodes is set for each "
                               "cell from distributed.num_machines"),
    ("hydra.launcher.tasks_per_node=4", "is set for each cell from rlvr train, which starts"),
    ("hydra.launcher.gpus_per_node=abc", "launcher settings: Error merging override "
                                         "hydra.launcher.gpus_per_node=abc; Value 'abc' of type 'str'"),
    ("hydra.launcher.gpu=1", "launcher settings: Could not override 'hydra.launcher.gpu'."),
])
def test_bad_launcher_overrides_fail_in_one_line_before_anything_is_written(override, message, tmp_path):
    r = runner.invoke(app, ["sweep", str(SMOKE), "--launcher", "submitit_slurm", "--output-dir",
                            str(tmp_path / "out"), override])
    assert r.exit_code == 2, r.output
    assert r.stderr.startswith("error: ") and message in r.stderr and r.stderr.count("\n") == 1, r.stderr
    assert not (tmp_path / "out").exists()


def test_each_node_of_a_multi_node_cell_is_told_its_rank_and_the_rendezvous_host():
    assert node_overrides(1, 0, ["n1"], 1234) == ["++distributed.main_process_port=21234"]
    assert node_overrides(3, 2, ["n1", "n2", "n3"], 56789) == [
        "++distributed.machine_rank=2", "++distributed.main_process_ip=n1", "++distributed.main_process_port=26789"]
    for cell in (["distributed=none"], ["distributed=ddp", "distributed.num_machines=3"]):  # every option takes them
        cfg = compose([*cell, *node_overrides(3, 2, ["n1", "n2", "n3"], 56789)])
        assert (cfg.distributed.machine_rank, cfg.distributed.main_process_ip) == (2, "n1")
        assert cfg.distributed.main_process_port == 26789
    env = train_env({"SLURM_JOB_ID": "7", "SLURM_PROCID": "1", "SLURM_STEP_NUM_TASKS": "2", "SLURM_NODEID": "1",
                     "RANK": "1", "PATH": "/bin"})
    assert env == {"SLURM_JOB_ID": "7", "SLURM_NODEID": "1", "PATH": "/bin"}  # rlvr train is the launcher here


def test_queue_watcher_reads_squeue_and_calls_a_job_that_left_the_queue_done():
    """The watcher `poll_quietly` installs, fed what `squeue --array --states=all --format=%i|%T|%N` prints on a
    cluster without accounting (no scheduler is asked: `accounting` is set as the first poll would set it)."""
    code = """
from submitit.slurm.slurm import SlurmJob
from rlvr_cli.sweeps.slurm import poll_quietly, LEFT_QUEUE
poll_quietly(); poll_quietly()
w = SlurmJob.watcher
assert type(w).__name__ == "QueueWatcher" and w._delay_s == 600, w
w.accounting = False
for j in ("5_0", "5_1", "5_2", "6", "7"):
    w.register_job(j)
w._info_dict.update(w.read_info("5_0|COMPLETED|vm\\n5_1|RUNNING|vm\\n5_2|PENDING|\\n6|CONFIGURING|vm\\n9|RUNNING|x\\n"))
states = {j: w.get_state(j, mode="cache") for j in ("5_0", "5_1", "5_2", "6", "7")}
assert states == {"5_0": "COMPLETED", "5_1": "RUNNING", "5_2": "PENDING", "6": "CONFIGURING", "7": LEFT_QUEUE}, states
done = {j: w.is_done(j, mode="cache") for j in states}
assert done == {"5_0": True, "5_1": False, "5_2": False, "6": False, "7": True}, done
assert w._make_command()[:2] == ["squeue", "--noheader"]
print("ok")
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout == "ok\n", out.stderr
