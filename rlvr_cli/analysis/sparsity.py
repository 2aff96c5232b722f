"""Update sparsity: which weights a training run changed, measured between two sets of weights.

Definition (Mukherjee et al., "Reinforcement Learning Finetunes Small Subnetworks in Large Language
Models", arXiv 2505.11711): for initial weights theta0 and trained weights theta1 with n entries,

    update sparsity = 1 - nnz(theta1 - theta0) / n,

where two values count as equal when their absolute difference is at most a tolerance (1e-5 in the
paper, on bfloat16 checkpoints). rlvr reports the complement, the fraction of entries *changed*, in
four ways, because the figure depends on dtype and tolerance (Mukherjee et al. report it on bf16 checkpoints; "RL's
Razor", arXiv 2509.04259, section 6: the same training in fp32 shows no sparsity):

    exact        theta1 != theta0, on the weights as stored (the narrower side upcast to the wider dtype)
    tol          |theta1 - theta0| > tolerance, as stored
    bf16_exact   the same after casting both sides to bfloat16
    bf16_tol     |bf16(theta1) - bf16(theta0)| > tolerance

The optional rank of a 2-D update is its matrix rank (`torch.linalg.matrix_rank`, default
tolerance) and its 99%-energy effective rank: the fewest singular values whose squares hold 99%
of the sum of squares (the paper reports updates to be nearly full rank).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rlvr_cli.analysis.heatmap import write_heatmap
from rlvr_cli.core.checks import check_tolerance
from rlvr_cli.core.errors import BadInput
from rlvr_cli.core.groups import default_node
from rlvr_cli.core.run_dir import check_output_dir
from rlvr_cli.models.parameters import architecture, check_compatible, state_dict
from rlvr_cli.models.progress_bars import transformers_bars_off
from rlvr_cli.models.sources import load_eval_model, resolve_model

if TYPE_CHECKING:
    import torch

#: The four ways of counting a changed entry (see the module docstring).
KINDS = ("exact", "tol", "bf16_exact", "bf16_tol")
#: The default tolerance, stated once: train.yaml's `sparsity.tolerance` (1e-5, as arXiv 2505.11711), which
#: `rlvr sparsity --tolerance` defaults to as well.
DEFAULT_TOLERANCE: float = float(default_node("sparsity")["tolerance"])
#: Elements compared at a time: bounds the scratch memory to a few hundred MiB however big a tensor is.
CHUNK = 1 << 24
#: Parameter-name part -> module type (Llama/Qwen/Mistral names; norms matched by substring).
MODULE_TYPES = {
    "q_proj": "q", "k_proj": "k", "v_proj": "v", "o_proj": "o",
    "gate_proj": "gate", "up_proj": "up", "down_proj": "down",
    "embed_tokens": "embeddings", "wte": "embeddings", "wpe": "embeddings", "lm_head": "lm_head",
}
MODULE_ORDER = ("embeddings", "q", "k", "v", "o", "gate", "up", "down", "norm", "lm_head", "other")
LAYER = re.compile(r"(?:^|\.)(?:layers|h|blocks)\.(\d+)\.")


@dataclass
class Counts:
    """Entries compared (`n`) and entries changed by each of `KINDS`, over one or many tensors."""

    n: int = 0
    exact: int = 0
    tol: int = 0
    bf16_exact: int = 0
    bf16_tol: int = 0

    def __iadd__(self, other: Counts) -> Counts:
        for k in ("n", *KINDS):
            setattr(self, k, getattr(self, k) + getattr(other, k))
        return self

    def fractions(self) -> dict[str, float]:
        """`changed_frac_<kind>` for each kind: changed entries / n (0.0 for n = 0); sparsity is 1 minus it."""
        return {f"changed_frac_{k}": getattr(self, k) / self.n if self.n else 0.0 for k in KINDS}


def count_changes(base: torch.Tensor, target: torch.Tensor, tolerance: float = DEFAULT_TOLERANCE) -> Counts:
    """Count the entries of `target` that differ from `base` (same shape, any float dtypes, any device).

    Both sides are compared in the wider of their two dtypes (`torch.promote_types`); differences of 16-bit
    values are taken in float32. A NaN on either side counts as changed; `-0.0` equals `0.0`.

    Raises:
        BadInput: the shapes differ.
    """
    import torch

    if base.shape != target.shape:
        raise BadInput(f"shape mismatch: base {tuple(base.shape)} vs target {tuple(target.shape)}")
    dtype = torch.promote_types(base.dtype, target.dtype)
    a, b = base.detach().reshape(-1), target.detach().reshape(-1)
    c = Counts(n=a.numel())
    for i in range(0, a.numel(), CHUNK):
        x, y = a[i:i + CHUNK].to(dtype), b[i:i + CHUNK].to(dtype)
        exact, tol = _changed(x, y, tolerance)
        c.exact, c.tol = c.exact + exact, c.tol + tol
        if dtype != torch.bfloat16:  # else the cast changes nothing
            exact, tol = _changed(x.to(torch.bfloat16), y.to(torch.bfloat16), tolerance)
        c.bf16_exact, c.bf16_tol = c.bf16_exact + exact, c.bf16_tol + tol
    return c


def _changed(x: torch.Tensor, y: torch.Tensor, tolerance: float) -> tuple[int, int]:
    """`(entries with x != y, entries with |y - x| > tolerance)` of two same-dtype 1-D tensors (NaN: changed)."""
    import torch

    exact = int(torch.count_nonzero(x != y))
    if x.itemsize < 4:
        x, y = x.float(), y.float()
    return exact, int(torch.count_nonzero(~((y - x).abs_() <= tolerance)))


def update_ranks(delta: torch.Tensor) -> dict[str, int]:
    """`rank` (matrix rank, torch's default tolerance), `effective_rank_99` (fewest singular values holding
    99% of the energy sum(s^2)) and `full_rank` (min(rows, cols)) of a 2-D update `delta` [rows, cols]."""
    import torch

    d = delta.detach().to(torch.float32)
    s = torch.linalg.svdvals(d)
    energy = (s**2).cumsum(0)
    effective = 0 if energy[-1] == 0 else int((energy < 0.99 * energy[-1]).sum()) + 1
    return {"rank": int(torch.linalg.matrix_rank(d)), "effective_rank_99": effective, "full_rank": min(d.shape)}


def module_type(name: str) -> str:
    """The module type of a parameter name: q, k, v, o, gate, up, down, norm, embeddings, lm_head or other."""
    parts = name.split(".")
    for part in reversed(parts[:-1] or parts):
        if part in MODULE_TYPES:
            return MODULE_TYPES[part]
        if "norm" in part:
            return "norm"
    return "other"


def layer_index(name: str) -> int | None:
    """The transformer block a parameter belongs to (`model.layers.3.mlp...` -> 3), None outside the blocks."""
    m = LAYER.search(name)
    return int(m.group(1)) if m else None


@dataclass
class SparsityReport:
    """The comparison of two state dicts: totals, per module type, per layer and per tensor."""

    tolerance: float
    overall: Counts = field(default_factory=Counts)
    by_module: dict[str, Counts] = field(default_factory=dict)
    by_layer: dict[int, Counts] = field(default_factory=dict)
    tensors: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """Plain JSON: counts and `changed_frac_*` fractions for the totals, each module type and each layer."""

        def block(c: Counts) -> dict[str, Any]:
            return {**asdict(c), **c.fractions()}

        modules = sorted(self.by_module, key=MODULE_ORDER.index)
        return {"tolerance": self.tolerance, "overall": block(self.overall),
                "by_module": {m: block(self.by_module[m]) for m in modules},
                "by_layer": {str(i): block(c) for i, c in sorted(self.by_layer.items())},
                "tensors": self.tensors}


def compare(base: dict[str, torch.Tensor], target: dict[str, torch.Tensor], tolerance: float = DEFAULT_TOLERANCE,
            rank: bool = False, progress: Any = None) -> SparsityReport:
    """Compare two state dicts parameter by parameter (see the module docstring for the four counts).

    Args:
        base, target: parameter name -> tensor; the same names and shapes (tied weights once).
        tolerance: absolute difference at or below which two values are equal; >= 0.
        rank: also compute `update_ranks` of every 2-D update (one SVD each: slow on big models).
        progress: optional callable, called with each parameter name as it is done.

    Raises:
        BadInput: a negative tolerance, different parameter names or shapes.
    """
    check_tolerance(tolerance)
    check_compatible(base, target)
    report = SparsityReport(tolerance=tolerance)
    for name in base:
        c = count_changes(base[name], target[name], tolerance)
        mod, layer = module_type(name), layer_index(name)
        report.overall += c
        report.by_module.setdefault(mod, Counts())
        report.by_module[mod] += c
        if layer is not None:
            report.by_layer.setdefault(layer, Counts())
            report.by_layer[layer] += c
        row = {"name": name, "shape": list(base[name].shape), "module": mod, "layer": layer,
               "base_dtype": str(base[name].dtype).removeprefix("torch."),
               "target_dtype": str(target[name].dtype).removeprefix("torch."), **asdict(c), **c.fractions()}
        if rank and base[name].dim() == 2:
            row.update(update_ranks(target[name].double() - base[name].double()))
        report.tensors.append(row)
        if progress:
            progress(name)
    return report


def measure_sparsity(base_spec: str, target_spec: str, tolerance: float, rank: bool, output_dir: Path,
                     progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """What `rlvr sparsity BASE TARGET` measures: load both models, `compare` them, write `sparsity.json` and
    `sparsity_heatmap.png` (`rlvr_cli.analysis.heatmap.write_heatmap`) into `output_dir` (created). Adapter runs are
    merged into their base first; sparse-delta checkpoints are rebuilt. Prints nothing (`rlvr_cli.cli.analysis`
    renders the result).

    Args:
        base_spec, target_spec: what `rlvr_cli.models.sources.resolve_model` takes (hub id, model directory, run
            directory, sparse-delta checkpoint, an embedded preset).
        tolerance: absolute difference at or below which two values are equal; >= 0.
        rank: also the matrix rank and 99%-energy rank of every 2-D update (`update_ranks`).
        output_dir: where sparsity.json and the heat map go.
        progress: optional callable, called as `progress(done, total)` with the number of tensors compared so far
            and in all: once with done = 0 when the comparison starts (after both models loaded), then after each
            tensor.

    Returns:
        The content of sparsity.json (`base`, `target` identities: spec, kind, path, base, dtype; `definition`;
        then `SparsityReport.to_json()`), plus `heatmap`: the PNG's path, or None when no parameter is in a layer.

    Raises:
        BadInput: before loading any weights, for a negative tolerance, an output directory that is a file or
            cannot be written, a missing model, different architectures or shapes.
    """
    check_tolerance(tolerance)
    check_output_dir(output_dir, "--output-dir")
    sources = [resolve_model(base_spec), resolve_model(target_spec)]
    check_compatible(*(architecture(s) for s in sources))  # before any weight loads
    transformers_bars_off()  # transformers' per-model loading bars; the caller shows the comparison
    states, identities = [], []
    for source in sources:
        model, _ = load_eval_model(source, dtype=source.dtype or "auto", with_tokenizer=False)
        states.append(state_dict(model))
        identities.append({"spec": source.spec, "kind": source.kind, "path": source.path, "base": source.base,
                           "dtype": str(model.dtype).removeprefix("torch.")})
    total = len(states[0])
    done = 0

    def advance(_: str) -> None:
        nonlocal done
        done += 1
        if progress:
            progress(done, total)

    if progress:
        progress(0, total)
    report = compare(states[0], states[1], tolerance, rank, progress=advance)
    result = {"base": identities[0], "target": identities[1],
              "definition": "changed = |target - base| > tolerance (arXiv 2505.11711); sparsity = 1 - changed",
              **report.to_json()}
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "sparsity.json").write_text(json.dumps(result, indent=2) + "\n")
    result["heatmap"] = write_heatmap(result, output_dir / "sparsity_heatmap.png", MODULE_ORDER)
    return result


def initial_weights(model: Any) -> dict[str, torch.Tensor]:
    """A CPU copy of the trainable parameters of a fully fine-tuned model (4 bytes per parameter in fp32).
    A PEFT model needs none: its base weights are frozen, so they are their own initial copy."""
    return {n: p.detach().to("cpu", copy=True) for n, p in model.named_parameters() if p.requires_grad}


def model_update(model: Any, initial: dict[str, torch.Tensor] | None, tolerance: float) -> Counts:
    """Count the weights of a live model that differ from its initial weights, over all base-model parameters.

    Full fine-tuning compares each parameter with `initial` (`initial_weights`); parameters not in it (frozen)
    are unchanged. A PEFT model (`initial` None) is measured on its merged update: each adapter layer is
    copied and merged with PEFT's own `merge()` (the training model is not touched), and its merged weight
    is compared with the frozen base weight.
    """
    import copy

    from peft.tuners.tuners_utils import BaseTunerLayer

    total = Counts()
    if initial is not None:
        for name, p in model.named_parameters():
            if name in initial:
                total += count_changes(initial[name], p.detach().to("cpu"), tolerance)
            else:
                total.n += p.numel()
        return total
    total.n = sum(p.numel() for p in model.parameters() if not p.requires_grad)  # the frozen base model
    for module in model.modules():
        if isinstance(module, BaseTunerLayer):
            merged = copy.deepcopy(module)
            merged.merge()
            c = count_changes(module.get_base_layer().weight, merged.get_base_layer().weight, tolerance)
            for k in KINDS:
                setattr(total, k, getattr(total, k) + getattr(c, k))
    return total
