"""The figures of `rlvr sparsity`: the update-sparsity heat map, layer by module type (matplotlib, written to PNG
files; the numbers come from `rlvr_cli.analysis.sparsity`)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any


def write_heatmap(result: dict[str, Any], path: Path, module_order: Sequence[str]) -> str | None:
    """A PNG heat map, layer (rows) x module type (columns), of the % of entries changed beyond the tolerance:
    as stored (left) and after a bf16 cast (right).

    Args:
        result: `rlvr_cli.analysis.sparsity.measure_sparsity`'s result: its `tensors` (each with `layer`,
            `module`, `n` entries and the counts `tol`, `bf16_tol`) and `tolerance`.
        path: the PNG to write.
        module_order: the module types in column order (`rlvr_cli.analysis.sparsity.MODULE_ORDER`).

    Returns:
        the path, or None when no parameter is in a layer.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    layered = [t for t in result["tensors"] if t["layer"] is not None]
    if not layered:
        return None
    layers = sorted({t["layer"] for t in layered})
    modules = [m for m in module_order if any(t["module"] == m for t in layered)]
    fig, axes = plt.subplots(1, 2, figsize=(2 + 1.1 * len(modules) * 2, 1.5 + 0.3 * len(layers)), squeeze=False)
    for ax, kind, label in zip(axes[0], ("tol", "bf16_tol"), ("as stored", "bf16 cast"), strict=True):
        grid = np.full((len(layers), len(modules)), np.nan)
        for i, layer in enumerate(layers):
            for j, mod in enumerate(modules):
                ts = [t for t in layered if t["layer"] == layer and t["module"] == mod]
                if ts:
                    grid[i, j] = 100 * sum(t[kind] for t in ts) / sum(t["n"] for t in ts)
        im = ax.imshow(grid, aspect="auto", cmap="viridis", vmin=0, vmax=max(np.nanmax(grid), 1e-9))
        ax.set_xticks(range(len(modules)), modules)
        ax.set_yticks(range(len(layers)), [str(x) for x in layers])
        ax.set_xlabel("module type")
        ax.set_ylabel("layer")
        ax.set_title(f"% changed > {result['tolerance']:g}, {label}")
        fig.colorbar(im, ax=ax, label="% of entries changed")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return str(path)
