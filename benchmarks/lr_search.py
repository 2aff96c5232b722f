"""A learning-rate search against the grid it replaces (issue 25, item 5), once per seed: `sweeps/cpu_lr_grid.yaml`
(SGD and AdamW at one point per decade over 1e-6..1e-1, 30 steps per cell, SmolLM2-135M-Instruct on the demo's
arithmetic task) against `sweeps/lr_search.yaml` (the same ranges, steps and task; a scrambled Sobol sequence,
`sampler: qmc`, and successive halving's promotion variant, `pruner: sha`), both at training seed S, the search's
sampler at seed S too (study i is seeded S + i, so seed S's AdamW study draws the learning rates of seed S + 1's SGD
study).

    python benchmarks/lr_search.py [--seeds 0 1 2] [--out bench_out/lr_search]   (an existing --out is resumed)

Per seed, the two sweep files are written into `OUT/seed<S>/` with `axes.seed: [S]` and `search.seed: S`, and run
into `OUT/seed<S>/grid` and `OUT/seed<S>/search`. Prints one Markdown table (for
docs/benchmarks/sweeps-and-search.md) with a row per seed and optimizer, then every trial, and writes
`comparison.json` into `--out`. The distance between the two best
learning rates is in grid points: |log10(search / grid)| x per_decade (1 here), to the nearest grid point whose final
reward ties the best. The search's share is its optimizer steps over the grid's. About 45 minutes (grid) + 20
(search) per seed alone on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
from pathlib import Path

import yaml

from rlvr_cli.sweeps.promotion import tied_or_above

REPO = Path(__file__).resolve().parents[1]


def seeded(file: str, seed: int, out: Path) -> Path:
    """`file` with its seed axis set to `[seed]` (and a search's sampler seed to `seed`), written into `out`."""
    data = yaml.safe_load((REPO / file).read_text())
    data["axes"]["seed"] = [seed]
    if "search" in data:
        data["search"]["seed"] = seed
    path = out / Path(file).name
    out.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def sweep(file: Path, out: Path) -> dict:
    """`rlvr sweep FILE --output-dir OUT --json` (resumed when OUT exists); its JSON document."""
    cmd = [sys.executable, "-m", "rlvr_cli.cli", "sweep", str(file), "--output-dir", str(out), "--json"]
    if (out / "manifest.json").is_file():
        cmd.append("--resume")
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    if proc.returncode not in (0, 1):
        raise RuntimeError(f"{file}: exit {proc.returncode}: {proc.stderr[-2000:]}")
    return json.loads(proc.stdout)


def distance(lr: float | None, cells: list[dict], optimizer: str) -> float | None:
    """|log10(lr / best)| in decades (grid points at one per decade), to the nearest of the grid's best learning
    rates: cells whose final reward ties the best (a grid's `best_lr` names the first of them)."""
    rewards = [(c["lr"], c["final_reward"]) for c in cells
               if c["optimizer"] == optimizer and c["final_reward"] is not None]
    if not lr or not rewards:
        return None
    top = max(v for _, v in rewards)
    return min(abs(math.log10(lr / g)) for g, v in rewards if tied_or_above(v, top))


def compare(seed: int, out: Path) -> list[dict]:
    """The grid and the search at `seed`: one row per optimizer."""
    grid = sweep(seeded("sweeps/cpu_lr_grid.yaml", seed, out), out / "grid")
    search = sweep(seeded("sweeps/lr_search.yaml", seed, out), out / "search")
    grid_best = {b["optimizer"]: b for b in grid["report"]["best_lr"]}
    grid_steps: dict[str, int] = {}
    for row in grid["report"]["cells"]:
        grid_steps[row["optimizer"]] = grid_steps.get(row["optimizer"], 0) + int(row.get("global_step") or 0)
    rows = []
    for st in search["report"]["search"]:
        opt, g = st["optimizer"], grid_best[st["optimizer"]]
        rows.append({"seed": seed, "optimizer": opt, "grid_best_lr": g["lr"], "grid_reward": g["mean"],
                     "grid_steps": grid_steps[opt], "search_best_lr": st["best_lr"],
                     "search_objective": st["best_objective"], "search_steps": st["optimizer_steps"],
                     "share": st["optimizer_steps"] / grid_steps[opt], "states": st["states"],
                     "checkpoint_bytes": st.get("checkpoint_bytes"),
                     "distance_grid_points": distance(st["best_lr"], grid["report"]["cells"], opt),
                     "grid": [(c["lr"], c["final_reward"]) for c in grid["report"]["cells"]
                              if c["optimizer"] == opt],
                     "trials": [(t["lr"], t["state"], t["optimizer_steps"], t["objective"]) for t in st["trials"]]})
    return rows


def main() -> None:
    """Run the grid and the search at every seed; print the comparison."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", type=Path, default=REPO / "bench_out" / "lr_search")
    a = parser.parse_args()
    rows = [r for seed in a.seeds for r in compare(seed, a.out / f"seed{seed}")]
    (a.out / "comparison.json").write_text(json.dumps(rows, indent=2) + "\n")
    print("| seed | optimizer | grid best lr | its final reward | grid steps | search best lr | its final reward "
          "| search steps | share | distance (grid points) | trials |")
    print("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for r in rows:
        states = " ".join(f"{k} {v}" for k, v in r["states"].items())
        best = f"{r['search_best_lr']:.3g}" if r["search_best_lr"] else "-"
        obj = f"{r['search_objective']:.3f}" if r["search_objective"] is not None else "-"
        dist = f"{r['distance_grid_points']:.2f}" if r["distance_grid_points"] is not None else "-"
        print(f"| {r['seed']} | {r['optimizer']} | {r['grid_best_lr']:g} | {r['grid_reward']:.3f} | "
              f"{r['grid_steps']} | {best} | {obj} | {r['search_steps']} | {r['share']:.0%} | {dist} | {states} |")
    total = sum(r["search_steps"] for r in rows) / sum(r["grid_steps"] for r in rows)
    print(f"\nall seeds and optimizers: the search spent {total:.0%} of the grid's optimizer steps")
    for r in rows:
        print(f"\nseed {r['seed']} {r['optimizer']} grid (lr, final reward): "
              + "; ".join(f"{lr:g} {v:.3f}" if v is not None else f"{lr:g} -" for lr, v in r["grid"]))
        print(f"seed {r['seed']} {r['optimizer']} trials (lr, state, steps, objective): " + "; ".join(
            f"{lr:.3g} {state} {steps} {obj:.3f}" if obj is not None else f"{lr:.3g} {state} {steps}"
            for lr, state, steps, obj in r["trials"]))


if __name__ == "__main__":
    main()
