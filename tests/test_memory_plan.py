"""`rlvr memory` per GPU: sharding (DDP, ZeRO-1/2/3, FSDP), CPU offload, activations from a model's config, a
4-bit QLoRA base, Adafactor's beta1, `--gpu-memory`; the sharded figures checked against DeepSpeed's own
estimator formulas, re-derived here."""

from __future__ import annotations

import json
import math

import pytest
from rich.console import Console
from typer.testing import CliRunner

from rlvr_cli.analysis.memory import GB, breakdown, estimate, nf4_bytes, param_shapes
from rlvr_cli.analysis.planner import Plan, activation_bytes, model_activations, parse_size, per_gpu
from rlvr_cli.cli.analysis import per_gpu_table
from rlvr_cli.cli.main import app
from rlvr_cli.cli.output import print_table
from rlvr_cli.core.errors import BadInput
from rlvr_cli.core.units import human_bytes

runner = CliRunner()
P70 = 70 * 10**9
#: Llama-2-70B's largest layer: its 32,000 x 8,192 token embedding (and, untied, its output head).
LLAMA2_70B_LARGEST = 32_000 * 8_192


# ------------------------------------------------------------------ DeepSpeed's estimators, re-derived
# From microsoft/DeepSpeed at commit 38327e07f6cd39b63418f60cedd1651b0be3e7c3 (2025-02-21), re-derived, not
# imported (DeepSpeed is not a dependency):
#   deepspeed/runtime/zero/stage_1_and_2.py, estimate_zero2_model_states_mem_needs: per GPU, without offload
#     2 * P (16-bit params, replicated) + int(18 * P / N), 18 = 2 (16-bit grads) + 4 (fp32 grads) + 4 (fp32
#     params) + 8 (Adam momentum and variance), partitioned; with offload_optimizer, 2 * P.
#   deepspeed/runtime/zero/stage3.py, estimate_zero3_model_states_mem_needs: per GPU 4 * largest_layer_params
#     + int(18 * P / N) without offload; + int(2 * P / N) with offload_optimizer; alone with offload_param too.


def deepspeed_zero2_gpu(total_params: int, total_gpus: int, cpu_offload: bool) -> int:
    """Bytes per GPU of DeepSpeed's ZeRO-2 estimator (stage_1_and_2.py, estimate_zero2_model_states_mem_needs)."""
    return 2 * total_params if cpu_offload else 2 * total_params + int(18 * total_params / total_gpus)


def deepspeed_zero3_gpu(total_params: int, largest_layer_params: int, total_gpus: int, cpu_offload: bool,
                        cpu_offload_params: bool) -> int:
    """Bytes per GPU of DeepSpeed's ZeRO-3 estimator (stage3.py, estimate_zero3_model_states_mem_needs)."""
    largest = 4 * largest_layer_params
    if cpu_offload and cpu_offload_params:
        return largest
    if cpu_offload:
        return largest + int(2 * total_params / total_gpus)
    return largest + int(18 * total_params / total_gpus)


def _gpu(shard: str, offload: str = "none", n: int = 8, model: str = "70e9"):
    est = estimate(model, ["adamw"], "bf16-mixed", plan=Plan(num_gpus=n, shard=shard, offload=offload))
    return est.per_gpu["adamw"]


def test_the_colleagues_deepspeed_figures():
    """70B on 8 GPUs without offload: ZeRO-2 297.5 GB exactly; ZeRO-3 depends on the largest layer: 158.55 GB
    with Llama-2-70B's embedding (262,144,000 params), 158.6 GB only with ~275M, 161.7 GB with Llama-3-70B's
    (128,256 x 8,192)."""
    assert deepspeed_zero2_gpu(P70, 8, False) == 297_500_000_000
    assert deepspeed_zero3_gpu(P70, LLAMA2_70B_LARGEST, 8, False, False) == 158_548_576_000
    assert deepspeed_zero3_gpu(P70, 128_256 * 8_192, 8, False, False) == pytest.approx(161.7e9, rel=1e-3)


