"""One sweep cell as a Hydra job: the `@hydra.main` entry point that `rlvr sweep` runs under `--multirun`.

Hydra's launchers exist only under `@hydra.main` multirun, so the sweep runs this small program;
each job reads its cell from the sweep directory's `manifest.json` and runs it as a `rlvr train`
subprocess (its own process: a crash, a divergence or a signal stays inside the cell, and the run
directory records it). The job returns the cell's status.

Under SLURM (`rlvr sweep --launcher submitit_slurm`) a cell's job has one task per node, and each task runs
this: its `rlvr train` starts the node's `distributed.num_processes` processes itself, on a rendezvous port of
the job's own, told its node's rank and the job's first host when the job spans several nodes
(`rlvr_cli.sweeps.slurm.node_overrides`), and without the task's own rank variables
(`rlvr_cli.sweeps.slurm.train_env`).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from rlvr_cli.core.compose import config_dir, quote_value
from rlvr_cli.core.errors import BadInput
from rlvr_cli.core.run_dir import FAILED, PENDING, run_state
from rlvr_cli.sweeps.manifest import ManifestCell, read_manifest
from rlvr_cli.sweeps.slurm import node_overrides, train_env


def count_gpus() -> int:
    """NVIDIA GPUs on this node (`nvidia-smi -L`, one line each), whatever CUDA_VISIBLE_DEVICES says; 0 without
    nvidia-smi. Under submitit_local (which would give every job the same GPUs) job i then gets GPU i mod that."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return 0
    out = subprocess.run([smi, "-L"], capture_output=True, text=True, check=False).stdout
    return sum(line.startswith("GPU ") for line in out.splitlines())


def read_cell(sweep_dir: Path, index: int) -> ManifestCell:
    """Cell number `index` of the manifest in `sweep_dir`.

    Raises:
        BadInput: the manifest does not parse (`read_manifest`), or it has no cell `index`. One line.
    """
    cells = read_manifest(sweep_dir)["cells"]
    if not 0 <= index < len(cells):
        raise BadInput(f"{sweep_dir / 'manifest.json'} has no cell {index} (it lists {len(cells)})")
    return cells[index]


def wait_for_run(train: subprocess.Popen) -> int:
    """Wait for a cell's `rlvr train` process and return its exit code. A Ctrl-C reaches it too (one process
    group), and it ends its run `interrupted` on its own; so on Ctrl-C keep waiting for it (never kill it: a
    killed run would be left `running`, hence dead), then raise KeyboardInterrupt, which stops the multirun.

    Raises:
        KeyboardInterrupt: after the run has ended, when a Ctrl-C came while waiting.
    """
    interrupted = False
    while True:
        try:
            code = train.wait()
            break
        except KeyboardInterrupt:
            interrupted = True
    if interrupted:
        raise KeyboardInterrupt
    return code


@hydra.main(config_path=str(config_dir()), config_name="sweep_job", version_base="1.3")
def main(job: DictConfig) -> str:
    """Run cell `job.cell` (an index into manifest.json) of the sweep in `job.sweep_dir`; return its status
    (`rlvr_cli.core.run_dir.run_state`: `failed` when the run never wrote a summary.json, e.g. it was refused).

    A manifest that does not parse, or an index it lacks, prints one line `error: ...` to stderr and returns
    `failed` without running anything (the cell stays pending; the sweep's report then names the problem).
    """
    sweep_dir = Path(job.sweep_dir)
    try:
        cell = read_cell(sweep_dir, int(job.cell))
    except BadInput as e:
        print(f"error: {e}", file=sys.stderr)
        return FAILED
    run = sweep_dir / cell["run_dir"]
    overrides = [*cell["overrides"], f"output_dir={quote_value(str(run.parent))}", f"run_name={quote_value(run.name)}"]
    hydra_cfg = HydraConfig.get()
    env = dict(os.environ)
    target = hydra_cfg.launcher.get("_target_", "")
    if "LocalLauncher" in target and (n := count_gpus()):
        env["CUDA_VISIBLE_DEVICES"] = str(hydra_cfg.job.num % n)  # one GPU per job, round robin
    if "SlurmLauncher" in target:  # this task is one node of the cell's job; its rlvr train launches the processes
        import submitit

        slurm_job = submitit.JobEnvironment()
        overrides += node_overrides(slurm_job.num_nodes, slurm_job.node, slurm_job.hostnames,
                                    int(os.environ["SLURM_JOB_ID"]))
        env = train_env(env)
    train = subprocess.Popen([sys.executable, "-m", "rlvr_cli.cli", "train", *overrides], stdin=subprocess.DEVNULL,
                             env=env)
    wait_for_run(train)
    state = run_state(run).status
    return FAILED if state == PENDING else state


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:  # the cell has ended `interrupted` (wait_for_run); `rlvr sweep` says so in one line
        sys.exit(130)
