"""`rlvr sparsity BASE TARGET` and `rlvr memory MODEL`."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.markup import escape
from rich.table import Table

from rlvr_cli.analysis.sparsity import DEFAULT_TOLERANCE
from rlvr_cli.cli import options
from rlvr_cli.cli.options import JSON
from rlvr_cli.cli.output import (
    bad_input_exits,
    console,
    default_output_dir,
    print_json,
    print_table,
    progress_bar,
    stdout_to_stderr,
)
from rlvr_cli.core.units import human_bytes

if TYPE_CHECKING:
    from rlvr_cli.analysis.memory import MemoryEstimate

#: Click settings of `rlvr memory` (`app.command(context_settings=MEMORY_CONTEXT)`): an argument that looks like an
#: option, e.g. `-5`, reaches MODEL, so that `parse_model_arg` refuses it in one line ("parameter count must be a
#: whole number >= 1") instead of Click's "No such option" usage box. Any other unknown option then ends as an
#: unexpected extra argument (still exit code 2). See https://click.palletsprojects.com/en/stable/advanced/
#: ("Forwarding Unknown Options") and https://typer.tiangolo.com/tutorial/commands/context/.
MEMORY_CONTEXT = {"ignore_unknown_options": True}


def sparsity(
    base: str = typer.Argument(..., help="the initial weights: hub id, model directory, run directory, sparse-delta "
                                         "checkpoint, or smollm2-135m / tiny-random"),
    target: str = typer.Argument(..., help="the trained weights (same kinds; adapter runs are merged into their "
                                           "base)"),
    tolerance: float = typer.Option(DEFAULT_TOLERANCE, help="absolute difference at or below which a weight is "
                                                          "unchanged (rlvr train's sparsity.tolerance)"),
    rank: bool = typer.Option(False, "--rank", help="also the matrix rank and 99%-energy rank of each 2-D update"),
    output_dir: Path | None = options.output_dir("TARGET/sparsity for a run directory, else sparsity/<target>-<time>"),
    as_json: bool = JSON,
) -> None:
    """Update sparsity between two sets of weights (arXiv 2505.11711): % of entries changed, exactly and beyond
    the tolerance, as stored and after a bf16 cast; per module type, layer (heat map) and tensor."""
    from rlvr_cli.analysis.sparsity import measure_sparsity

    output_dir = output_dir or default_output_dir(target, "sparsity", "sparsity")
    with bad_input_exits(), stdout_to_stderr(as_json), progress_bar("comparing") as progress:
        result = measure_sparsity(base, target, tolerance, rank, output_dir, progress)
    if as_json:
        print_json(result)
        return
    print_table(sparsity_table(result))
    base_dtype, target_dtype = result["base"]["dtype"], result["target"]["dtype"]
    if base_dtype != target_dtype:
        console.print(f"note: BASE is {base_dtype} and TARGET {target_dtype}: the as-stored columns count the cast "
                      f"as a change; compare the bf16 columns", markup=False)
    console.print(f"sparsity.json and heat map: {output_dir}", markup=False)


def sparsity_table(result: dict[str, Any]) -> Table:
    """A Rich table of `rlvr_cli.analysis.sparsity.measure_sparsity`'s result: one row per module type and one for
    all parameters, % of entries changed four ways (`KINDS`: exactly and beyond the tolerance, as stored and after
    a bf16 cast), and the median effective rank of 2-D updates as a share of full rank when ranks were computed.
    Figure columns never wrap; long headers are on two lines."""
    from rlvr_cli.analysis.sparsity import KINDS

    base, target = result["base"], result["target"]
    table = Table(title=escape(f"update {base['spec']} ({base['dtype']}) -> {target['spec']} ({target['dtype']}), "
                               f"tolerance {result['tolerance']:g}"),
                  caption="% of entries changed; update sparsity = 100% - changed (arXiv 2505.11711)")
    with_rank = any("rank" in t for t in result["tensors"])
    tol = f"> {result['tolerance']:g}"
    cols = ["module", "params", "exact", tol, "bf16\nexact", f"bf16\n{tol}"]
    for col in cols + (["eff. rank\n99%/full"] if with_rank else []):
        table.add_column(col, justify="left" if col == "module" else "right", no_wrap=True)

    def row(name: str, block: dict[str, Any]) -> list[str]:
        cells = [name, f"{block['n']:,}"] + [f"{100 * block[f'changed_frac_{k}']:.4f}%" for k in KINDS]
        if with_rank:
            ranks = sorted(t["effective_rank_99"] / t["full_rank"] for t in result["tensors"]
                           if "rank" in t and (t["module"] == name or name == "all"))
            cells.append(f"{100 * ranks[len(ranks) // 2]:.0f}%" if ranks else "-")
        return cells

    for name, block in result["by_module"].items():
        table.add_row(*row(name, block))
    table.add_row(*row("all", result["overall"]), style="bold")
    return table


def memory(
    model: str = typer.Argument(..., help="a parameter count (70e9, 1.7e9, 135e6), smollm2-135m / tiny-random, "
                                          "a model directory or a hub id"),
    optimizer: list[str] = typer.Option(None, "--optimizer", help="repeatable; default: every optimizer option"),
    adapter: str = typer.Option("full", "--adapter", help="an adapter of conf/adapter/ (lora, dora, pissa, ia3, ...; "
                                                             "needs a model)"),
    r: int | None = typer.Option(None, "--r", help="adapter rank; default: the adapter config's"),
    precision: str = typer.Option("bf16-mixed", "--precision", help="fp32 | bf16-mixed (fp32 weights, bf16 autocast: "
                                  "rlvr train's precision=auto on bf16 GPUs) | fp16-mixed | bf16-true (bf16 weights)"),
    num_gpus: int = typer.Option(1, "--num-gpus", help="GPUs the run is spread over (data parallel)"),
    shard: str = typer.Option("none", "--shard", help="a distributed mode (conf/distributed/): none | ddp | zero1 | "
                                                    "zero2 | zero3 | fsdp"),
    offload: str = typer.Option("none", "--offload", help="none | optimizer (ZeRO 1-3) | params (ZeRO-3, fsdp): "
                                                          "CPU offload"),
    gpu_memory: str | None = typer.Option(None, "--gpu-memory", help="memory of one GPU (80GB, 80GiB, 80e9): "
                                                                     "say whether the run fits"),
    seq_len: int = typer.Option(1024, "--seq-len", help="tokens per sequence, for activations (needs a model)"),
    micro_batch: int = typer.Option(1, "--micro-batch", help="sequences per GPU per forward, for activations"),
    checkpointing: bool = typer.Option(False, "--activation-checkpointing/--no-activation-checkpointing",
                                       help="full activation checkpointing of each decoder layer"),
    base_bits: int | None = typer.Option(None, "--base-bits", help="4: a QLoRA base, frozen weights in 4-bit NF4 "
                                                                   "(needs --adapter)"),
    adafactor_beta1: float | None = typer.Option(None, "--adafactor-beta1", help="Adafactor's beta1: when set it "
                                                                                 "keeps a first moment (4 B/param)"),
    vllm_share: float | None = typer.Option(None, "--vllm-gpu-memory-utilization",
                                            help="generation=vllm_colocate: share of each GPU vLLM reserves (its "
                                                 "weights and KV cache), counted in the GPU total (needs "
                                                 "--gpu-memory)"),
    as_json: bool = JSON,
) -> None:
    """Training memory per optimizer: weights, gradients, optimizer states, master weights, and per GPU (sharded,
    offloaded, with activations from a model's config) whether the run fits. Bytes in decimal units: 1 GB =
    1e9 bytes. Exit code 0 whether it fits or not."""
    from rlvr_cli.analysis.memory import estimate
    from rlvr_cli.analysis.planner import Plan, parse_size
    from rlvr_cli.core.errors import BadInput

    with bad_input_exits(), stdout_to_stderr(as_json):
        if adafactor_beta1 is not None and not 0 <= adafactor_beta1 < 1:
            raise BadInput(f"--adafactor-beta1 must be in [0, 1), got {adafactor_beta1}")
        if adafactor_beta1 is not None and optimizer and "adafactor" not in optimizer:
            raise BadInput("--adafactor-beta1 sets Adafactor's beta1: add --optimizer adafactor")
        plan = Plan(num_gpus, shard, offload, None if gpu_memory is None else parse_size(gpu_memory), base_bits,
                    seq_len, micro_batch, checkpointing, vllm_gpu_memory_utilization=vllm_share)
        options = {} if adafactor_beta1 is None else {"adafactor": {"beta1": adafactor_beta1}}
        est = estimate(model, optimizer or None, precision, adapter, r, plan, options)
    if as_json:
        print_json(asdict(est))
    else:
        print_table(memory_table(est))
        if _plan_asked(est):
            print_table(per_gpu_table(est))


def _plan_asked(est: MemoryEstimate) -> bool:
    """Whether `rlvr memory` prints the per-GPU table: activations are known (a model), or the plan differs from
    one GPU without sharding, offload or a memory to check against."""
    plan = est.plan
    return est.activations is not None or (plan is not None and (plan.num_gpus > 1 or plan.shard != "none"
                                                                  or plan.gpu_memory is not None))


def memory_table(est: MemoryEstimate) -> Table:
    """A Rich table of a `rlvr_cli.analysis.memory.estimate`: one row per optimizer with weights, gradients,
    optimizer states, master weights and their total (decimal units, `human_bytes`: 1 GB = 1e9 bytes), and
    the total bytes per parameter. Figures never wrap; the caption names the precision, the sources, and
    says that activations are not included. A lower bound (Adafactor from a bare count) reads `>=`."""
    from rlvr_cli.analysis.memory import PRECISION_HELP, SOURCE

    what = f"{est.n_params:,} parameters" + ("" if est.from_shapes else " (a bare count)")
    if est.adapter != "full":
        what += (f", adapter {est.adapter} r={est.r}: {est.n_trainable:,} trainable "
                 f"({est.n_trainable / est.n_params:.2%})")
    table = Table(title=escape(f"training memory of {est.model}: {what}, {est.precision}"), caption_justify="left")
    table.add_column("optimizer", no_wrap=True)
    for col in ("weights", "gradients", "states", "master", "total", "B/param"):
        table.add_column(col, justify="right", no_wrap=True)
    notes = []
    for name, b in est.rows.items():
        states, total, per = human_bytes(b.optimizer_states), human_bytes(b.total), f"{b.bytes_per_param:.2f}"
        if not b.exact:
            states, total, per = f"~{states}", f">= {total}", f">= {per}"
            notes.append(f"* {name}: {b.note}.")
        table.add_row(name if b.exact else f"{name} *", human_bytes(b.weights), human_bytes(b.gradients), states,
                      human_bytes(b.master_weights), total, per)
    counts = ("Exact for these parameter shapes (per-tensor step counters included)." if est.from_shapes else
              "From a bare parameter count: per-element state only (per-tensor step counters need the shapes).")
    table.caption = "\n".join(["states: optimizer states; master: master weights (fp32 copy); B/param: total "
                               "bytes per parameter.", PRECISION_HELP[est.precision] + ". " + counts, *notes,
                               SOURCE])
    return table


def per_gpu_table(est: MemoryEstimate) -> Table:
    """A Rich table of one GPU's memory per optimizer (`est.per_gpu`): weights, gradients, optimizer states,
    master weights (each sharded as the plan's stage shards it), activations (a model only), the GPU's total,
    the CPU bytes this GPU offloads (with `--offload`), and whether it fits (with `--gpu-memory`). Decimal units
    (`human_bytes`); figures never wrap; the caption states the plan, the activation formula and its source."""
    from rlvr_cli.analysis.planner import ACTIVATION_SOURCE, shard_parts

    plan, act = est.plan, est.activations
    assert plan is not None
    layout = f"{plan.num_gpus} GPU{'s' if plan.num_gpus > 1 else ''}, shard {plan.shard}, offload {plan.offload}"
    table = Table(title=f"per GPU: {layout}", caption_justify="left")
    table.add_column("optimizer", no_wrap=True)
    vllm = plan.vllm_gpu_memory_utilization is not None
    columns = ["weights", "gradients", "states", "master", *(["activations"] if act else []),
               *(["vLLM"] if vllm else []), "GPU total",
               *(["CPU"] if plan.offload != "none" else []), *(["fits"] if plan.gpu_memory is not None else [])]
    for col in columns:
        table.add_column(col, justify="right", no_wrap=True)
    for name, g in est.per_gpu.items():
        exact = est.rows[name].exact
        total = human_bytes(g.total) if exact else f">= {human_bytes(g.total)}"
        cells = [human_bytes(g.weights), human_bytes(g.gradients), human_bytes(g.optimizer_states),
                 human_bytes(g.master_weights), *([human_bytes(g.activations)] if act else []),
                 *([human_bytes(g.vllm or 0)] if vllm else []), total,
                 *([human_bytes(g.cpu)] if plan.offload != "none" else []),
                 *([("yes" if g.fits else "[red]no[/]")] if plan.gpu_memory is not None else [])]
        table.add_row(name, *cells)
    sharded = ", ".join(sorted(shard_parts(plan.shard))) or "nothing"
    lines = [f"{plan.shard}: shards {sharded} over {plan.num_gpus} GPU(s), the rest replicated"
             + (f"; CPU: this GPU's offloaded share (x {plan.num_gpus} in all)." if plan.offload != "none" else ".")]
    if act:
        lines.append(f"activations: L={act.layers} h={act.hidden} a={act.heads} f={act.intermediate} V={act.vocab}, "
                     f"s={act.seq_len} tokens x b={act.micro_batch} sequences, checkpointing "
                     f"{'on' if act.checkpointing else 'off'}. {ACTIVATION_SOURCE}")
    else:
        lines.append("Activations not included: give a model (its config) instead of a bare count.")
    if vllm:
        lines.append(f"vLLM: the {plan.vllm_gpu_memory_utilization:g} share of --gpu-memory a colocated vLLM engine "
                     "reserves (its weights, activations and KV cache; vLLM's gpu_memory_utilization).")
    if plan.gpu_memory is not None:
        lines.append(f"fits: GPU total <= --gpu-memory {human_bytes(plan.gpu_memory)} ({plan.gpu_memory:,} bytes; "
                     "the CUDA context, allocator fragmentation and temporary buffers are not counted).")
    table.caption = "\n".join(lines)
    return table
