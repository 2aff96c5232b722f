"""manifest.json: one writer (atomic), one checking reader, and one-line errors from every command that reads it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from rlvr_cli.cli.main import app
from rlvr_cli.core.errors import BadInput
from rlvr_cli.sweeps.grid import expand, load_sweep, read_sweep
from rlvr_cli.sweeps.job import read_cell
from rlvr_cli.sweeps.launch import manifest_cells, prepare
from rlvr_cli.sweeps.manifest import Manifest, read_manifest, write_manifest

REPO = Path(__file__).resolve().parents[1]
SMOKE = REPO / "sweeps" / "smoke.yaml"
runner = CliRunner()


def _smoke_manifest() -> Manifest:
    """The manifest `rlvr sweep sweeps/smoke.yaml` writes (no config is composed: instant)."""
    return Manifest(name="smoke", cells=manifest_cells(expand(load_sweep(SMOKE), SMOKE.name), []))


def _truncated(sweep_dir: Path) -> Path:
    """A sweep directory whose manifest.json was cut in the middle (a sweep killed while writing it, before
    manifest writes were atomic)."""
    sweep_dir.mkdir(parents=True, exist_ok=True)
    path = write_manifest(sweep_dir, _smoke_manifest())
    text = path.read_text()
    path.write_text(text[: len(text) // 2])
    return path


def test_round_trip_keeps_the_file_format(tmp_path):
    manifest = _smoke_manifest()
    path = write_manifest(tmp_path, manifest)
    assert path == tmp_path / "manifest.json"
    assert path.read_text() == json.dumps(manifest, indent=2) + "\n"
    assert read_manifest(tmp_path) == manifest
    cell = json.loads(path.read_text())["cells"][0]
    assert list(cell) == ["name", "overrides", "axes", "run_dir"]
    assert cell["name"] == "sgd-lr0.01_s0" and cell["run_dir"] == "runs/sgd-lr0.01_s0"
    assert cell["axes"] == {"optimizer": "sgd", "lr": 0.01, "seed": 0} and "optimizer=sgd" in cell["overrides"]
    assert [p.name for p in tmp_path.iterdir()] == ["manifest.json"]  # no temporary file left


def test_rewriting_replaces_the_whole_file(tmp_path):
    write_manifest(tmp_path, _smoke_manifest())
    write_manifest(tmp_path, Manifest(name="small", cells=[]))
    assert read_manifest(tmp_path) == {"name": "small", "cells": []}
    assert [p.name for p in tmp_path.iterdir()] == ["manifest.json"]


def test_prepare_writes_what_read_manifest_reads(tmp_path):
    cells, todo = prepare(read_sweep(SMOKE), tmp_path / "sweep", resume=False)
    assert read_manifest(tmp_path / "sweep") == {"name": "smoke", "cells": cells} and todo == [0, 1, 2, 3]
    assert read_cell(tmp_path / "sweep", 3) == cells[3]
    with pytest.raises(BadInput, match=r"manifest.json has no cell 4 \(it lists 4\)"):
        read_cell(tmp_path / "sweep", 4)


def test_a_hand_written_manifest_gets_the_optional_keys(tmp_path):
    (tmp_path / "manifest.json").write_text('{"cells": [{"name": "a", "run_dir": "runs/a"}]}')
    assert read_manifest(tmp_path) == {
        "name": tmp_path.name, "cells": [{"name": "a", "run_dir": "runs/a", "overrides": [], "axes": {}}]}


@pytest.mark.parametrize("text, match", [
    (None, "truncated"),
    ("", "manifest.json does not parse: Expecting value: line 1 column 1"),
    (b"\xff\xfe{}", "manifest.json does not parse: 'utf-8' codec can't decode"),
    ("[]", "manifest.json does not parse: expected an object with a list of cells"),
    ('{"name": 3, "cells": []}', "manifest.json does not parse: name must be a string"),
    ('{"cells": [{"name": "a", "run_dir": "runs/a", "overrides": "x=1"}]}',
     r"cells\[0\].overrides must be a list of strings"),
    ('{"cells": [{"name": "a", "run_dir": "runs/a", "axes": []}]}', r"cells\[0\].axes must be an object"),
])
def test_a_bad_manifest_is_one_line_naming_the_file(tmp_path, text, match):
    if text is None:
        path = _truncated(tmp_path)
        match = f"{path} does not parse: "
    elif isinstance(text, bytes):
        (path := tmp_path / "manifest.json").write_bytes(text)
    else:
        (path := tmp_path / "manifest.json").write_text(text)
    with pytest.raises(BadInput, match=match) as e:
        read_manifest(tmp_path)
    assert "\n" not in str(e.value) and str(path) in str(e.value)


def test_rlvr_report_on_a_truncated_manifest_exits_2_with_one_line(tmp_path):
    path = _truncated(tmp_path / "sweep")
    r = runner.invoke(app, ["report", str(tmp_path / "sweep")])
    assert r.exit_code == 2, r.output
    assert r.stderr.startswith(f"error: {path} does not parse: ") and r.stderr.count("\n") == 1
    assert not (tmp_path / "sweep" / "report.json").exists()


def test_rlvr_sweep_resume_on_a_truncated_manifest_exits_2_with_one_line(tmp_path):
    sweep_dir = tmp_path / "sweep"
    path = _truncated(sweep_dir)
    r = runner.invoke(app, ["sweep", str(SMOKE), "--output-dir", str(sweep_dir), "--resume"])
    assert r.exit_code == 2, r.output
    assert r.stderr.startswith(f"error: {path} does not parse: ") and r.stderr.count("\n") == 1
    assert sorted(p.name for p in sweep_dir.iterdir()) == ["manifest.json"]  # nothing ran, nothing moved


def test_a_sweep_job_on_a_truncated_manifest_prints_one_line_and_runs_nothing(tmp_path):
    sweep_dir = tmp_path / "sweep"
    path = _truncated(sweep_dir)
    job = subprocess.run([sys.executable, "-m", "rlvr_cli.sweeps.job", f"sweep_dir={sweep_dir}", "cell=0"],
                         capture_output=True, text=True, timeout=120)
    assert job.returncode == 0, job.stderr
    assert job.stderr.startswith(f"error: {path} does not parse: ") and "Traceback" not in job.stderr
    assert not (sweep_dir / "runs").exists()
