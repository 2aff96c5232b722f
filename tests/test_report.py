"""`rlvr report`: a sweep directory of real tiny runs (completed, diverged, failed, pending) -> tables, files, plots."""

from __future__ import annotations

import csv
import json
import shutil
import statistics
import warnings
from pathlib import Path

import pytest
from conftest import CHARS, TINY
from rich.console import Console

from rlvr_cli.cli.report import report_command
from rlvr_cli.core.errors import BadInput
from rlvr_cli.core.units import human_bytes, percent
from rlvr_cli.models.embedded import tiny_random_dir
from rlvr_cli.sweeps.cells import CHANGED, eval_avg
from rlvr_cli.sweeps.comparison import build_report

HUGE = ["~rewards.correctness", "~rewards.format", "+rewards.test_report.huge_reward=1.0", "grpo.scale_rewards=none"]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def huge_reward(completions, **_):
    """A reward on the wrong scale (characters x 1e36): the gradient norm overflows to inf at step 1 (diverged)."""
    from rlvr_cli.training.rewards import completion_text

    return [len(completion_text(c)) * 1e36 for c in completions]


def _cell(optimizer: str, lr: float, adapter: str = "full", r: int | None = None, seed: int = 0,
          other: dict | None = None, extra: tuple[str, ...] = CHARS, name: str | None = None) -> dict:
    """A manifest cell as `rlvr sweep` writes it, plus the extra overrides this test trains it with."""
    adapter_part = adapter if r is None else f"{adapter}-r{r}"
    name = name or f"{optimizer}-lr{lr:g}-{adapter_part}-s{seed}"
    overrides = [*TINY, f"optimizer={optimizer}", f"optimizer.lr={lr!r}", f"adapter={adapter}",
                 *([f"adapter.r={r}"] if r is not None else []), f"seed={seed}", *extra]
    axes = {"optimizer": optimizer, "lr": lr, "adapter": adapter, "r": r, "seed": seed, **(other or {})}
    return {"name": name, "run_dir": f"runs/{name}", "overrides": overrides, "axes": axes}


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """A sweep directory: 6 real tiny trainings (4 completed sgd/adamw/lora, 1 diverged), 1 real failure,
    1 pending cell; `report_command` run once on it. Returns (sweep_dir, the printed text)."""
    from rlvr_cli.core.compose import compose_run
    from rlvr_cli.training.recipe import train

    root = tmp_path_factory.mktemp("report")
    sweep_dir = root / "sweep"
    not_a_model = root / "no-weights"  # a config and a tokenizer but no weights: the load fails after the run starts
    shutil.copytree(tiny_random_dir(), not_a_model, ignore=shutil.ignore_patterns("*.safetensors"))
    evaluated = ("eval.benchmarks=[gsm8k]", "eval.limit=2", "eval.k=2", "eval.max_new_tokens=8")
    cells = [
        _cell("sgd", 0.01, seed=0), _cell("sgd", 0.01, seed=1), _cell("sgd", 0.1, seed=0),
        _cell("adamw", 1e-5, extra=(*CHARS, *evaluated)),
        _cell("sgd", 0.01, adapter="lora", r=2),
        _cell("adam", 1e-3, other={"grpo.scale_rewards": "none"}, extra=tuple(HUGE), name="adam-lr0.001-full-huge"),
        _cell("sgd", 0.1, seed=1, extra=(*CHARS, f"model.name_or_path={not_a_model}")),
        _cell("sgd", 1.0, seed=0),  # pending: never run
    ]
    sweep_dir.mkdir()
    (sweep_dir / "sweep.yaml").write_text("name: report-test\n")
    (sweep_dir / "manifest.json").write_text(json.dumps({"name": "report-test", "cells": cells}, indent=2))
    for cell in cells[:-1]:
        args = [*cell["overrides"], f"output_dir={sweep_dir / 'runs'}", f"run_name={cell['name']}"]
        train(compose_run(args), args, progress=False)  # the failing cell ends `failed` in its summary.json
    console = Console(record=True, width=250, color_system=None)
    report_command(sweep_dir, console=console)
    return sweep_dir, console.export_text()


def _summary(sweep_dir: Path, name: str) -> dict:
    return json.loads((sweep_dir / "runs" / name / "summary.json").read_text())


