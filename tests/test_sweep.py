"""`rlvr sweep`: cell expansion, bad sweep files, dry runs, and real sweeps through Hydra's launchers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from rlvr_cli.cli.main import app
from rlvr_cli.sweeps.grid import expand, log_grid
from rlvr_cli.sweeps.launch import status
from rlvr_cli.sweeps.manifest import read_manifest

REPO = Path(__file__).resolve().parents[1]
SMOKE = REPO / "sweeps" / "smoke.yaml"
runner = CliRunner()


def test_cells_are_the_product_of_the_axes_with_per_optimizer_grids():
    cells = expand({"name": "t", "base": ["grpo.max_steps=3"], "axes": {
        "optimizer": {"sgd": {"lr": {"min": 0.001, "max": 0.1, "per_decade": 1}}, "adamw": {"lr": [1e-6]}},
        "adapter": {"full": {}, "lora": {"r": [1, 8]}},
        "seed": [0, 1],
        "overrides": {"grpo.beta": [0.0, 0.04]},
    }})
    assert len(cells) == (3 + 1) * (1 + 2) * 2 * 2
    assert sorted({(c.axes["optimizer"], c.axes["lr"]) for c in cells}) == [
        ("adamw", 1e-6), ("sgd", 0.001), ("sgd", 0.01), ("sgd", 0.1)]
    first = cells[0]
    assert first.name == "sgd-lr0.001_full_beta0_s0"
    assert first.overrides[:4] == ["grpo.max_steps=3", "optimizer=sgd", "optimizer.lr=0.001", "adapter=full"]
    assert "++logger.group=t" in first.overrides
    lora = next(c for c in cells if c.axes.get("r") == 8)
    assert "adapter.r=8" in lora.overrides and lora.name.startswith("sgd-lr0.001_lora-r8_")
    assert len({c.name for c in cells}) == len(cells)


def test_log_grid_spans_decades():
    assert log_grid(1e-6, 1e-1, 1) == [1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1]
    assert log_grid(0.01, 0.1, 2) == [0.01, 0.0316, 0.1]


@pytest.mark.parametrize("text,message", [
    ("name: x\naxes: {optimiser: {sgd: {lr: [0.1]}}}\n", "bad.yaml: axes.optimiser: unknown axis; valid axes: "
                                                         "optimizer, adapter, seed, overrides"),
    ("name: x\naxes: {optimizer: {sgdd: {lr: [0.1]}}}\n", "bad.yaml: axes.optimizer.sgdd: unknown optimizer 'sgdd'"),
    ("name: x\naxes: {optimizer: {sgd: {lr: []}}}\n", "bad.yaml: axes.optimizer.sgd.lr: empty learning-rate grid"),
    ("name: x\naxes: {optimizer: {sgd: {lr: [0.1, 0]}}}\n",
     "bad.yaml: axes.optimizer.sgd.lr must be a finite number > 0, got 0"),
    ("name: x\naxes: {optimizer: {sgd: {lr: {min: -1, max: 1, per_decade: 1}}}}\n", "a log grid needs 0 < min"),
    ("name: x\naxes: {adapter: {lora: {r: [0]}}}\n",
     "bad.yaml: axes.adapter.lora.r (adapter rank) must be an integer >= 1"),
    ("name: x\nbase: [optimizer.lrr=1]\n", "cell base: unknown key 'optimizer.lrr'"),
    ("name: x\naxes: {optimizer: {sgd: {lr: [0.1]}\n", "bad.yaml: not a valid sweep file"),
    ("nam: x\n", "bad.yaml: nam: unknown key; valid keys: name, base, axes"),
])
def test_bad_sweep_files_fail_in_one_line_before_any_run(text, message, tmp_path):
    (tmp_path / "bad.yaml").write_text(text)
    r = runner.invoke(app, ["sweep", str(tmp_path / "bad.yaml"), "--output-dir", str(tmp_path / "out")])
    assert r.exit_code == 2, r.output
    assert r.stderr.startswith("error: ") and message in r.stderr and r.stderr.count("\n") == 1
    assert not (tmp_path / "out").exists()


def test_dry_run_prints_the_cells_and_runs_nothing(tmp_path):
    r = runner.invoke(app, ["sweep", str(SMOKE), "--dry-run", "--output-dir", str(tmp_path / "out")])
    assert r.exit_code == 0, r.output
    for name in ("sgd-lr0.01_s0", "sgd-lr0.1_s0", "adamw-lr1e-05_s0", "adamw-lr0.0001_s0"):
        assert name in r.stdout
    assert "4 cells (dry run)" in r.stdout and not (tmp_path / "out").exists()


def _sweep(*args: str, sweep: Path = SMOKE, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "rlvr_cli.cli", "sweep", str(sweep), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
                            env={**os.environ, "COLUMNS": "200"}, **kw)


def _statuses(sweep_dir: Path) -> dict[str, str]:
    cells = read_manifest(sweep_dir)["cells"]
    return {c["name"]: status(sweep_dir, c) for c in cells}


def test_killed_sweep_resumes_only_what_is_left_with_either_launcher(tmp_path):
    """Kill a basic-launcher sweep after its first cell; --resume through submitit_local runs only the rest. Two
    cells of sweeps/smoke.yaml's four (each cell is a process of about 10 s)."""
    smoke = yaml.safe_load(SMOKE.read_text())
    smoke["axes"]["optimizer"] = {"sgd": {"lr": [0.01, 0.1]}}
    sweep = tmp_path / "smoke2.yaml"
    sweep.write_text(yaml.safe_dump(smoke))
    out = tmp_path / "smoke"
    proc = _sweep("--output-dir", str(out), sweep=sweep)
    first = out / "runs" / "sgd-lr0.01_s0" / "summary.json"
    deadline = time.time() + 240
    while time.time() < deadline and not (first.is_file() and json.loads(first.read_text())["status"] == "completed"):
        assert proc.poll() is None, proc.stdout.read()
        time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGKILL)  # the whole sweep, the running cell included
    proc.wait()
    kept = first.read_text()
    before = _statuses(out)
    assert before["sgd-lr0.01_s0"] == "completed" and list(before.values()).count("completed") < 2

    resumed = _sweep("--output-dir", str(out), "--resume", "--launcher", "submitit_local", "--max-parallel", "2",
                     sweep=sweep)
    log, _ = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, log
    assert set(_statuses(out).values()) == {"completed"}
    assert first.read_text() == kept  # the finished cell was not run again
    assert "kept: completed" in log and "ran now: completed" in log
    assert (out / ".hydra").is_dir() and (out / "sweep.yaml").is_file()
    # the interrupted cell's partial run directory was moved aside, not deleted
    unfinished = [n for n, s in before.items() if s != "completed"]
    for attempt in (out / "runs" / ".attempts").glob("*"):
        assert any(attempt.name.startswith(f"{n}-") for n in unfinished), attempt.name

    again = runner.invoke(app, ["sweep", str(sweep), "--output-dir", str(out)])
    assert again.exit_code == 2 and "already holds a sweep; add --resume" in again.stderr


