"""sweeps/peft_methods.yaml (the grid of arXiv 2512.23165), the grid's per-adapter learning rates and base
overrides, and `rlvr report`'s per-adapter table, CSV and bar chart, on a real tiny sweep."""

from __future__ import annotations

import csv
import json
import shutil
import statistics
from pathlib import Path

import pytest
from conftest import CHARS, REPO, TINY
from rich.console import Console
from typer.testing import CliRunner

from rlvr_cli.cli.main import app
from rlvr_cli.cli.report import report_command
from rlvr_cli.core.compose import compose_run, group_options
from rlvr_cli.models.adapters import knobs
from rlvr_cli.models.embedded import tiny_random_dir
from rlvr_cli.sweeps.comparison import build_report
from rlvr_cli.sweeps.grid import expand, load_sweep

PEFT_METHODS = REPO / "sweeps" / "peft_methods.yaml"
#: Every PEFT method of the adapter group (full fine-tuning aside), from its folder: a new method file is in the study.
METHODS = set(group_options("adapter")) - {"full"}
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
runner = CliRunner()


def _option(overrides: list[str], key: str) -> str | None:
    return next((o.split("=", 1)[1] for o in overrides if o.startswith(f"{key}=")), None)


def test_an_adapter_lr_replaces_the_optimizer_grid_for_its_cells_only():
    cells = expand({"name": "t", "axes": {
        "optimizer": {"adamw": {"lr": [1e-5]}, "sgd": {"lr": [0.1]}},
        "adapter": {"full": {"lr": {"adamw": [1e-6]}},  # adamw only: sgd keeps its own grid
                    "lora": {"r": [8], "lr": {"min": 1e-5, "max": 1e-4, "per_decade": 1},
                             "base": ["adapter.alpha=16"]},
                    "ia3": {}},
        "seed": [0],
    }})
    assert [c.name for c in cells] == [
        "adamw-lr1e-05_lora-r8_s0", "adamw-lr1e-05_ia3_s0", "adamw-lr1e-06_full_s0", "adamw-lr0.0001_lora-r8_s0",
        "sgd-lr0.1_full_s0", "sgd-lr0.1_ia3_s0", "sgd-lr1e-05_lora-r8_s0", "sgd-lr0.0001_lora-r8_s0"]
    by_name = {c.name: c for c in cells}
    full = by_name["adamw-lr1e-06_full_s0"]
    assert full.axes == {"optimizer": "adamw", "lr": 1e-6, "adapter": "full", "r": None, "seed": 0}
    assert _option(full.overrides, "optimizer.lr") == "1e-06" and "adapter.alpha=16" not in full.overrides
    lora = by_name["adamw-lr0.0001_lora-r8_s0"]
    assert lora.overrides[:5] == ["optimizer=adamw", "optimizer.lr=0.0001", "adapter=lora", "adapter.r=8",
                                  "adapter.alpha=16"]
    assert "alpha" not in lora.name and "alpha" not in lora.axes  # an adapter's base is not an axis


def test_sweeps_without_adapter_lrs_expand_as_before():
    cells = expand(load_sweep(REPO / "sweeps" / "adapter_ranks.yaml"))
    assert len(cells) == 2 * (1 + 3 * 4)
    assert [c.name for c in cells[:3]] == ["adamw-lr1e-05_full_s0", "adamw-lr1e-05_lora-r1_s0",
                                           "adamw-lr1e-05_lora-r8_s0"]
    assert cells[13].name == "adamw-lr0.0001_full_s0"


@pytest.mark.parametrize("adapter, message", [
    ("{full: {lr: [1.0e-6]}}", "bad.yaml: axes.adapter.full.lr: a learning rate per adapter needs an optimizer axis"),
    ("{full: {lr: {sgd: [0.1]}}}", "bad.yaml: axes.adapter.full.lr.sgd: not an optimizer of this sweep; its "
                                   "optimizers: adamw"),
    ("{full: {lr: {min: 1.0e-6}}}", "bad.yaml: axes.adapter.full.lr: give a list of learning rates or {min, max, "
                                    "per_decade}"),
    ("{full: {lr: [0]}}", "bad.yaml: axes.adapter.full.lr must be a finite number > 0, got 0"),
    ("{lora: {base: adapter.alpha=64}}", "bad.yaml: axes.adapter.lora.base: give a list of override strings"),
    ("{lora: {alpha: [64]}}", "bad.yaml: axes.adapter.lora.alpha: unknown key; valid keys: r, lr, base"),
])
def test_bad_adapter_entries_fail_in_one_line_before_any_run(adapter, message, tmp_path):
    optimizer = "" if "optimizer axis" in message else "optimizer: {adamw: {lr: [1.0e-5]}}, "
    (tmp_path / "bad.yaml").write_text(f"name: x\naxes: {{{optimizer}adapter: {adapter}}}\n")
    r = runner.invoke(app, ["sweep", str(tmp_path / "bad.yaml"), "--output-dir", str(tmp_path / "out")])
    assert r.exit_code == 2, r.output
    assert r.stderr.startswith("error: ") and r.stderr.count("\n") == 1, r.stderr
    assert message in r.stderr, r.stderr
    assert not (tmp_path / "out").exists()


