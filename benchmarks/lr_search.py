"""A learning-rate search against the grid it replaces (issue 21, item 7): `sweeps/cpu_lr_grid.yaml` (SGD and AdamW at
one point per decade over 1e-6..1e-1, 20 steps per cell, SmolLM2-135M-Instruct on the demo's arithmetic task)
against `sweeps/lr_search.yaml` (the same ranges, steps and task; TPE with asynchronous successive halving), then a
second seed of each optimizer's winning learning rate from both, to show the noise.

    python benchmarks/lr_search.py [--out bench_out/lr_search]   (an existing --out is resumed)

Prints one Markdown table per comparison (for docs/benchmarks.md) and writes `comparison.json` into `--out`. The
distance between the two best learning rates is in grid points: |log10(search / grid)| x per_decade (1 here).
About 40 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def sweep(file: str, out: Path) -> dict:
    """`rlvr sweep FILE --output-dir OUT --json` (resumed when OUT exists); its JSON document."""
    cmd = [sys.executable, "-m", "rlvr_cli.cli", "sweep", str(REPO / file), "--output-dir", str(out), "--json"]
    if (out / "manifest.json").is_file():
        cmd.append("--resume")
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    if proc.returncode not in (0, 1):
        raise RuntimeError(f"{file}: exit {proc.returncode}: {proc.stderr[-2000:]}")
    return json.loads(proc.stdout)


def second_seed(optimizer: str, lr: float, out: Path) -> float | None:
    """The final reward (mean over the last quarter of the steps) of one more run at `lr`, seed 1."""
    name = f"{optimizer}-lr{lr:.3g}-s1"
    run = out / name
    if not (run / "summary.json").is_file():
        subprocess.run([sys.executable, "-m", "rlvr_cli.cli", "train", "logger=none", "grpo.max_steps=20",
                        "sparsity=null", f"optimizer={optimizer}", f"optimizer.lr={lr!r}", "seed=1",
                        f"output_dir={out}", f"run_name={name}"], capture_output=True, text=True, cwd=REPO)
    return json.loads((run / "summary.json").read_text()).get("reward_mean_last_quarter")


def main() -> None:
    """Run both sweeps and the second seeds; print the comparison."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / "bench_out" / "lr_search")
    a = parser.parse_args()
    grid = sweep("sweeps/cpu_lr_grid.yaml", a.out / "grid")
    search = sweep("sweeps/lr_search.yaml", a.out / "search")
    grid_best = {b["optimizer"]: b for b in grid["report"]["best_lr"]}
    grid_steps = {}
    for row in grid["report"]["cells"]:
        summary = json.loads((a.out / "grid" / row["run_dir"] / "summary.json").read_text())
        grid_steps[row["optimizer"]] = grid_steps.get(row["optimizer"], 0) + int(summary.get("global_step") or 0)
    rows = []
    for st in search["report"]["search"]:
        opt = st["optimizer"]
        g = grid_best[opt]
        points = abs(math.log10(st["best_lr"] / g["lr"])) if st["best_lr"] else None
        rows.append({"optimizer": opt, "grid_best_lr": g["lr"], "grid_reward": g["mean"],
                     "grid_steps": grid_steps[opt], "search_best_lr": st["best_lr"],
                     "search_objective": st["best_objective"], "search_steps": st["optimizer_steps"],
                     "states": st["states"], "distance_grid_points": points,
                     "grid_best_seed1": second_seed(opt, g["lr"], a.out / "seeds"),
                     "search_best_seed1": second_seed(opt, st["best_lr"], a.out / "seeds") if st["best_lr"] else None,
                     "trials": [(t["lr"], t["state"], t["stopped_at"], t["objective"]) for t in st["trials"]]})
    (a.out / "comparison.json").write_text(json.dumps(rows, indent=2) + "\n")
    print("| optimizer | grid best lr | its final reward | grid steps | search best lr | its objective | search steps "
          "| share | distance (grid points) | trials | seed 1: grid best / search best |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---|")
    for r in rows:
        states = " ".join(f"{k} {v}" for k, v in r["states"].items())
        print(f"| {r['optimizer']} | {r['grid_best_lr']:g} | {r['grid_reward']:.3f} | {r['grid_steps']} | "
              f"{r['search_best_lr']:.3g} | {r['search_objective']:.3f} | {r['search_steps']} | "
              f"{r['search_steps'] / r['grid_steps']:.0%} | {r['distance_grid_points']:.2f} | {states} | "
              f"{r['grid_best_seed1']:.3f} / {r['search_best_seed1']:.3f} |")
    for r in rows:
        print(f"\n{r['optimizer']} trials (lr, state, stopped at, objective): " + "; ".join(
            f"{lr:.3g} {state}{'@' + str(at) if at else ''} {obj:.3f}" if obj is not None else f"{lr:.3g} {state}"
            for lr, state, at, obj in r["trials"]))


if __name__ == "__main__":
    main()
