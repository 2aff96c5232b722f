"""The last line of defence (rlvr_cli/cli/crash.py, issue 26 item 4): an exception no command expected is one
line and exit code 1 on a real `rlvr` process, its traceback in a file; a Ctrl-C nothing handled is exit 130 and no
traceback."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from conftest import REPO

#: A real `rlvr` process (`rlvr_cli.cli.main.run`) with one more command, `boom`, that fails unexpectedly, and one,
#: `wait`, that sleeps until it is interrupted.
PROGRAM = """
import sys, time
from rlvr_cli.cli import main
from rlvr_cli.cli.crash import keep_tracebacks_in

@main.app.command()
def boom(where: str = ""):
    if where:
        keep_tracebacks_in(where)
    {}["missing key of a dict"]

@main.app.command()
def wait():
    print("waiting", flush=True)
    time.sleep(60)

main.run(sys.argv[1:])
"""


def rlvr(*args: str, cache: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "RLVR_CACHE": cache}
    return subprocess.run([sys.executable, "-c", PROGRAM, *args], capture_output=True, text=True, cwd=REPO, env=env,
                          timeout=120)


def test_an_unexpected_exception_is_one_line_and_its_traceback_a_file(tmp_path):
    proc = rlvr("boom", cache=str(tmp_path / "cache"))
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: KeyError: 'missing key of a dict' (traceback: "), proc.stderr
    (path,) = (tmp_path / "cache" / "tracebacks").iterdir()
    assert lines[0].endswith(f"{path})")
    text = path.read_text()
    assert "Traceback (most recent call last)" in text and 'in boom' in text and "command: " in text


def test_the_traceback_goes_into_the_commands_directory(tmp_path):
    sweep_dir = tmp_path / "sweep"
    sweep_dir.mkdir()
    proc = rlvr("boom", "--where", str(sweep_dir), cache=str(tmp_path / "cache"))
    assert proc.returncode == 1
    (path,) = sweep_dir.glob("traceback-*.txt")
    assert f"(traceback: {path})" in proc.stderr
    assert not (tmp_path / "cache").exists()


def test_a_traceback_that_cannot_be_written_is_printed_not_lost(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("a file where the cache directory would be")
    proc = rlvr("boom", cache=str(blocker))
    assert proc.returncode == 1
    first, *rest = proc.stderr.strip().splitlines()
    assert first == ("error: KeyError: 'missing key of a dict' (the traceback could not be written to a file; it "
                     "follows)")
    assert rest[0] == "Traceback (most recent call last):" and "KeyError" in rest[-1]


def _sigint_as_in_a_terminal() -> None:
    """SIGINT's default disposition in the child, as a shell gives it: a pytest-xdist worker ignores SIGINT (its
    controller takes Ctrl-C), and a child inherits an ignored signal, so Python would not raise KeyboardInterrupt."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_a_ctrl_c_nothing_handled_is_one_line_and_exit_130(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", PROGRAM, "wait"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, cwd=REPO, preexec_fn=_sigint_as_in_a_terminal)
    assert proc.stdout.readline().strip() == "waiting"
    time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert "Traceback" not in err and len(err.strip().splitlines()) <= 1, err