def test_statuses_per_cell(sweep):
    sweep_dir, _ = sweep
    report = build_report(sweep_dir)
    assert report["name"] == "report-test"
    assert [(c["name"], c["status"]) for c in report["cells"]] == [
        ("sgd-lr0.01-full-s0", "completed"), ("sgd-lr0.01-full-s1", "completed"), ("sgd-lr0.1-full-s0", "completed"),
        ("adamw-lr1e-05-full-s0", "completed"), ("sgd-lr0.01-lora-r2-s0", "completed"),
        ("adam-lr0.001-full-huge", "diverged"), ("sgd-lr0.1-full-s1", "failed"), ("sgd-lr1-full-s0", "pending"),
    ]
    assert _summary(sweep_dir, "sgd-lr0.1-full-s1")["status"] == "failed"
    assert not (sweep_dir / "runs" / "sgd-lr1-full-s0").exists()
    by_name = {c["name"]: c for c in report["cells"]}
    pending = by_name["sgd-lr1-full-s0"]
    assert pending["final_reward"] is None and pending["lr"] == 1.0 and pending["optimizer"] == "sgd"
    assert by_name["adam-lr0.001-full-huge"]["grpo.scale_rewards"] == "none"
    assert by_name["sgd-lr0.01-full-s0"]["grpo.scale_rewards"] is None
    assert by_name["sgd-lr0.01-lora-r2-s0"]["r"] == 2 and by_name["sgd-lr0.01-full-s0"]["r"] is None
    adamw = by_name["adamw-lr1e-05-full-s0"]
    assert adamw["eval_k"] == 2 and 0.0 <= adamw["eval_avg"] <= 1.0
    assert adamw["optimizer_state_bytes"] > 0 and by_name["sgd-lr0.01-full-s0"]["optimizer_state_bytes"] == 0
    for cell in report["cells"]:  # the Trainer's optimizer holds exactly the state rlvr_cli.memory computes
        if cell["status"] in ("completed", "diverged"):
            assert cell["optimizer_state_bytes_analytic"] == cell["optimizer_state_bytes"], cell["name"]
            assert cell["memory_analytic_bytes"] >= 4 * cell["total_params"], cell["name"]  # fp32 weights at least
            assert 0 <= cell["changed_frac_tol"] <= cell["changed_frac_exact"] <= 1, cell["name"]


def test_best_lr_matches_the_summaries(sweep):
    sweep_dir, _ = sweep
    final = {name: _summary(sweep_dir, name)["reward_mean_last_quarter"]
             for name in ("sgd-lr0.01-full-s0", "sgd-lr0.01-full-s1", "sgd-lr0.1-full-s0", "adamw-lr1e-05-full-s0",
                          "sgd-lr0.01-lora-r2-s0", "adam-lr0.001-full-huge")}
    assert all(v is not None for v in final.values())
    sgd = {0.01: [final["sgd-lr0.01-full-s0"], final["sgd-lr0.01-full-s1"]], 0.1: [final["sgd-lr0.1-full-s0"]]}
    means = {lr: statistics.fmean(v) for lr, v in sgd.items()}
    best_sgd = 0.01 if means[0.01] >= means[0.1] else 0.1

    best = {(b["optimizer"], b["adapter"], b["r"]): b for b in build_report(sweep_dir)["best_lr"]}
    assert list(best) == [("sgd", "full", None), ("adamw", "full", None), ("sgd", "lora", 2),
                          ("adam", "full", None)]
    b = best[("sgd", "full", None)]
    assert b["lr"] == best_sgd and b["mean"] == pytest.approx(means[best_sgd])
    assert [s["lr"] for s in b["lrs"]] == [0.01, 0.1]  # the pending lr 1 and the failed seed of 0.1 do not count
    assert [s["n"] for s in b["lrs"]] == [2, 1]
    assert b["lrs"][0]["std"] == pytest.approx(statistics.stdev(sgd[0.01]))
    assert b["lrs"][1]["std"] == 0.0
    assert best[("adamw", "full", None)]["mean"] == pytest.approx(final["adamw-lr1e-05-full-s0"])
    assert best[("sgd", "lora", 2)]["lr"] == 0.01
    adam = best[("adam", "full", None)]  # a diverged cell with a reward counts, and is flagged
    assert adam["mean"] == pytest.approx(final["adam-lr0.001-full-huge"]) and adam["n_diverged"] == 1