def test_peft_methods_is_the_studys_grid_and_every_cell_passes_the_run_checks(tmp_path):
    """Full fine-tuning and the twelve methods of arXiv 2512.23165 under AdamW: lr 1e-6 for full, 1e-5 for the
    adapters; rank 32, alpha 64 and dropout 0.05 exactly where the method has them; 8 completions per prompt.
    What `rlvr train` checks before loading a model (a knob the method lacks, AdaLoRA's schedule, LoRA-FA's
    optimizer, ...) passes for every cell, and PEFT gets those values."""
    from rlvr_cli.training.recipe import check_inputs

    cells = expand(load_sweep(PEFT_METHODS))
    adapters = [c.axes["adapter"] for c in cells]
    assert adapters[0] == "full" and set(adapters[1:]) == METHODS and len(cells) == len(METHODS) + 1
    assert set(adapters) == set(group_options("adapter"))  # a new method file belongs in the study's grid too
    for cell in cells:
        name = cell.axes["adapter"]
        assert cell.axes["optimizer"] == "adamw" and cell.axes["lr"] == (1e-6 if name == "full" else 1e-5), name
        assert "grpo.num_generations=8" in cell.overrides
        cfg = compose_run([*cell.overrides, *TINY, f"output_dir={tmp_path}", f"run_name={cell.name}"])
        has = knobs(cfg.adapter)
        assert _option(cell.overrides, "adapter.r") == ("32" if "r" in has else None), name
        assert _option(cell.overrides, "adapter.alpha") == ("64" if "alpha" in has else None), name
        assert _option(cell.overrides, "adapter.dropout") == ("0.05" if "dropout" in has else None), name
        peft = check_inputs(cfg).peft_config
        assert (peft is None) == (name == "full"), name
        if "r" in has:
            assert (peft.init_r if name == "adalora" else peft.r) == 32, name
        if "alpha" in has:
            assert peft.lora_alpha == 64, name
        if "dropout" in has:
            field = {"vera": "vera_dropout", "miss": "miss_dropout"}.get(name, "lora_dropout")
            assert getattr(peft, field) == 0.05, name


def test_dry_run_composes_all_13_cells(tmp_path):
    r = runner.invoke(app, ["sweep", str(PEFT_METHODS), "--dry-run", "--json", "--output-dir", str(tmp_path / "o")])
    assert r.exit_code == 0, r.output
    cells = json.loads(r.stdout)["cells"]
    assert len(cells) == 13 and cells[0]["name"] == "adamw-lr1e-06_full_s0"
    assert "adamw-lr1e-05_ln_tuning_s0" in [c["name"] for c in cells] and not (tmp_path / "o").exists()


@pytest.fixture(scope="module")
def adapter_sweep(tmp_path_factory):
    """A real tiny sweep whose cells differ by adapter, expanded by the grid: full at two learning rates of its
    own, LoRA r 2 (alpha 4 through its base) at the optimizer's, and VeRA whose base points at a model without
    weights (both its cells fail); two seeds each. Returns (sweep_dir, printed text)."""
    from rlvr_cli.sweeps.manifest import write_manifest
    from rlvr_cli.training.recipe import train

    root = tmp_path_factory.mktemp("peft_sweep")
    broken = root / "no-weights"  # a config and a tokenizer but no weights: the load fails after the run starts
    shutil.copytree(tiny_random_dir(), broken, ignore=shutil.ignore_patterns("*.safetensors"))
    cells = expand({"name": "by-adapter", "base": [*TINY, *CHARS], "axes": {
        "optimizer": {"adamw": {"lr": [1e-3]}},
        "adapter": {"full": {"lr": [1e-4, 1e-3]}, "lora": {"r": [2], "base": ["adapter.alpha=4"]},
                    "vera": {"r": [2], "base": [f"model.name_or_path={broken}"]}},
        "seed": [0, 1]}})
    sweep_dir = root / "sweep"
    sweep_dir.mkdir()
    write_manifest(sweep_dir, {"name": "by-adapter", "cells": [
        {"name": c.name, "run_dir": c.run_dir, "overrides": c.overrides, "axes": c.axes} for c in cells]})
    for cell in cells:
        args = [*cell.overrides, f"output_dir={sweep_dir / 'runs'}", f"run_name={cell.name}"]
        train(compose_run(args), args, progress=False)  # the VeRA cells end `failed` in their summary.json
    console = Console(record=True, width=250, color_system=None)
    report_command(sweep_dir, console=console)
    return sweep_dir, console.export_text()