def test_unknown_launcher_lists_the_valid_ones(tmp_path):
    r = runner.invoke(app, ["sweep", str(SMOKE), "--launcher", "pbs", "--output-dir", str(tmp_path / "out")])
    assert r.exit_code == 2
    assert "unknown launcher 'pbs'; valid launchers: basic, submitit_local, submitit_slurm" in r.stderr
    assert not (tmp_path / "out").exists()


def test_slurm_settings_come_from_the_launcher_config_group(tmp_path):
    """`--launcher submitit_slurm` uses conf/hydra/launcher/slurm.yaml; hydra.launcher.* overrides change it."""
    from rlvr_cli.sweeps.launch import multirun_command

    cmd = multirun_command(tmp_path, [0, 2], "submitit_slurm", 8, ["hydra.launcher.partition=gpu"])
    assert "hydra/launcher=slurm" in cmd and "cell=0,2" in cmd and "hydra.launcher.array_parallelism=8" in cmd
    single = [a if not a.startswith("cell=") else "cell=0" for a in cmd[4:]]  # --cfg shows one job, not a sweep
    shown = subprocess.run([*cmd[:3], "--cfg", "hydra", *single], capture_output=True, text=True, check=True).stdout
    launcher = shown.split("\n  launcher:\n", 1)[1]
    for line in ("partition: gpu", "gpus_per_node: 1", "timeout_min: 1440", "array_parallelism: 8",
                 "SlurmLauncher"):
        assert line in launcher, line


