"""`rlvr sweep` launchers: the smoke sweep (4 tiny-random cells) through `basic` and through
`submitit_local` with 2 jobs at a time, wall clock of each and their ratio (parallel efficiency =
basic time / (2 x parallel time)); then the time of `--resume` on the finished sweep (goal: < 5 s).

    python benchmarks/sweep_launchers.py
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

SMOKE = Path(__file__).resolve().parents[1] / "sweeps" / "smoke.yaml"


def sweep(out: Path, *args: str) -> float:
    """Wall-clock seconds of one `rlvr sweep` command (a subprocess, as a user runs it)."""
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "rlvr_cli.cli", "sweep", str(SMOKE), "--output-dir", str(out), *args],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        basic = sweep(Path(tmp) / "basic")
        local = sweep(Path(tmp) / "local", "--launcher", "submitit_local", "--max-parallel", "2")
        resume = sweep(Path(tmp) / "basic", "--resume")
    print(f"smoke sweep, 4 cells: basic {basic:.1f} s, submitit_local x2 {local:.1f} s, "
          f"speed-up {basic / local:.2f}x, parallel efficiency {basic / (2 * local):.0%}")
    print(f"--resume of the finished sweep: {resume:.1f} s")


if __name__ == "__main__":
    main()
