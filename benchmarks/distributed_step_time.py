"""Two-process DDP and DeepSpeed ZeRO-2/3 against one process on this CPU, at the same global batch (issue 11,
item 11).

Each configuration is one real `rlvr train` run of SmolLM2-135M (fp32, AdamW lr 2e-5, the demo's arithmetic task):
one process with 8 completions per step, or `rlvr train distributed=X distributed.num_processes=2` (rlvr starts the
two gloo ranks through torch.distributed.run) with 4 completions per rank. Reported from each run's metrics.jsonl
and summary.json: the median optimizer-step time after the first step (seconds, generation included), the world
size, what ran (`distributed`), and AdamW's optimizer-state bytes per rank against the unsharded analytic figure
(ZeRO-2/3 shard it: about half per rank). FSDP2 is not measured here: accelerate applies FSDP to multi-GPU runs
only, and rlvr refuses `distributed=fsdp` without CUDA.

    python benchmarks/distributed_step_time.py [--steps 6] [--out /tmp/rlvr-dist-bench]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

COMMON = ["logger=none", "sparsity=null", "optimizer=adamw", "optimizer.lr=2e-5", "grpo.num_generations=4",
          "grpo.max_completion_length=24"]
TWO = ["grpo.per_device_train_batch_size=4", "distributed.num_processes=2"]
CONFIGS = {
    "1 process": (1, ["grpo.per_device_train_batch_size=8"]),
    "DDP, 2 ranks": (2, ["distributed=ddp", *TWO]),
    "ZeRO-2, 2 ranks": (2, ["distributed=zero2", *TWO]),
    "ZeRO-3, 2 ranks": (2, ["distributed=zero3", *TWO]),
}


def run(name: str, ranks: int, extra: list[str], steps: int, out: Path) -> dict:
    """One `rlvr train` run (`ranks` processes); returns its figures (seconds, bytes)."""
    run_name = name.replace(" ", "").replace(",", "-")
    args = ["-m", "rlvr_cli.cli", "train", *COMMON, *extra, f"grpo.max_steps={steps}", f"output_dir={out}",
            f"run_name={run_name}"]
    proc = subprocess.run([sys.executable, *args], capture_output=True, text=True)
    if not (out / run_name / "summary.json").is_file():
        sys.exit(f"{name}: no summary.json (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    summary = json.loads((out / run_name / "summary.json").read_text())
    records = [json.loads(line) for line in (out / run_name / "metrics.jsonl").read_text().splitlines()]
    times = [r["step_time_s"] for r in records[1:] if r.get("step_time_s")]
    return {"config": name, "exit": proc.returncode, "status": summary["status"],
            "world_size": summary.get("world_size"), "distributed": summary.get("distributed"), "steps": len(records),
            "median_step_s": statistics.median(times) if times else None,
            "optimizer_state_bytes_per_rank": summary.get("optimizer_state_bytes_per_rank"),
            "optimizer_state_bytes_analytic": summary.get("optimizer_state_bytes_analytic"),
            "peak_memory_bytes_per_rank": summary.get("peak_memory_bytes_per_rank"),
            "reason": summary.get("reason")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--out", type=Path, default=Path("/tmp/rlvr-dist-bench"))
    a = parser.parse_args()
    rows = [run(name, ranks, extra, a.steps, a.out) for name, (ranks, extra) in CONFIGS.items()]
    print(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