def test_local_settings_come_from_the_launcher_config_group(tmp_path):
    """`--launcher submitit_local` uses conf/hydra/launcher/local.yaml (no GPUs from submitit: sweep_job assigns
    them); a `hydra.launcher.*` override changes a setting for one sweep."""
    from rlvr_cli.sweeps.launch import multirun_command

    cmd = multirun_command(tmp_path, [1], "submitit_local", 3, ["hydra.launcher.timeout_min=60"])
    assert "hydra/launcher=local" in cmd and "hydra.sweeper.max_batch_size=3" in cmd
    shown = subprocess.run([*cmd[:3], "--cfg", "hydra", *cmd[4:]], capture_output=True, text=True, check=True).stdout
    launcher = shown.split("\n  launcher:\n", 1)[1]
    for line in ("timeout_min: 60", "gpus_per_node: 0", "LocalLauncher"):
        assert line in launcher, line


def test_a_dry_run_reads_the_file_once_and_composes_once_per_group_choice(monkeypatch, tmp_path):
    """One parse and one expansion of the sweep file, from the command line to the manifest's cells; Hydra's
    defaults list once per distinct set of config-group choices (smoke: sgd, adamw), never `compose` per cell."""
    import hydra
    import hydra._internal.defaults_list as defaults_list

    from rlvr_cli.core import compose as config
    from rlvr_cli.sweeps import grid, launch

    calls: dict[str, int] = {}

    def counted(name, fn):
        def wrapper(*args, **kwargs):
            calls[name] = calls.get(name, 0) + 1
            return fn(*args, **kwargs)
        return wrapper

    monkeypatch.setattr(launch, "load_sweep", counted("load_sweep", launch.load_sweep))
    monkeypatch.setattr(grid, "expand", counted("expand", grid.expand))
    monkeypatch.setattr(hydra, "compose", counted("hydra compose", hydra.compose))
    monkeypatch.setattr(defaults_list, "create_defaults_list", counted("defaults list",
                                                                       defaults_list.create_defaults_list))
    monkeypatch.setattr(config, "compose", counted("compose", config.compose))
    monkeypatch.setattr(launch, "compose", counted("compose", launch.compose))
    r = runner.invoke(app, ["sweep", str(SMOKE), "--dry-run", "--output-dir", str(tmp_path / "out")])
    assert r.exit_code == 0, r.output
    assert calls == {"load_sweep": 1, "expand": 1, "defaults list": 2}


def _nodes(node, path=""):
    """Every node of a config: its path, class, metadata (type, optional, flags) and, for a leaf, its value."""
    from omegaconf import DictConfig, ListConfig

    md = node._metadata
    out = [(path, type(node).__name__, md.ref_type, md.object_type, md.optional, md.flags,
            node._get_flag("struct"), node._get_flag("readonly"))]
    if isinstance(node, DictConfig) and isinstance(node._content, dict):
        for k in node._content:
            out += _nodes(node._get_node(k), f"{path}.{k}")
    elif isinstance(node, ListConfig) and isinstance(node._content, list):
        for i in range(len(node._content)):
            out += _nodes(node._get_node(i), f"{path}[{i}]")
    elif not isinstance(node, (DictConfig, ListConfig)):
        out.append((path, type(node._value()), repr(node._value())))
    return out


def test_check_cells_composes_what_compose_composes():
    """`rlvr_cli.core.compose.Composer` (Hydra's defaults list once per group choice, without Hydra's own tree)
    against `compose`: node for node (values, node types, flags) on shipped sweeps' cells, error for error."""
    from rlvr_cli.core.compose import Composer, compose
    from rlvr_cli.core.errors import BadInput
    from rlvr_cli.sweeps.grid import read_sweep

    lists = [c.overrides for name in ("smoke", "peft_methods", "sgd_vs_adamw")
             for c in read_sweep(REPO / "sweeps" / f"{name}.yaml").cells] + [
        ["optimizer=adamw", "adapter=lora", "adapter.r=4", "+grpo.beta=0.04", "~sparsity", "grpo.max_steps=4"],
        ["adapter=lora", "+adapter.base={a: 1}", "optimizer={lr: 0.5}", "++seed=3", "distributed=zero3"],
        ["optimizer.lrr=1"], ["optimizer=nope"], ["grpo=null"], ["seed=1,2"], ["+seed=3"], ["seed=abc"],
        ["optimizer.weight_decay=0.1"], ["hydra.job.name=x"], ["adapter=lora", "~adapter.alpha"],
    ]

    def result(fn, overrides):
        try:
            return _nodes(fn(overrides))
        except BadInput as e:
            return str(e)

    composer = Composer()
    for overrides in lists:
        assert result(composer, overrides) == result(compose, overrides), overrides
