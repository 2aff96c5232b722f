"""Run directories are created exclusively: two `rlvr train` processes on one run name give one run and one clean
refusal; default names never collide; an output_dir that is a file or not writable fails in one line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import TINY
from omegaconf import OmegaConf
from typer.testing import CliRunner

from rlvr_cli.cli.main import app
from rlvr_cli.core import run_dir
from rlvr_cli.core.compose import compose_run
from rlvr_cli.core.errors import BadInput

runner = CliRunner()


def _train(*overrides: str) -> subprocess.Popen:
    """`rlvr train` on tiny-random in its own process."""
    return subprocess.Popen([sys.executable, "-m", "rlvr_cli.cli", "train", *TINY, *overrides],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "COLUMNS": "200"})


def _error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.strip()]


def test_two_runs_on_one_run_name_give_one_run_and_one_refusal(tmp_path):
    procs = [_train(f"output_dir={tmp_path}", "run_name=same") for _ in range(2)]
    results = [(p.wait(timeout=300), *p.communicate()) for p in procs]
    codes = sorted(code for code, _, _ in results)
    assert codes == [0, 2], results
    _, _, refused = next(r for r in results if r[0] == 2)
    lines = _error_lines(refused)
    assert len(lines) == 1 and lines[0].startswith("error: run directory ") and "already exists" in lines[0], refused
    run = tmp_path / "same"
    assert json.loads((run / "summary.json").read_text())["status"] == "completed"
    assert [r["step"] for r in run_dir.read_metrics(run / "metrics.jsonl")] == [1, 2]  # one run's steps only
    assert sorted(p.name for p in tmp_path.iterdir()) == ["same"]


@pytest.mark.slow  # ~14 s; the same-run-name race below stays in make test
def test_default_named_runs_started_together_both_succeed(tmp_path):
    procs = [_train(f"output_dir={tmp_path}") for _ in range(2)]
    results = [(p.wait(timeout=300), *p.communicate()) for p in procs]
    assert [code for code, _, _ in results] == [0, 0], results
    runs = sorted(tmp_path.iterdir())
    assert len(runs) == 2
    for run in runs:
        assert json.loads((run / "summary.json").read_text())["status"] == "completed"
        prefix, suffix = run.name.rsplit("-", 1)
        assert prefix.endswith("-sgd-lr0.01-full-s0") and len(suffix) == 6, run.name  # readable, then unique


def test_default_names_differ_within_one_second():
    cfg = compose_run(TINY)
    names = {run_dir.default_run_name(cfg) for _ in range(50)}
    assert len(names) == 50


@pytest.mark.parametrize("where", ["file", "under_file", "proc", "proc_sys"])
def test_an_output_dir_that_cannot_hold_runs_is_one_line_before_anything(tmp_path, where):
    blocker = tmp_path / "blocker"
    blocker.write_text("a file in the way")
    out = {"file": blocker, "under_file": blocker / "runs",
           "proc": Path("/proc/rlvr-test-out/runs"),  # os.access says yes to root here; the probe says no
           "proc_sys": Path("/proc/sys/rlvr-test-out")}[where]
    if where.startswith("proc") and not Path("/proc/sys").is_dir():
        pytest.skip("no /proc")
    before = sorted(tmp_path.iterdir())
    r = runner.invoke(app, ["train", *TINY, f"output_dir={out}", "run_name=run"])
    assert r.exit_code == 2, r.output
    assert r.stderr.startswith("error: output_dir ") and r.stderr.count("\n") == 1, r.stderr
    assert ("not a directory" if where in ("file", "under_file") else "not writable") in r.stderr
    assert sorted(tmp_path.iterdir()) == before and blocker.read_text() == "a file in the way"


def test_a_read_only_directory_is_not_writable(tmp_path):
    """chmod 555: refused by os.access, or (as root, where the mode does not stop writes) accepted by the probe
    because the directory really is writable."""
    out = tmp_path / "ro"
    out.mkdir()
    out.chmod(0o555)
    try:
        if os.access(out, os.W_OK):
            run_dir.check_output_dir(out / "runs")  # root: writable indeed
            assert list(out.iterdir()) == []  # the probe left nothing
        else:
            with pytest.raises(BadInput, match="is not writable"):
                run_dir.check_output_dir(out / "runs")
    finally:
        out.chmod(0o755)


def test_create_is_exclusive_whatever_the_directory_holds(tmp_path):
    cfg = OmegaConf.create({"x": 1})
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(BadInput, match="already exists"):
        run_dir.create(empty, cfg, [])
    assert list(empty.iterdir()) == []
    run = run_dir.create(tmp_path / "a" / "b" / "new", cfg, ["x=1"])  # parents created
    assert (run.path / "config.yaml").is_file() and run.metrics.read_text() == ""
    with pytest.raises(BadInput, match="already exists"):
        run_dir.create(run.path, cfg, [])
