"""One sweep cell as a Hydra job: the `@hydra.main` entry point that `rlvr sweep` runs under `--multirun`.

Hydra's launchers exist only under `@hydra.main` multirun, so the sweep runs this small program;
each job reads its cell from the sweep directory's `manifest.json` and runs it as a `rlvr train`
subprocess (its own process: a crash, a divergence or a signal stays inside the cell, and the run
directory records it). The job returns the cell's status.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from rlvr_cli.config import config_dir


@hydra.main(config_path=str(config_dir()), config_name="sweep_job", version_base="1.3")
def main(job: DictConfig) -> str:
    """Run cell `job.cell` (an index into manifest.json) of the sweep in `job.sweep_dir`; return its status."""
    sweep_dir = Path(job.sweep_dir)
    cell = json.loads((sweep_dir / "manifest.json").read_text())["cells"][int(job.cell)]
    run = sweep_dir / cell["run_dir"]
    overrides = [*cell["overrides"], f"output_dir={run.parent}", f"run_name={run.name}"]
    subprocess.run([sys.executable, "-m", "rlvr_cli.cli", "train", *overrides], stdin=subprocess.DEVNULL)
    summary = run / "summary.json"
    return json.loads(summary.read_text())["status"] if summary.is_file() else "failed"


if __name__ == "__main__":
    main()
