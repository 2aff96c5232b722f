"""SGD against AdamW on SmolLM2-135M, in float32 and in bfloat16 weights: update sparsity, optimizer state,
peak memory and sparse-delta checkpoint size (issue 5, item 7).

Each cell is one `rlvr train` process (so its peak resident memory is its own): the demo task and
settings, the optimizer at its demo learning rate (SGD 0.01, AdamW 2e-5), the same number of optimizer
steps, update sparsity measured against the initial weights in the training dtype, the final weights
saved as a sparse delta. Then `rlvr sparsity` recomputes the final update from the saved checkpoint.

    python benchmarks/sparsity_memory.py [--steps 10] [--output-dir DIR] [OVERRIDES...]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
from pathlib import Path

CELLS = [("sgd", 0.01), ("adamw", 2e-5)]
DTYPES = ["float32", "bfloat16"]
#: weights dtype -> the precision that trains in it (fp32 weights and compute; bf16 weights and compute)
PRECISION = {"float32": "fp32", "bfloat16": "bf16-true"}


def pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.4f}%"


def mb(n: int | None) -> str:
    return "-" if n is None else f"{n / 1e6:,.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10, help="optimizer steps per run")
    parser.add_argument("--output-dir", default=None, help="keep the runs here (default: a temporary directory)")
    parser.add_argument("overrides", nargs="*", help="extra Hydra overrides for every run")
    a = parser.parse_args()
    out = Path(a.output_dir or tempfile.mkdtemp(prefix="rlvr-sparsity-"))
    rows = []
    for dtype in DTYPES:
        for optimizer, lr in CELLS:
            name = f"{optimizer}-{dtype}"
            if not (out / name / "summary.json").is_file() or \
                    json.loads((out / name / "summary.json").read_text())["status"] != "completed":
                cmd = ["rlvr", "train", "logger=none", f"optimizer={optimizer}", f"optimizer.lr={lr}",
                       f"precision={PRECISION[dtype]}", f"grpo.max_steps={a.steps}", "sparsity.every_n_steps=5",
                       "save_format=sparse_delta", f"output_dir={out}", f"run_name={name}", *a.overrides]
                print(" ".join(cmd), flush=True)
                subprocess.run(cmd, check=False)
            s = json.loads((out / name / "summary.json").read_text())
            posthoc = out / name / "sparsity" / "sparsity.json"
            if s.get("weights_dir") and not posthoc.is_file():
                subprocess.run(["rlvr", "sparsity", "smollm2-135m", str(out / name)], check=False)
            rows.append((name, s, json.loads(posthoc.read_text()) if posthoc.is_file() else None))

    print(f"\nruns in {out}; {a.steps} optimizer steps each\n")
    print("| run | status | reward first / last quarter | changed exact | changed > 1e-5 | bf16-cast exact | "
          "bf16-cast > 1e-5 | optimizer state measured (MB) | analytic (MB) | peak RSS (MB) | analytic "
          "weights+grads+states (MB) | sparse delta (MB) | full (MB) |")
    print("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, s, _ in rows:
        u = s.get("update_sparsity") or {}
        print(f"| {name} | {s['status']} | {s['reward_mean_first_quarter']:.3f} / {s['reward_mean_last_quarter']:.3f} "
              f"| {pct(u.get('changed_frac_exact'))} | {pct(u.get('changed_frac_tol'))} "
              f"| {pct(u.get('changed_frac_bf16_exact'))} | {pct(u.get('changed_frac_bf16_tol'))} "
              f"| {mb(s['optimizer_state_bytes'])} | {mb(s.get('optimizer_state_bytes_analytic'))} "
              f"| {mb(s['peak_memory_bytes'])} | {mb(s.get('memory_analytic_bytes'))} "
              f"| {mb(s.get('weights_bytes'))} | {mb(s.get('full_weights_bytes'))} |")
    print("\nrlvr sparsity smollm2-135m RUN (from the saved sparse delta; base = the fp32 SmolLM2):")
    print("| run | changed exact | changed > 1e-5 | bf16-cast exact | bf16-cast > 1e-5 | "
          "most-changed module (> 1e-5) |")
    print("|---|---:|---:|---:|---:|---|")
    for name, _, p in rows:
        if p is None:
            continue
        o = p["overall"]
        top = max(p["by_module"].items(), key=lambda kv: kv[1]["changed_frac_tol"])
        print(f"| {name} | {pct(o['changed_frac_exact'])} | {pct(o['changed_frac_tol'])} "
              f"| {pct(o['changed_frac_bf16_exact'])} | {pct(o['changed_frac_bf16_tol'])} "
              f"| {top[0]} {pct(top[1]['changed_frac_tol'])} |")


if __name__ == "__main__":
    main()