def test_zero2_against_deepspeed():
    """rlvr's `mixed` counts fp32 gradients only (18 B/param in all); DeepSpeed's ZeRO-2 estimator also counts a
    16-bit gradient partition (2 B/param / N). With that term added, the figures agree to the byte."""
    ours = _gpu("zero2")
    assert (ours.weights, ours.gradients, ours.optimizer_states, ours.master_weights) == (
        140 * GB, 35 * GB, 70 * GB, 35 * GB)
    assert ours.total == 280 * GB
    assert ours.total + 2 * P70 // 8 == deepspeed_zero2_gpu(P70, 8, cpu_offload=False)
    offloaded = _gpu("zero2", "optimizer")  # only the 16-bit parameters stay on the GPU: equal as they stand
    assert offloaded.total == deepspeed_zero2_gpu(P70, 8, cpu_offload=True) == 140 * GB
    assert offloaded.cpu == (35 + 70 + 35) * GB and offloaded.cpu_total == 8 * offloaded.cpu


def test_zero3_against_deepspeed():
    """ZeRO-3 partitions everything: rlvr's 18 B/param / N equals DeepSpeed's partitioned term; DeepSpeed adds
    4 B per parameter of the largest layer (gathered on the GPU while it runs), which rlvr leaves out."""
    largest = 4 * LLAMA2_70B_LARGEST
    ours = _gpu("zero3")
    assert ours.total == 157_500_000_000
    assert ours.total + largest == deepspeed_zero3_gpu(P70, LLAMA2_70B_LARGEST, 8, False, False)
    optimizer = _gpu("zero3", "optimizer")
    assert optimizer.total == 17_500_000_000 and optimizer.cpu == 140 * GB
    assert optimizer.total + largest == deepspeed_zero3_gpu(P70, LLAMA2_70B_LARGEST, 8, True, False)
    params = _gpu("zero3", "params")
    assert params.total == 0 and params.cpu == 157_500_000_000
    assert params.total + largest == deepspeed_zero3_gpu(P70, LLAMA2_70B_LARGEST, 8, True, True)
    assert _gpu("fsdp") == ours and _gpu("fsdp", "params") == params


# -------------------------------------------------------------------------------------- sharding rules


def test_each_stage_shards_its_parts_and_the_shares_add_up():
    whole = breakdown(P70, "adamw", "bf16-mixed")
    ddp, z1, z2, z3 = (_gpu(s) for s in ("ddp", "zero1", "zero2", "zero3"))
    parts = ("weights", "gradients", "optimizer_states", "master_weights")
    assert [getattr(ddp, p) for p in parts] == [getattr(whole, p) for p in parts]  # replicated
    assert (z1.weights, z1.gradients, z1.optimizer_states, z1.master_weights) == (140 * GB, 280 * GB, 70 * GB,
                                                                                 35 * GB)
    assert (z2.gradients, z2.weights) == (35 * GB, 140 * GB)
    assert 8 * z3.total == whole.total  # ZeRO-3 holds 1/N of everything
    assert _gpu("none", n=1) == _gpu("zero3", n=1) == per_gpu(whole, Plan())


def test_shares_round_up_for_a_model():
    est = estimate("tiny-random", ["adamw"], plan=Plan(num_gpus=3, shard="zero3"))
    row, gpu = est.rows["adamw"], est.per_gpu["adamw"]
    assert gpu.weights == math.ceil(row.weights / 3) and gpu.optimizer_states == math.ceil(row.optimizer_states / 3)


# ------------------------------------------------------------------------------------------ activations


