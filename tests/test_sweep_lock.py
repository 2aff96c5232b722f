"""One `rlvr sweep` at a time per sweep directory (a file lock naming its holder), and a damaged cell summary that
makes its cell `unknown` instead of blocking `rlvr report` and `rlvr sweep --resume`."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_liveness import CELL, one_cell_sweep, wait_for
from typer.testing import CliRunner

from rlvr_cli.cli.main import app
from rlvr_cli.core import run_dir
from rlvr_cli.sweeps.launch import LOCK_OWNER_FILE, status, sweep_lock
from rlvr_cli.sweeps.manifest import read_manifest

REPO = Path(__file__).resolve().parents[1]
SMOKE = REPO / "sweeps" / "smoke.yaml"
runner = CliRunner()


def _one_line_error(r) -> str:
    assert r.exit_code == 2, r.output
    assert r.stderr.startswith("error: ") and r.stderr.count("\n") == 1, r.stderr
    return r.stderr


@pytest.mark.slow  # ~10 s
def test_a_second_sweep_on_a_running_sweeps_directory_is_refused_naming_the_holder(tmp_path):
    out = tmp_path / "smoke"
    proc = subprocess.Popen([sys.executable, "-m", "rlvr_cli.cli", "sweep", str(SMOKE), "--output-dir", str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_for(lambda: (out / "manifest.json").is_file() and (out / LOCK_OWNER_FILE).is_file(), proc)
        holder = f"pid {proc.pid} on {socket.gethostname()}"
        for extra in ([], ["--resume"]):
            error = _one_line_error(runner.invoke(app, ["sweep", str(SMOKE), "--output-dir", str(out), *extra]))
            assert "is in use by another rlvr sweep" in error and holder in error, error
        r = runner.invoke(app, ["sweep", str(SMOKE), "--output-dir", str(out), "--dry-run"])  # takes no lock
        assert r.exit_code == 0, r.output
        wait_for(lambda: (out / "runs").is_dir() and any((out / "runs").iterdir()), proc)  # a cell has started
    finally:
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C: the running cell ends interrupted, the sweep then ends
        proc.wait(timeout=120)
    assert not (out / LOCK_OWNER_FILE).exists()  # released on Ctrl-C
    statuses = {c["name"]: status(out, c) for c in read_manifest(out)["cells"]}
    assert "running" not in statuses.values() and "dead" not in statuses.values(), statuses  # waited for the cell
    with sweep_lock(out):  # free again
        assert json.loads((out / LOCK_OWNER_FILE).read_text())["pid"] == os.getpid()


@pytest.mark.slow  # ~22 s: a real sweep and its resume
def test_a_corrupted_cell_summary_is_unknown_and_resume_reruns_it(tmp_path):
    sweep_file, sweep_dir = one_cell_sweep(tmp_path)
    (sweep_dir / "manifest.json").unlink()  # a fresh sweep directory: rlvr sweep writes it
    (sweep_dir / "sweep.yaml").unlink()
    sweep_dir.rmdir()
    first = subprocess.run([sys.executable, "-m", "rlvr_cli.cli", "sweep", str(sweep_file), "--output-dir",
                            str(sweep_dir)], capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stdout + first.stderr
    summary = sweep_dir / "runs" / CELL / "summary.json"
    text = summary.read_text()
    summary.write_text(text[: len(text) // 2])  # truncated, as by a full disk

    r = runner.invoke(app, ["report", str(sweep_dir), "--json"])
    assert r.exit_code == 0, r.output
    cell = json.loads(r.stdout)["cells"][0]
    assert cell["status"] == "unknown" and "does not parse" in cell["reason"], cell
    r = runner.invoke(app, ["report", str(sweep_dir)], env={"COLUMNS": "250"})
    assert r.exit_code == 0 and "unknown" in r.stdout, r.output

    resumed = subprocess.run([sys.executable, "-m", "rlvr_cli.cli", "sweep", str(sweep_file), "--output-dir",
                              str(sweep_dir), "--resume"], capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert run_dir.read_summary(sweep_dir / "runs" / CELL)["status"] == "completed"
    attempts = list((sweep_dir / "runs" / ".attempts").iterdir())
    assert len(attempts) == 1 and attempts[0].name.startswith(f"{CELL}-")
    assert (attempts[0] / "summary.json").read_text() == text[: len(text) // 2]  # kept as it was
    assert not (sweep_dir / LOCK_OWNER_FILE).exists()


def test_resume_refuses_a_cell_still_running_outside_any_sweep(tmp_path):
    """A sweep killed alone (SIGKILL to its process only) leaves its lock free but its cell running: --resume
    must not move a live run aside."""
    sweep_file, sweep_dir = one_cell_sweep(tmp_path)
    run = run_dir.create(sweep_dir / "runs" / CELL, __import__("omegaconf").OmegaConf.create({}), [])
    run_dir.write_summary(run, {"status": run_dir.RUNNING, **run_dir.owner()})  # this process: alive
    r = runner.invoke(app, ["sweep", str(sweep_file), "--output-dir", str(sweep_dir), "--resume"])
    error = _one_line_error(r)
    assert f"cell {CELL} of {sweep_dir} is still running (pid {os.getpid()}" in error
    assert run.summary.is_file() and not (sweep_dir / "runs" / ".attempts").exists()
    assert time.time() > 0


@pytest.mark.slow  # ~40 s: a real submitit_local sweep
def test_ctrl_c_of_a_submitit_local_sweep_ends_its_running_cells_and_waits_for_them(tmp_path):
    """Issue 19, item 2: SIGINT to the sweep's process group exited 130 at once, released the lock and left the
    cells running as orphans, with three KeyboardInterrupt tracebacks. Now the running cells end `interrupted`, no
    further cell starts, the sweep waits for them, and says so in one line."""
    from conftest import CHARS, REPO, TINY

    from rlvr_cli.sweeps.launch import cell_processes

    sweep_file = tmp_path / "long.yaml"
    base = [o.replace("grpo.max_steps=2", "grpo.max_steps=500") for o in TINY] + [*CHARS, "sparsity=null"]
    sweep_file.write_text("name: long\nbase: [" + ", ".join(f"'{o}'" for o in base) + "]\naxes:\n  optimizer:\n"
                          "    sgd: {lr: [0.01, 0.02, 0.03]}\n  seed: [0]\n")
    out = tmp_path / "long"
    proc = subprocess.Popen([sys.executable, "-m", "rlvr_cli.cli", "sweep", str(sweep_file), "--output-dir", str(out),
                             "--launcher", "submitit_local", "--max-parallel", "2"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True,
                            env={**os.environ, "PYTHONPATH": str(REPO / "tests")})  # the cells import conftest
    runs = out / "runs"

    def both_train() -> bool:
        found = [m for m in runs.glob("*/metrics.jsonl") if m.read_text().strip()] if runs.is_dir() else []
        return len(found) == 2
    wait_for(both_train, proc, timeout=300)
    os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C in the terminal
    _, err = proc.communicate(timeout=240)
    assert proc.returncode == 130, err[-3000:]
    assert "Traceback" not in err and err.strip().splitlines()[-1].startswith("error: sweep interrupted"), err[-3000:]
    assert cell_processes(out) == []  # no cell left running
    statuses = sorted(status(out, c) for c in read_manifest(out)["cells"])
    assert statuses == ["interrupted", "interrupted", "pending"], statuses  # the third never started
    assert not (out / LOCK_OWNER_FILE).exists()
