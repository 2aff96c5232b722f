"""Peak training memory of SGD against AdamW on a randomly initialised model of a real shape (issue 5, item 7).

The GPU check: a Qwen3-1.7B-shaped model (random weights, no download), the optimizer built as `rlvr train`
builds it, a few optimizer steps of forward + backward on random tokens; the peak allocated GPU memory
(`torch.cuda.max_memory_allocated`; peak RSS on CPU), the optimizer's measured state bytes and `rlvr memory`'s
analytic figure. Each optimizer runs in its own process, so that peaks do not mix. The paper (Mukherjee et al.,
arXiv 2602.07729) reports 15.7 GB saved by SGD on Qwen3-1.7B.

    python benchmarks/optimizer_memory.py                          # qwen3-1.7b shape, bfloat16, on the GPU
    python benchmarks/optimizer_memory.py --shape tiny --dtype float32   # a CPU smoke run of the script
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

#: Qwen3-1.7B's shape (its config.json on the hub): 1.72e9 parameters with the tied embedding.
SHAPES = {
    "qwen3-1.7b": dict(hidden_size=2048, intermediate_size=6144, num_hidden_layers=28, num_attention_heads=16,
                       num_key_value_heads=8, head_dim=128, vocab_size=151936, tie_word_embeddings=True,
                       max_position_embeddings=40960),
    "tiny": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2, head_dim=16, vocab_size=1024, tie_word_embeddings=True),
}


def one(shape: str, dtype: str, optimizer: str, steps: int, batch: int, seq: int) -> dict:
    """Train `steps` optimizer steps in this process; return the measured and analytic figures (bytes)."""
    import torch
    from transformers import Qwen3Config, Qwen3ForCausalLM

    from rlvr_cli.analysis.memory import run_memory_analytic
    from rlvr_cli.core.compose import compose
    from rlvr_cli.optimizers.build import optimizer_cls_and_kwargs
    from rlvr_cli.optimizers.state import state_bytes
    from rlvr_cli.training.recipe import peak_memory_bytes

    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.manual_seed(0)
    model = Qwen3ForCausalLM(Qwen3Config(**SHAPES[shape])).to(device=device, dtype=getattr(torch, dtype))
    model.gradient_checkpointing_enable()
    cls, kwargs = optimizer_cls_and_kwargs(compose([f"optimizer={optimizer}"]).optimizer)
    opt = cls(model.parameters(), **kwargs)
    tokens = torch.randint(0, model.config.vocab_size, (batch, seq), device=device)
    for _ in range(steps):
        model(input_ids=tokens, labels=tokens).loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    return {"optimizer": optimizer, "device": torch.cuda.get_device_name() if device == "cuda" else "cpu",
            "params": sum(p.numel() for p in model.parameters()), "peak_memory_bytes": peak_memory_bytes(),
            "optimizer_state_bytes": state_bytes(opt), **run_memory_analytic(model, optimizer, options=kwargs)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", choices=SHAPES, default="qwen3-1.7b")
    parser.add_argument("--dtype", choices=["bfloat16", "float32"], default="bfloat16")
    parser.add_argument("--optimizers", nargs="+", default=["sgd", "adamw"])
    parser.add_argument("--steps", type=int, default=3, help="optimizer steps")
    parser.add_argument("--batch", type=int, default=4, help="sequences per step")
    parser.add_argument("--seq", type=int, default=512, help="tokens per sequence")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # run one optimizer in this process, print JSON
    a = parser.parse_args()
    if a.one:
        print(json.dumps(one(a.shape, a.dtype, a.one, a.steps, a.batch, a.seq)))
        return
    rows = []
    for name in a.optimizers:
        cmd = [sys.executable, __file__, "--shape", a.shape, "--dtype", a.dtype, "--steps", str(a.steps),
               "--batch", str(a.batch), "--seq", str(a.seq), "--one", name]
        rows.append(json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.splitlines()[-1]))
    gb = 1e9
    print(f"\n{a.shape} ({rows[0]['params']:,} parameters), {a.dtype} weights, {a.steps} steps of {a.batch} x {a.seq} "
          f"tokens, gradient checkpointing, on {rows[0]['device']}\n")
    print("| optimizer | peak memory (GB) | optimizer state measured (GB) | analytic (GB) | "
          "weights + grads + states analytic (GB) |")
    print("|---|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['optimizer']} | {r['peak_memory_bytes'] / gb:.2f} | {r['optimizer_state_bytes'] / gb:.2f} "
              f"| {r['optimizer_state_bytes_analytic'] / gb:.2f} | {r['memory_analytic_bytes'] / gb:.2f} |")
    if len(rows) == 2:
        print(f"\npeak saved by {rows[0]['optimizer']} against {rows[1]['optimizer']}: "
              f"{(rows[1]['peak_memory_bytes'] - rows[0]['peak_memory_bytes']) / gb:.2f} GB")


if __name__ == "__main__":
    main()
