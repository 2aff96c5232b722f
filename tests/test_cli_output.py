"""What the commands print: one byte convention (decimal SI), `--json` (one JSON document on stdout, nothing
else), and tables that never split a figure, piped or at 80 columns."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import TINY
from rich.console import Console
from typer.testing import CliRunner

from rlvr_cli.cli.main import app
from rlvr_cli.cli.output import STATUS_COLOURS, print_table
from rlvr_cli.core.units import human_bytes

runner = CliRunner()
REPO = Path(__file__).resolve().parents[1]
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def _cli(*args: str, columns: int = 80) -> subprocess.CompletedProcess:
    """`rlvr ARGS` in a subprocess with stdout and stderr as pipes (not a terminal) and COLUMNS set."""
    env = {**os.environ, "COLUMNS": str(columns)}
    return subprocess.run([sys.executable, "-m", "rlvr_cli.cli", *args], capture_output=True, text=True, env=env,
                          cwd=REPO, timeout=300)


def _rendered(table, width: int = 80) -> str:
    """A table as an 80-column terminal shows it (through `print_table`), without colours."""
    console = Console(record=True, width=width, color_system=None, force_terminal=True)
    print_table(table, console)
    return console.export_text()


def _whole(figures: list[str], text: str) -> None:
    """Every figure appears on one line of `text`, and nothing was cut to `…`."""
    lines = text.splitlines()
    for figure in figures:
        assert any(figure in line for line in lines), f"{figure!r} is not whole in:\n{text}"
    assert "…" not in text


def _json(result) -> dict:
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)  # the whole of stdout is one document


# ------------------------------------------------------------------------------------------------ units


def test_bytes_are_decimal_si_everywhere():
    assert [human_bytes(n) for n in (None, 0, 512, 1536, 3_200_000, 13.6e9, 1120e9, 9999e9, 1.2e13)] == [
        "-", "0 B", "512 B", "1.54 kB", "3.20 MB", "13.6 GB", "1,120 GB", "9,999 GB", "12.0 TB"]
    assert human_bytes(99.96e9) == "100 GB"  # rounding never prints four significant figures


def test_status_colours_have_one_definition():
    from rlvr_cli.sweeps import comparison as report

    assert not hasattr(report, "STATUS_COLOURS") and STATUS_COLOURS["completed"] == "green"


# ----------------------------------------------------------------------------------------------- memory


@pytest.mark.parametrize("columns", [80, 200])
def test_memory_piped_keeps_every_figure_with_its_unit(columns):
    table = _cli("memory", "70e9", "--optimizer", "adamw", "--precision", "fp32", columns=columns)
    data = _cli("memory", "70e9", "--optimizer", "adamw", "--precision", "fp32", "--json", columns=columns)
    assert table.returncode == 0 and data.returncode == 0, table.stderr + data.stderr
    est = json.loads(data.stdout)
    assert data.stderr == ""
    row = est["rows"]["adamw"]
    assert (row["total"], row["optimizer_states"], row["bytes_per_param"]) == (1_120_000_000_000, 560 * 10**9, 16)
    figures = [human_bytes(row[k]) for k in ("weights", "gradients", "optimizer_states", "master_weights", "total")]
    _whole(["1,120 GB", *figures, "16.00", "optimizer", "gradients", "states", "master", "B/param"], table.stdout)
    assert "DESIGN.md" not in table.stdout and "arXiv" in table.stdout


def test_memory_at_80_columns_fits_and_keeps_headers_whole():
    from rlvr_cli.analysis.memory import estimate
    from rlvr_cli.cli.analysis import memory_table

    for est in (estimate("70e9"), estimate("405e9", precision="bf16-mixed"),
                estimate("tiny-random", ["adamw", "adafactor"], adapter="lora", r=8)):
        text = _rendered(memory_table(est))
        if est.model != "405e9":  # 85 columns: printed that wide, not cut (the terminal wraps the lines)
            assert max(map(len, text.splitlines())) <= 80, text
        figures = [human_bytes(getattr(b, k)) for b in est.rows.values()
                   for k in ("weights", "gradients", "optimizer_states", "master_weights", "total")]
        _whole([*figures, "optimizer", "gradients", "B/param"], text)


def test_memory_in_a_real_80_column_terminal():
    import pty

    main, child = pty.openpty()
    env = {**os.environ, "COLUMNS": "80", "TERM": "xterm"}
    proc = subprocess.run([sys.executable, "-m", "rlvr_cli.cli", "memory", "70e9", "--precision", "fp32"], stdout=child,
                          stderr=subprocess.PIPE, env=env, cwd=REPO, timeout=120)
    os.close(child)
    out = b""
    while True:
        try:
            chunk = os.read(main, 65536)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
    os.close(main)
    assert proc.returncode == 0, proc.stderr
    text = ANSI.sub("", out.decode()).replace("\r", "")
    assert max(map(len, text.splitlines())) <= 80
    _whole(["1,120 GB", "840 GB", ">= 560 GB", "gradients", "B/param"], text)


def test_memory_bad_input_with_json_is_one_line_on_stderr():
    result = runner.invoke(app, ["memory", "0", "--json"])
    assert result.exit_code == 2 and result.stdout == ""
    assert result.stderr.startswith("error: parameter count must be") and result.stderr.count("\n") == 1


# -------------------------------------------------------------------------------- train, eval, sparsity


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One tiny `rlvr train --json` run (--json before the overrides) with update sparsity; its summary."""
    out = tmp_path_factory.mktemp("train")
    result = runner.invoke(app, ["train", "--json", *TINY, f"output_dir={out}", "run_name=run",
                                 "sparsity.every_n_steps=1"])
    return _json(result)


