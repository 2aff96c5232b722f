"""A run records who runs it (host, pid) and a heartbeat; a run killed with SIGKILL (no final status) is `dead`:
`rlvr report` shows it, `rlvr sweep --resume` reruns it, `rlvr eval` refuses it, as it refuses a live one."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import TINY
from typer.testing import CliRunner

from rlvr_cli.cli.main import app
from rlvr_cli.core import run_dir
from rlvr_cli.core.errors import BadInput
from rlvr_cli.sweeps.grid import expand, load_sweep
from rlvr_cli.sweeps.launch import manifest_cells
from rlvr_cli.sweeps.manifest import Manifest, write_manifest
from rlvr_cli.training.callbacks import Heartbeat

runner = CliRunner()
CELL = "sgd-lr0.01_s0"


def one_cell_sweep(tmp_path: Path) -> tuple[Path, Path]:
    """A sweep file of one tiny-random cell (`CELL`, 2 steps) and its sweep directory, written as `rlvr sweep`
    writes it (sweep.yaml, manifest.json), with no run yet."""
    sweep_file = tmp_path / "one.yaml"
    sweep_file.write_text("name: one\nbase: [" + ", ".join(TINY) + "]\naxes:\n  optimizer:\n    sgd: {lr: [0.01]}\n"
                          "  seed: [0]\n")
    sweep_dir = tmp_path / "sweep"
    sweep_dir.mkdir()
    shutil.copyfile(sweep_file, sweep_dir / "sweep.yaml")
    cells = manifest_cells(expand(load_sweep(sweep_file), sweep_file.name), [])
    assert [c["name"] for c in cells] == [CELL]
    write_manifest(sweep_dir, Manifest(name="one", cells=cells))
    return sweep_file, sweep_dir


def wait_for(predicate, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while not predicate():
        assert proc.poll() is None, proc.communicate()
        assert time.time() < deadline, "timed out"
        time.sleep(0.2)


@pytest.mark.slow  # ~25 s of make test's 10 minutes; a dead run's liveness and refusal: the tests below, on real files
def test_a_killed_run_is_dead_reported_rerun_and_not_evaluated(tmp_path):
    sweep_file, sweep_dir = one_cell_sweep(tmp_path)
    overrides = [o.replace("grpo.max_steps=2", "grpo.max_steps=100000") for o in
                 json.loads((sweep_dir / "manifest.json").read_text())["cells"][0]["overrides"]]
    run = sweep_dir / "runs" / CELL
    t0 = time.time()
    proc = subprocess.Popen([sys.executable, "-m", "rlvr_cli.cli", "train", *overrides,
                             f"output_dir={run.parent}", f"run_name={CELL}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: len(run_dir.read_metrics(run / "metrics.jsonl")) >= 1, proc)
        live = run_dir.read_summary(run)
        assert live["status"] == "running" and live["pid"] == proc.pid and live["host"] == socket.gethostname()
        assert t0 <= live["heartbeat"] <= time.time()
        assert run_dir.liveness(live) == run_dir.LIVE and run_dir.run_state(run).status == "running"
        with pytest.raises(BadInput, match=rf"still running \(pid {proc.pid} on {socket.gethostname()}\)"):
            run_dir.check_finished(run, live)
    finally:
        proc.send_signal(signal.SIGKILL)  # no chance to write a final status
        proc.wait()

    dead = run_dir.read_summary(run)
    assert dead["status"] == "running"  # what the file says ...
    assert run_dir.liveness(dead) == run_dir.DEAD  # ... and what it means
    with pytest.raises(BadInput, match="is dead: its process"):
        run_dir.check_finished(run, dead)

    r = runner.invoke(app, ["report", str(sweep_dir), "--json"])
    assert r.exit_code == 0, r.output
    cell = json.loads(r.stdout)["cells"][0]
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(dead["heartbeat"]))
    assert cell["status"] == "dead" and f"pid {dead['pid']}" in cell["reason"] and when in cell["reason"]
    r = runner.invoke(app, ["report", str(sweep_dir)], env={"COLUMNS": "250"})
    assert "dead" in r.stdout and f"last heartbeat {when}" in r.stdout

    resumed = subprocess.run([sys.executable, "-m", "rlvr_cli.cli", "sweep", str(sweep_file), "--output-dir",
                              str(sweep_dir), "--resume"], capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert run_dir.read_summary(run)["status"] == "completed"
    attempts = list((sweep_dir / "runs" / ".attempts").iterdir())
    assert len(attempts) == 1 and attempts[0].name.startswith(f"{CELL}-")
    assert run_dir.read_summary(attempts[0])["pid"] == dead["pid"]  # the dead run, kept


def test_eval_refuses_a_live_and_a_dead_run_in_one_line(tmp_path):
    """`rlvr eval RUN_DIR` on a running run: one line naming its process (here: this very process, alive); on a
    dead one (a process that has ended): one line saying so."""
    from rlvr_cli.core.compose import compose

    run = run_dir.create(tmp_path / "run", compose(TINY), [])
    summary = {"status": run_dir.RUNNING, **run_dir.owner()}
    run_dir.write_summary(run, summary)
    r = runner.invoke(app, ["eval", str(run.path), "--limit", "1"])
    assert r.exit_code == 2 and r.stderr.count("\n") == 1, r.output
    assert f"still running (pid {os.getpid()} on {socket.gethostname()})" in r.stderr
    ended = subprocess.Popen([sys.executable, "-c", "pass"])
    ended.wait()
    run_dir.write_summary(run, {**summary, "pid": ended.pid})
    r = runner.invoke(app, ["eval", str(run.path), "--limit", "1"])
    assert r.exit_code == 2 and r.stderr.count("\n") == 1, r.output
    assert f"is dead: its process (pid {ended.pid} on {socket.gethostname()}, last heartbeat" in r.stderr


def test_liveness_of_summaries_from_another_host_goes_by_the_heartbeat():
    now = time.time()
    other = {"status": "running", "host": "elsewhere.invalid", "pid": 1, "heartbeat": now - 60}
    assert run_dir.liveness(other, now=now) == run_dir.LIVE
    assert run_dir.liveness(other, now=now + run_dir.DEAD_AFTER_S) == run_dir.DEAD
    assert run_dir.liveness({"status": "running"}) == run_dir.DEAD  # no owner recorded: not this version's run
    assert run_dir.liveness({**other, "status": "completed"}) == "completed"
    mine = {"status": "running", **run_dir.owner()}
    assert run_dir.liveness(mine) == run_dir.LIVE
    # a pid that this process's heartbeat predates belongs to another process (pid reuse): dead
    assert run_dir.liveness({**mine, "heartbeat": now - 10 * 86400}) == run_dir.DEAD or not Path("/proc").is_dir()


def test_heartbeat_rewrites_a_running_summary_at_most_every_interval(tmp_path):
    run = run_dir.RunDir(tmp_path)
    summary = {"status": run_dir.RUNNING, **run_dir.owner()}
    beat = Heartbeat(run, summary, interval_s=3600)
    assert beat.beat() and json.loads(run.summary.read_text())["heartbeat"] == summary["heartbeat"]
    assert not beat.beat()  # within the interval
    assert beat.beat(force=True)
    summary["status"] = run_dir.COMPLETED
    run.summary.write_text("{}")
    assert not beat.beat(force=True) and run.summary.read_text() == "{}"  # a final summary is never overwritten
    os.chmod(tmp_path, 0o755)