def test_csv_and_json_files(sweep):
    sweep_dir, _ = sweep
    report = build_report(sweep_dir)
    assert json.loads((sweep_dir / "report.json").read_text()) == report
    with open(sweep_dir / "report.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["name"] for r in rows] == [c["name"] for c in report["cells"]]
    expected = ["name", "optimizer", "lr", "adapter", "r", "seed", "grpo.scale_rewards", "status", "final_reward",
                "first_reward", "frac_reward_zero_std", "zero_grad_steps", "global_step", "eval_avg", "eval_k",
                "optimizer_state_bytes", "optimizer_state_bytes_analytic",
                "trainable_params", "total_params", "wall_time_s", "peak_memory_bytes", "memory_analytic_bytes",
                "sparsity_tolerance", "changed_frac_exact", "changed_frac_tol", "changed_frac_bf16_exact",
                "changed_frac_bf16_tol", "reason", "run_dir"]
    assert list(rows[0]) == expected
    for row in rows:
        if row["status"] == "pending":
            assert row["final_reward"] == "" and row["wall_time_s"] == ""
            continue
        summary = _summary(sweep_dir, row["name"])
        assert row["status"] == summary["status"]
        assert row["trainable_params"] == ("" if summary["trainable_params"] is None
                                           else str(summary["trainable_params"]))
        if summary["reward_mean_last_quarter"] is None:
            assert row["final_reward"] == ""
        else:
            assert float(row["final_reward"]) == pytest.approx(summary["reward_mean_last_quarter"])
        assert float(row["wall_time_s"]) == pytest.approx(summary["wall_time_s"])
        for key in ("optimizer_state_bytes_analytic", "memory_analytic_bytes"):  # "" where train did not write it
            assert row[key] == ("" if summary.get(key) is None else str(summary[key])), key
        sparsity = summary.get("update_sparsity") or {}
        for key in CHANGED:
            assert row[key] == ("" if sparsity.get(key) is None else str(sparsity[key])), key
    assert rows[0]["r"] == "" and rows[4]["r"] == "2" and float(rows[1]["lr"]) == 0.01


def test_plots_are_pngs(sweep):
    sweep_dir, text = sweep
    for name in ("reward_vs_lr.png", "reward_curves.png", "reward_vs_rank.png"):
        data = (sweep_dir / "plots" / name).read_bytes()
        assert data[:8] == PNG_MAGIC and len(data) > 10_000, name
        assert f"plot: {sweep_dir / 'plots' / name}" in text


def test_printed_tables(sweep):
    sweep_dir, text = sweep
    lines = text.splitlines()

    def line_of(name: str) -> str:
        return next(line for line in lines if f" {name} " in line)

    assert "sweep report-test: 8 cells (5 completed, 1 diverged, 1 failed, 1 pending)" in text
    assert "eval avg@2" in text and "final reward" in text and "wall time (s)" in text
    assert "changed > 1e-05" in text and "as stored / after a bf16 cast" in " ".join(text.split())
    assert "0 B / 0 B" in line_of("sgd-lr0.01-full-s0") and "%" in line_of("adamw-lr1e-05-full-s0")
    assert "diverged" in line_of("adam-lr0.001-full-huge") and "failed" in line_of("sgd-lr0.1-full-s1")
    assert "pending" in line_of("sgd-lr1-full-s0")
    assert "0 B" in line_of("sgd-lr0.01-full-s0") and " MB" in line_of("adamw-lr1e-05-full-s0")
    reward = _summary(sweep_dir, "sgd-lr0.1-full-s0")["reward_mean_last_quarter"]
    assert f"{reward:.3f}" in line_of("sgd-lr0.1-full-s0")
    assert "e+37" in line_of("adam-lr0.001-full-huge")  # a diverged reward, not 40 digits
    assert "diverged adam-lr0.001-full-huge: grad_norm=inf at step 1" in text
    assert "failed sgd-lr0.1-full-s1: " in text
    assert "best learning rate per optimizer and adapter" in text
    assert f"report: {sweep_dir / 'report.csv'}" in text


def test_report_command_prints_to_stdout(sweep, capsys):
    sweep_dir, _ = sweep
    report_command(sweep_dir)
    out = capsys.readouterr().out
    assert "sgd-lr0.01-full-s0" in out and "report.json" in out


@pytest.mark.parametrize("manifest, match", [
    (None, "is not a sweep directory: it has no manifest.json"),
    ("{not json", "manifest.json does not parse"),
    ('{"name": "x", "cells": [{"name": "a", "run_dir": "ru', "manifest.json does not parse: Unterminated string"),
    ('{"name": "x"}', "manifest.json does not parse: expected an object with a list of cells"),
    ('{"cells": [{"name": "a"}]}', r"cells\[0\] needs a string name and run_dir"),
])
def test_bad_input_is_one_line(tmp_path, manifest, match):
    if manifest is not None:
        (tmp_path / "manifest.json").write_text(manifest)
    with pytest.raises(BadInput, match=match) as e:
        report_command(tmp_path)
    assert "\n" not in str(e.value)
    assert not (tmp_path / "report.json").exists()


def test_missing_directory(tmp_path):
    with pytest.raises(BadInput, match="sweep directory not found"):
        build_report(tmp_path / "nope")


def test_eval_avg_and_bytes():
    assert eval_avg({"eval": {"gsm8k": {"avg@8": 0.5}, "overall": {"avg@8": 0.25, "pass@1": 0.25}}}) == (8, 0.25)
    assert eval_avg({}) == (None, None) and eval_avg({"eval": None}) == (None, None)
    assert [human_bytes(n) for n in (None, 0, 512, 1536, 3 * 1024**3)] == ["-", "0 B", "512 B", "1.54 kB", "3.22 GB"]
    assert [percent(x) for x in (None, 0.0, 0.2, 0.0025, 1.2e-5, 1.0)] == ["-", "0%", "20.0%", "0.25%", "0.0012%",
                                                                          "100.0%"]


def test_memory_and_sparsity_columns_and_older_summaries(tmp_path):
    """A sweep whose cells were written by different rlvr versions: one summary with the analytic memory and
    update-sparsity fields, one from before them. Both report; the missing figures are `-` / empty / null."""
    new = {"status": "completed", "optimizer": "adamw", "lr": 1e-5, "adapter": "full", "seed": 0,
           "reward_mean_last_quarter": 0.5, "optimizer_state_bytes": 25_758_288,
           "optimizer_state_bytes_analytic": 25_758_288, "peak_memory_bytes": 3 * 1024**3,
           "memory_analytic_bytes": 51_517_504, "wall_time_s": 1.5,
           "update_sparsity": {"step": 2, "tolerance": 1e-5, "n_params": 3_219_776, "changed_frac_exact": 0.5,
                               "changed_frac_tol": 0.2, "changed_frac_bf16_exact": 0.01,
                               "changed_frac_bf16_tol": 0.0002}}
    old = {"status": "completed", "optimizer": "sgd", "lr": 0.01, "adapter": "full", "seed": 0,
           "reward_mean_last_quarter": 0.25, "optimizer_state_bytes": 0, "peak_memory_bytes": 2 * 1024**3,
           "wall_time_s": 1.0}
    cells = []
    for name, summary in (("new", new), ("old", old)):
        (tmp_path / "runs" / name).mkdir(parents=True)
        (tmp_path / "runs" / name / "summary.json").write_text(json.dumps(summary))
        cells.append({"name": name, "run_dir": f"runs/{name}", "axes": {}})
    (tmp_path / "manifest.json").write_text(json.dumps({"name": "versions", "cells": cells}))
    console = Console(record=True, width=250, color_system=None)
    report_command(tmp_path, console=console)
    lines = console.export_text().splitlines()
    assert any("changed > 1e-05" in line for line in lines)
    new_line = next(line for line in lines if " new " in line)
    assert "25.8 MB / 25.8 MB" in new_line and "3.22 GB / 51.5 MB" in new_line and "20.0% / 0.02%" in new_line
    old_line = next(line for line in lines if " old " in line)
    assert "0 B / -" in old_line and "2.15 GB / -" in old_line and " - " in old_line
    rows = {r["name"]: r for r in json.loads((tmp_path / "report.json").read_text())["cells"]}
    assert rows["new"]["changed_frac_tol"] == 0.2 and rows["new"]["changed_frac_bf16_exact"] == 0.01
    assert rows["new"]["sparsity_tolerance"] == 1e-5 and rows["new"]["memory_analytic_bytes"] == 51_517_504
    assert all(rows["old"][k] is None for k in (*CHANGED, "sparsity_tolerance", "optimizer_state_bytes_analytic",
                                                "memory_analytic_bytes"))
    with open(tmp_path / "report.csv", newline="") as f:
        csv_rows = {r["name"]: r for r in csv.DictReader(f)}
    assert csv_rows["new"]["changed_frac_tol"] == "0.2" and csv_rows["old"]["changed_frac_tol"] == ""


def test_a_sweep_with_nothing_run_yet_skips_every_plot(tmp_path):
    cells = [{"name": "sgd", "run_dir": "runs/sgd", "overrides": ["optimizer=sgd"], "axes": {"optimizer": "sgd"}}]
    (tmp_path / "manifest.json").write_text(json.dumps({"name": "fresh", "cells": cells}))
    console = Console(record=True, width=200, color_system=None)
    report_command(tmp_path, console=console)
    text = console.export_text()
    assert "1 pending" in text and "no cell has a final reward yet" in text
    for name in ("reward_vs_lr.png", "reward_curves.png", "reward_vs_rank.png"):
        assert f"plot {name} skipped: " in text and not (tmp_path / "plots" / name).exists()
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["best_lr"] == [] and report["cells"][0]["status"] == "pending"
    assert report["cells"][0]["lr"] is None and report["cells"][0]["optimizer"] == "sgd"


def test_seed_noise_confidence_intervals_and_welch_tests(sweep, tmp_path):
    """Issue 25, item 6: a mean over seeds gets its 95% confidence interval (Student's t), and two settings at their
    best learning rates are compared by Welch's t-test. The sweep's own runs are regrouped by a second manifest into
    two settings of two seeds each, so that both sides have a spread; the figures are checked against scipy."""
    from scipy import stats

    from rlvr_cli.sweeps.significance import ci95, welch

    # independent checks: a t table (t(0.975, 2) = 4.303) and Wikipedia's Welch's t-test example 1 (p = 0.021)
    assert ci95([1.0, 2.0, 3.0]) == pytest.approx(4.303 / 3 ** 0.5, rel=1e-3) and ci95([1.0]) is None
    a1 = [27.5, 21.0, 19.0, 23.6, 17.0, 17.9, 16.9, 20.1, 21.9, 22.6, 23.1, 19.6, 19.0, 21.7, 21.4]
    a2 = [27.1, 22.0, 20.8, 23.4, 23.4, 23.5, 25.8, 22.0, 24.8, 20.2, 21.9, 22.1, 22.9, 20.5, 24.4]
    assert welch(a1, a2) == pytest.approx(0.021, abs=5e-4) and welch([1.0], a2) is None

    sweep_dir, text = sweep
    report = build_report(sweep_dir)
    sgd = next(b for b in report["best_lr"] if (b["optimizer"], b["adapter"]) == ("sgd", "full"))
    finals = [_summary(sweep_dir, f"sgd-lr0.01-full-s{s}")["reward_mean_last_quarter"] for s in (0, 1)]
    if sgd["lr"] == 0.01:
        assert sgd["ci95"] == pytest.approx(stats.t.ppf(0.975, 1) * statistics.stdev(finals) / 2 ** 0.5)
    assert "95% CI" in text

    runs = {"sgd": ["sgd-lr0.01-full-s0", "sgd-lr0.01-full-s1"],
            "adamw": ["sgd-lr0.1-full-s0", "adamw-lr1e-05-full-s0"]}
    cells = [{"name": f"{opt}-{i}", "run_dir": str(sweep_dir / "runs" / run), "overrides": [],
              "axes": {"optimizer": opt, "lr": 0.01, "adapter": "full", "r": None, "seed": i}}
             for opt, names in runs.items() for i, run in enumerate(names)]
    regrouped = tmp_path / "regrouped"
    regrouped.mkdir()
    (regrouped / "manifest.json").write_text(json.dumps({"name": "regrouped", "cells": cells}))
    console = Console(record=True, width=250, color_system=None)
    report = report_command(regrouped, console=console)
    [pair] = report["comparisons"]["final_reward"]
    values = {opt: [_summary(sweep_dir, run)["reward_mean_last_quarter"] for run in names]
              for opt, names in runs.items()}
    with warnings.catch_warnings():  # scipy's precision-loss warning for nearly equal values
        warnings.simplefilter("ignore", RuntimeWarning)
        expected = stats.ttest_ind(values["sgd"], values["adamw"], equal_var=False).pvalue
    assert (pair["a"], pair["b"]) == ("sgd full lr 0.01", "adamw full lr 0.01")
    assert pair["p_value"] == pytest.approx(expected) and pair["significant"] == (expected < 0.05)
    assert pair["difference"] == pytest.approx(statistics.fmean(values["sgd"]) - statistics.fmean(values["adamw"]))
    assert "beyond seed noise? (Welch's t-test" in console.export_text()
    rows = {row["optimizer"]: row for row in report["by_adapter"]}
    assert rows["sgd"]["ci95"] == pytest.approx(ci95(values["sgd"])) and rows["sgd"]["finals"] == values["sgd"]


def _pending_sweep(root: Path, axes: dict | None = None, name: str = "sgd-lr0.1-full-s0") -> Path:
    """A sweep directory of one pending cell, its manifest written as `rlvr sweep` would (JSON escapes and all)."""
    sweep_dir = root / "sweep"
    sweep_dir.mkdir()
    cell = {"name": name, "run_dir": f"runs/{name}", "overrides": ["optimizer=sgd"],
            "axes": {"optimizer": "sgd", "lr": 0.1, "adapter": "full", "r": None, "seed": 0, **(axes or {})}}
    (sweep_dir / "manifest.json").write_text(json.dumps({"name": "t", "cells": [cell]}))
    return sweep_dir


@pytest.mark.parametrize("as_json", [False, True])
@pytest.mark.parametrize("case, message", [
    ("surrogate", "manifest.json does not parse: cells[0]: 'bad-\\udcff-name' is not valid UTF-8 (a lone surrogate); "
                  "rename it"),
    ("nan_axis", "manifest.json does not parse: cells[0].axes.lr is nan; a sweep's axis values are finite numbers "
                 "(rlvr sweep refuses nan and inf): fix or remove the cell"),
])
def test_a_manifest_that_cannot_be_reported_is_one_line(tmp_path, case, message, as_json):
    """Issue 29, item 3: a cell name that is no valid UTF-8 and a NaN axis ended in tracebacks."""
    from typer.testing import CliRunner

    from rlvr_cli.cli.main import app

    sweep_dir = _pending_sweep(tmp_path, name="bad-\udcff-name") if case == "surrogate" else \
        _pending_sweep(tmp_path, axes={"lr": float("nan")})
    r = CliRunner().invoke(app, ["report", str(sweep_dir), *(["--json"] if as_json else [])])
    assert r.exit_code == 2
    assert r.stderr.strip() == f"error: {sweep_dir / message}" and r.stdout == ""
    assert sorted(p.name for p in sweep_dir.iterdir()) == ["manifest.json"]  # nothing written


@pytest.mark.parametrize("as_json", [False, True])
def test_a_sweep_directory_that_cannot_be_written_is_one_line_exit_1(tmp_path, as_json):
    """Issue 29, item 3: a read-only sweep directory (a read-only tmpfs for root, whom permissions do not stop;
    mode 0555 for anyone else)."""
    import os
    import subprocess

    from typer.testing import CliRunner

    from rlvr_cli.cli.main import app

    mount = tmp_path / "ro"
    mount.mkdir()
    root = os.geteuid() == 0
    if root and subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)],
                               capture_output=True).returncode:
        pytest.skip("root without the right to mount a tmpfs here")
    try:
        sweep_dir = _pending_sweep(mount)
        if root:
            subprocess.run(["mount", "-o", "remount,ro", str(mount)], check=True)
        else:
            sweep_dir.chmod(0o555)
        r = CliRunner().invoke(app, ["report", str(sweep_dir), *(["--json"] if as_json else [])])
        assert r.exit_code == 1, r.output
        [line] = r.stderr.strip().splitlines()
        assert line.startswith(f"error: cannot write the report into {sweep_dir}: ")
        assert ("nothing was printed" if as_json else "the tables above are complete") in line
        assert "Traceback" not in r.output
    finally:
        if root:
            subprocess.run(["umount", str(mount)], check=False)
        else:
            (mount / "sweep").chmod(0o755)