def test_activations_are_korthikanti_et_al():
    """arXiv 2205.05198, section 4: s*b*h*(34 + 5*a*s/h) bytes per layer for f = 4h; 2*s*b*h with full
    checkpointing; fp32 logits s*b*V*4."""
    s, b, h, a, V = 2048, 4, 8192, 64, 32_000
    per_layer, logits = activation_bytes(80, h, a, 4 * h, V, s, b)
    assert per_layer == s * b * h * (34 + 5 * a * s // h) and logits == s * b * V * 4
    assert activation_bytes(80, h, a, 4 * h, V, s, b, checkpointing=True) == (2 * s * b * h, logits)
    assert activation_bytes(80, h, a, 28_672, V, s, b)[0] == s * b * (18 * h + 4 * 28_672) + 5 * a * s * s * b


def test_activations_from_the_model_config():
    act = model_activations("tiny-random", seq_len=512, micro_batch=2)
    assert (act.layers, act.hidden, act.heads, act.intermediate, act.vocab) == (2, 64, 2, 128, 49152)
    assert act.total == 2 * (512 * 2 * (18 * 64 + 4 * 128) + 5 * 2 * 512 * 512 * 2) + 512 * 2 * 49152 * 4
    est = estimate("tiny-random", ["sgd"], plan=Plan(seq_len=512, micro_batch=2, gpu_memory=10**12))
    gpu = est.per_gpu["sgd"]
    assert gpu.activations == act.total and gpu.total == est.rows["sgd"].total + act.total and gpu.fits
    assert estimate("70e9", ["sgd"]).activations is None  # a bare count has no config


# ------------------------------------------------------------------------- QLoRA base, Adafactor beta1


def test_nf4_bytes_are_half_a_byte_plus_an_absmax_per_64():
    assert nf4_bytes(64) == 32 + 4 and nf4_bytes(65) == 33 + 8
    assert nf4_bytes(64 * 10**6) / (64 * 10**6) == 0.5625


def test_qlora_base_quantizes_the_frozen_linear_weights():
    plain = estimate("tiny-random", ["adamw"], "bf16-true", adapter="lora", r=8)
    qlora = estimate("tiny-random", ["adamw"], "bf16-true", adapter="lora", r=8, plan=Plan(base_bits=4))
    # tiny-random: 2 layers x (q 64x64, k 32x64, v 32x64, o 64x64, gate/up 128x64, down 64x128) frozen linears
    linear = 2 * (64 * 64 + 32 * 64 + 32 * 64 + 64 * 64 + 3 * 128 * 64)
    assert plain.rows["adamw"].weights - qlora.rows["adamw"].weights == 2 * linear - sum(
        nf4_bytes(n) for n in 2 * [64 * 64, 32 * 64, 32 * 64, 64 * 64, 128 * 64, 128 * 64, 64 * 128])
    assert qlora.rows["adamw"].optimizer_states == plain.rows["adamw"].optimizer_states


def test_adafactor_beta1_adds_a_first_moment():
    est = estimate("70e9", ["adafactor"], options={"adafactor": {"beta1": 0.9}})
    assert est.rows["adafactor"].optimizer_states == 4 * P70
    shapes = param_shapes("tiny-random")
    n = sum(map(math.prod, shapes))
    assert (breakdown(shapes, "adafactor", options={"beta1": 0.9}).optimizer_states
            - breakdown(shapes, "adafactor").optimizer_states) == 4 * n


# ---------------------------------------------------------------------------------------- sizes, CLI


@pytest.mark.parametrize("text, size", [("80GB", 80 * GB), ("80G", 80 * GB), ("80e9", 80 * GB),
                                        ("80GiB", 80 * 2**30), ("141 GB", 141 * GB), ("1.5TB", 1_500 * GB)])
def test_parse_size(text, size):
    assert parse_size(text) == size


BAD_CLI = {
    "gpus": (["--num-gpus", "0", "--shard", "ddp"], "--num-gpus must be an integer >= 1, got 0"),
    "shard": (["--shard", "zero4"], "unknown --shard 'zero4'; valid: none, ddp, zero1"),
    "offload_ddp": (["--num-gpus", "8", "--shard", "ddp", "--offload", "optimizer"],
                    "--offload optimizer needs --shard zero1 or zero2 or zero3, got --shard ddp"),
    "offload_fsdp": (["--num-gpus", "8", "--shard", "fsdp", "--offload", "optimizer"], "use --offload params"),
    "offload_params_zero2": (["--num-gpus", "8", "--shard", "zero2", "--offload", "params"],
                             "--offload params needs --shard zero3 or fsdp"),
    "offload_unknown": (["--offload", "disk"], "unknown --offload 'disk'"),
    "gpu_memory": (["--gpu-memory", "lots"], "--gpu-memory must be a size such as 80GB"),
    "base_bits": (["--base-bits", "4"], "--base-bits 4 quantizes the frozen base under an adapter"),
    "base_bits_8": (["--base-bits", "8"], "--base-bits must be 4"),
    "gpus_without_mode": (["--num-gpus", "8"], "--num-gpus 8 needs a data-parallel mode"),
    "beta1": (["--adafactor-beta1", "1.5"], "--adafactor-beta1 must be in [0, 1)"),
}


@pytest.mark.parametrize("case", BAD_CLI)
def test_bad_plan_is_one_line_and_exit_2(case):
    args, message = BAD_CLI[case]
    result = runner.invoke(app, ["memory", "70e9", "--optimizer", "adamw", *args, "--json"])
    assert result.exit_code == 2 and result.stdout == "", result.output
    assert result.stderr.startswith("error: ") and message in result.stderr and result.stderr.count("\n") == 1


def test_plan_is_checked_before_the_model_is_read():
    with pytest.raises(BadInput, match="unknown --shard"):
        estimate("./no/such/model", plan=Plan(shard="zero9"))


def test_json_says_whether_it_fits_and_exits_0_either_way():
    args = ["memory", "70e9", "--optimizer", "adamw", "--precision", "bf16-mixed", "--num-gpus", "8", "--json"]
    fits = runner.invoke(app, [*args, "--shard", "zero3", "--offload", "optimizer", "--gpu-memory", "80GB"])
    too_big = runner.invoke(app, [*args, "--shard", "zero2", "--gpu-memory", "80GB"])
    assert fits.exit_code == too_big.exit_code == 0
    small, big = json.loads(fits.stdout), json.loads(too_big.stdout)
    assert small["per_gpu"]["adamw"]["fits"] is True and small["per_gpu"]["adamw"]["total"] == 17_500_000_000
    assert small["per_gpu"]["adamw"]["cpu"] == 140 * GB
    assert big["per_gpu"]["adamw"]["fits"] is False and big["plan"]["gpu_memory"] == 80 * GB
    assert big["rows"]["adamw"]["total"] == 1_260 * GB  # the whole run, as before


def test_per_gpu_table_keeps_every_figure_whole_at_80_columns():
    est = estimate("tiny-random", ["adamw", "adafactor"], adapter="lora", r=8,
                   plan=Plan(num_gpus=8, shard="zero3", offload="optimizer", gpu_memory=80 * GB))
    console = Console(record=True, width=80, color_system=None, force_terminal=True)
    print_table(per_gpu_table(est), console)
    text = console.export_text()
    lines = text.splitlines()
    figures = [human_bytes(getattr(g, k)) for g in est.per_gpu.values()
               for k in ("weights", "gradients", "optimizer_states", "master_weights", "activations", "total", "cpu")]
    for figure in [*figures, "GPU total", "activations", "yes"]:
        assert any(figure in line for line in lines), figure
    assert "…" not in text and "2205.05198" in " ".join(text.split())


def test_cli_prints_both_tables():
    result = runner.invoke(app, ["memory", "70e9", "--optimizer", "adamw", "--precision", "bf16-mixed", "--num-gpus",
                                 "8", "--shard", "zero3", "--gpu-memory", "80GB"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "1,260 GB" in result.stdout and "158 GB" in result.stdout and "per GPU: 8 GPUs, shard zero3" in result.stdout
