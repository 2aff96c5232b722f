"""`rlvr sweep SWEEP.yaml --dry-run`: wall-clock and CPU seconds of the whole process (Python's start, the imports,
reading the sweep file, composing and checking every cell, printing the table), median of `--repeats` runs after
one warm-up run that is not counted. Goal for `sweeps/lr_grid.yaml` (60 cells): a median under 2 s.

    python benchmarks/sweep_dry_run.py [--sweep sweeps/lr_grid.yaml] [--repeats 5]

The CPU seconds are the child's user + system time (`os.wait4`'s resource usage): on a shared machine they move
less than the wall clock, which also counts the time the process waited for a core.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def dry_run(sweep: Path) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one `python -m rlvr_cli.cli sweep SWEEP --dry-run`, its output discarded.

    Raises:
        RuntimeError: the command failed (its exit status).
    """
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "rlvr_cli.cli", "sweep", str(sweep), "--dry-run"], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise RuntimeError(f"rlvr sweep {sweep} --dry-run exited {proc.returncode}")
    return wall, usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sweep", type=Path, default=REPO / "sweeps" / "lr_grid.yaml")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    dry_run(args.sweep)  # warm-up: the OS's file cache, Python's bytecode cache
    runs = [dry_run(args.sweep) for _ in range(args.repeats)]
    walls, cpus = sorted(w for w, _ in runs), sorted(c for _, c in runs)
    print(f"rlvr sweep {args.sweep.name} --dry-run, {args.repeats} runs: wall median {statistics.median(walls):.2f} s "
          f"(min {walls[0]:.2f}, max {walls[-1]:.2f}), CPU median {statistics.median(cpus):.2f} s "
          f"(min {cpus[0]:.2f}, max {cpus[-1]:.2f})")


if __name__ == "__main__":
    main()