def _summary(sweep_dir: Path, name: str) -> dict:
    return json.loads((sweep_dir / "runs" / name / "summary.json").read_text())


def test_one_row_per_adapter_at_its_best_lr(adapter_sweep):
    sweep_dir, _ = adapter_sweep
    rows = build_report(sweep_dir)["by_adapter"]
    assert [(r["optimizer"], r["adapter"], r["r"], r["full"]) for r in rows] == [  # in order of first cell
        ("adamw", "full", None, True), ("adamw", "lora", 2, False), ("adamw", "vera", 2, False)]
    full, lora, vera = rows
    final = {lr: [_summary(sweep_dir, f"adamw-lr{lr:g}_full_s{s}")["reward_mean_last_quarter"] for s in (0, 1)]
             for lr in (1e-4, 1e-3)}
    best = max(sorted(final), key=lambda lr: statistics.fmean(final[lr]))
    assert full["lr"] == best and full["n_lrs"] == 2 and full["n"] == 2
    assert full["mean"] == pytest.approx(statistics.fmean(final[best]))
    assert full["std"] == pytest.approx(statistics.stdev(final[best]))
    lora_final = [_summary(sweep_dir, f"adamw-lr0.001_lora-r2_s{s}")["reward_mean_last_quarter"] for s in (0, 1)]
    summary = _summary(sweep_dir, "adamw-lr0.001_lora-r2_s0")
    assert lora["lr"] == summary["lr"] == 1e-3 and lora["n"] == 2 and lora["statuses"] == {"completed": 2}
    assert lora["mean"] == pytest.approx(statistics.fmean(lora_final))
    assert lora["trainable_params"] == summary["trainable_params"] < full["trainable_params"]
    state = summary["optimizer_state_bytes"]  # AdamW: fp32 m and v, and a step count per tensor
    assert lora["optimizer_state_bytes"] == state >= 8 * lora["trainable_params"]
    assert full["trainable_params"] == full["total_params"] == _summary(sweep_dir, "adamw-lr0.001_full_s0")[
        "total_params"]
    config = (sweep_dir / "runs" / "adamw-lr0.001_lora-r2_s0" / "config.yaml").read_text()
    assert "lora_alpha: 4" in config  # the adapter's base reached the run
    assert vera["mean"] is None and vera["lr"] is None and vera["statuses"] == {"failed": 2}
    assert vera["trainable_params"] is None and vera["optimizer_state_bytes"] is None  # a failed run's are no result


def test_adapter_table_csv_and_plot(adapter_sweep):
    sweep_dir, text = adapter_sweep
    report = build_report(sweep_dir)
    assert "by adapter, each at its best learning rate" in text
    line = next(x for x in text.splitlines() if "(full fine-tuning)" in x)
    full = report["by_adapter"][0]
    assert f"{full['mean']:.3f} ± {full['std']:.3f}" in line and "(of 2)" in line and "100.0%" in line
    assert "2 failed" in next(x for x in text.splitlines() if x.strip("│ ").startswith("vera"))
    with open(sweep_dir / "report_by_adapter.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["adapter"] for r in rows] == ["full", "lora", "vera"]
    assert rows[2]["statuses"] == "failed:2" and rows[2]["mean"] == "" and rows[0]["full"] == "True"
    assert float(rows[1]["mean"]) == pytest.approx(report["by_adapter"][1]["mean"])
    data = (sweep_dir / "plots" / "reward_by_adapter.png").read_bytes()
    assert data[:8] == PNG_MAGIC and len(data) > 10_000
    assert f"plot: {sweep_dir / 'plots' / 'reward_by_adapter.png'}" in text
    assert json.loads((sweep_dir / "report.json").read_text())["by_adapter"] == report["by_adapter"]


def test_a_sweep_of_one_adapter_gets_no_adapter_table_or_chart(tmp_path):
    cells = []
    for name, lr, reward in (("a", 0.01, 0.25), ("b", 0.1, 0.5)):
        (tmp_path / "runs" / name).mkdir(parents=True)
        (tmp_path / "runs" / name / "summary.json").write_text(json.dumps(
            {"status": "completed", "optimizer": "sgd", "lr": lr, "adapter": "full", "seed": 0,
             "reward_mean_last_quarter": reward}))
        cells.append({"name": name, "run_dir": f"runs/{name}", "axes": {"optimizer": "sgd", "lr": lr}})
    (tmp_path / "manifest.json").write_text(json.dumps({"name": "one-adapter", "cells": cells}))
    console = Console(record=True, width=200, color_system=None)
    report = report_command(tmp_path, console=console)
    text = console.export_text()
    assert "by adapter, each at its best" not in text
    assert "plot reward_by_adapter.png skipped: the cells do not differ by adapter" in text
    assert len(report["by_adapter"]) == 1 and report["by_adapter"][0]["lr"] == 0.1  # still in report.json