def test_train_json_is_the_summary(trained):
    on_disk = json.loads((Path(trained["run_dir"]) / "summary.json").read_text())
    assert trained == on_disk and trained["status"] == "completed"


def test_train_json_after_the_overrides(tmp_path):
    summary = _json(runner.invoke(app, ["train", *TINY, f"output_dir={tmp_path}", "run_name=after", "--json"]))
    assert summary["run_dir"] == str(tmp_path / "after") and summary["global_step"] == 2


def test_train_bad_input_with_json_exits_2_with_nothing_on_stdout(tmp_path):
    result = runner.invoke(app, ["train", *TINY, f"output_dir={tmp_path}", "optimizer.lr=0", "--json"])
    assert result.exit_code == 2 and result.stdout == ""
    assert result.stderr.startswith("error: optimizer.lr must be") and result.stderr.count("\n") == 1


def test_train_summary_table_keeps_figures_whole_at_80_columns(trained):
    from rlvr_cli.cli.train import summary_table

    text = _rendered(summary_table(trained))
    sparsity = trained["update_sparsity"]
    figures = [human_bytes(trained[k]) for k in ("optimizer_state_bytes", "peak_memory_bytes", "weights_bytes",
                                                 "full_weights_bytes")]
    figures += [f"{trained['trainable_params']:,} of {trained['total_params']:,}", f"{trained['wall_time_s']:.1f} s",
                f"{100 * sparsity['changed_frac_tol']:.4f}%", f"{100 * sparsity['changed_frac_bf16_tol']:.4f}%"]
    _whole(figures, text)
    # a path is one figure, kept whole: the table is as wide as the weights path needs (pytest-xdist's temporary
    # directories are longer than pytest's), and within 80 columns for a path that leaves room
    path = trained["weights_dir"]
    assert max(map(len, text.splitlines())) <= max(80, len(path) + len("│ changed bf16 > 1e-05      │  │")), text
    short = _rendered(summary_table({**trained, "run_dir": "/tmp/run", "weights_dir": "/tmp/run/final"}))
    assert max(map(len, short.splitlines())) <= 80, short


def test_eval_json_is_results_json(trained, tmp_path):
    from rlvr_cli.cli.eval import eval_table

    out = tmp_path / "ev"
    results = _json(runner.invoke(app, ["eval", "tiny-random", "--benchmarks", "gsm8k,amc23", "--limit", "2", "--k",
                                        "2", "--max-new-tokens", "8", "--batch-size", "8", "--output-dir", str(out),
                                        "--json"]))
    assert results == json.loads((out / "results.json").read_text())
    text = _rendered(eval_table(results))
    assert max(map(len, text.splitlines())) <= 80, text
    figures = [f"{100 * s[key]:.1f}±{100 * s[key + '_stderr']:.1f}" for s in results["benchmarks"].values()
               for key in ("avg@2", "pass@1", "pass@2", "maj@2")]
    _whole([*figures, "benchmark", "tok/s"], text)


def test_sparsity_json_is_sparsity_json(trained, tmp_path):
    from rlvr_cli.cli.analysis import sparsity_table

    out = tmp_path / "sp"
    result = _json(runner.invoke(app, ["sparsity", "tiny-random", trained["run_dir"], "--output-dir", str(out),
                                       "--rank", "--json"]))
    on_disk = json.loads((out / "sparsity.json").read_text())
    assert {k: v for k, v in result.items() if k != "heatmap"} == on_disk
    text = _rendered(sparsity_table(result))
    figures = [f"{block['n']:,}" for block in result["by_module"].values()]
    figures += [f"{100 * result['overall'][f'changed_frac_{k}']:.4f}%" for k in ("exact", "tol", "bf16_exact")]
    _whole([*figures, "module", "params", "exact"], text)
    assert max(map(len, text.splitlines())) <= 80, text


# ------------------------------------------------------------------------------------------ sweep, report


def test_report_json_and_tables_keep_figures_whole(trained, tmp_path):
    from rlvr_cli.cli.report import best_lr_table, cells_table

    sweep_dir = tmp_path / "sw"
    shutil.copytree(trained["run_dir"], sweep_dir / "runs" / "a")
    cell = {"name": "a", "run_dir": "runs/a", "overrides": [], "axes": {"optimizer": "sgd", "lr": 0.01}}
    (sweep_dir / "manifest.json").write_text(json.dumps({"name": "out", "cells": [cell]}))
    report = _json(runner.invoke(app, ["report", str(sweep_dir), "--json"]))
    assert report == json.loads((sweep_dir / "report.json").read_text()) and report["cells"][0]["status"] == "completed"
    row = report["cells"][0]
    figures = [f"{human_bytes(row['peak_memory_bytes'])} / {human_bytes(row['memory_analytic_bytes'])}",
               f"{human_bytes(row['optimizer_state_bytes'])} / {human_bytes(row['optimizer_state_bytes_analytic'])}",
               f"{row['trainable_params']:,}", f"{row['wall_time_s']:.1f}", "optimizer state", "peak memory"]
    for width in (80, 1000):
        _whole(figures, _rendered(cells_table(report), width))
        _whole(["best lr", "0.01: "], _rendered(best_lr_table(report), width))
    piped = _cli("report", str(sweep_dir), columns=80)
    assert piped.returncode == 0, piped.stderr
    _whole([*figures, row["name"]], piped.stdout)


def test_sweep_json_is_one_document_even_with_its_jobs_output(tmp_path):
    (tmp_path / "one.yaml").write_text("name: one\nbase: [" + ", ".join(TINY) + "]\n"
                                       "axes:\n  optimizer:\n    sgd: {lr: [0.01]}\n")
    result = _cli("sweep", str(tmp_path / "one.yaml"), "--output-dir", str(tmp_path / "out"), "--json")
    assert result.returncode == 0, result.stderr[-2000:]
    data = json.loads(result.stdout)
    assert [c["status"] for c in data["cells"]] == ["completed"] and data["cells"][0]["ran"]
    assert data["report"] == json.loads((tmp_path / "out" / "report.json").read_text())
    dry = _json(runner.invoke(app, ["sweep", str(tmp_path / "one.yaml"), "--dry-run", "--json"]))
    assert dry["dry_run"] and dry["report"] is None and len(dry["cells"]) == 1


def test_config_show_json_is_the_resolved_config():
    cfg = _json(runner.invoke(app, ["config", "show", "--json", "optimizer=adamw", "adapter=lora", "adapter.r=4"]))
    assert cfg["optimizer"]["name"] == "adamw" and cfg["adapter"]["r"] == 4


#: What the libraries under rlvr drew into a run's output before issue 28: transformers' tqdm bars (loading a model,
#: saving one, converting the embedded GGUF once per cache) and tqdm's rate suffix in general.
LIBRARY_BARS = ("Loading weights", "Writing model shards", "Converting and de-quantizing GGUF", "it/s]")


def test_a_default_run_and_evaluation_print_no_library_bar_and_progress_goes_to_stderr(tmp_path):
    """Issue 28, item 3: in an empty model cache (the embedded SmolLM2 converted from its GGUF, tiny-random built),
    `rlvr train` then `rlvr eval` of its run: stdout holds the tables, stderr rlvr's own progress lines, and neither
    a library's bar."""
    env = {**os.environ, "RLVR_CACHE": str(tmp_path / "cache"), "COLUMNS": "120"}
    train = subprocess.run([sys.executable, "-m", "rlvr_cli.cli", "train", *TINY, "sparsity=null",
                            f"output_dir={tmp_path / 'runs'}", "run_name=r"], capture_output=True, text=True,
                           env=env, timeout=600)
    assert train.returncode == 0, train.stderr[-2000:]
    evaluation = subprocess.run([sys.executable, "-m", "rlvr_cli.cli", "eval", str(tmp_path / "runs" / "r"),
                                 "--benchmarks", "gsm8k", "--limit", "2", "--k", "1", "--max-new-tokens", "4"],
                                capture_output=True, text=True, env=env, timeout=600)
    assert evaluation.returncode == 0, evaluation.stderr[-2000:]
    for done in (train, evaluation):
        for stream in (done.stdout, done.stderr):
            assert not [bar for bar in LIBRARY_BARS if bar in stream], stream[-3000:]
    assert "GRPO r" in train.stderr and "GRPO r" not in train.stdout  # rlvr's progress line
    assert "status" in train.stdout and "completed" in train.stdout  # the summary table
    assert "gsm8k (k=1)" in evaluation.stderr and "gsm8k (k=1)" not in evaluation.stdout
    assert "avg@1" in evaluation.stdout
