"""No config value builds what rlvr did not mean to build (rlvr_cli/core/targets.py, issue 26 item 1).

A `_target_` anywhere but `optimizer._target_` and `adapter._target_`, or one there outside the allowed modules, is
refused in one line before anything is built: by the composition (`compose`, a sweep's `Composer`), by `rlvr sweep`
for its file and its `hydra.*` overrides, and the option files rlvr instantiates are built non-recursively."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import pytest
import yaml
from conftest import REPO, TINY
from omegaconf import OmegaConf
from typer.testing import CliRunner

from rlvr_cli.cli.main import app
from rlvr_cli.core.compose import Composer, compose, compose_run
from rlvr_cli.core.errors import BadInput
from rlvr_cli.core.targets import check_hydra_overrides, check_option_file

runner = CliRunner()

#: Targets that would do something on being built, each with arguments that would leave a trace in `{f}`.
HARMFUL = {
    "builtins.open": "file: {f}, mode: w",
    "subprocess.run": "args: [touch, {f}]",
    "os.system": "command: 'touch {f}'",
    "importlib.import_module": "name: antigravity",
    "pickle.load": "file: {{_target_: builtins.open, file: {f}, mode: wb}}",
}
#: Where a user could put one: the top level, every config group and the other top-level blocks.
PLACES = ["", "model.", "data.", "optimizer.", "adapter.", "grpo.", "distributed.", "generation.", "logger.",
          "eval.", "sparsity.", "trial."]


def nested(target: str, args: str, depth: int) -> str:
    """A Hydra override value holding `{_target_: target, args}` `depth` levels down (dicts and a list)."""
    node = f"{{_target_: {target}, {args}}}"
    for level in range(depth - 1):
        node = f"{{inner: {node}}}" if level % 2 == 0 else f"[{node}]"
    return node


CASES = [(place, target, 1 + i % 3) for i, (place, target) in
         enumerate((p, t) for p in PLACES for t in HARMFUL)]


@pytest.mark.parametrize(("place", "target", "depth"), CASES, ids=[f"{p or 'top.'}{t}-depth{d}" for p, t, d in CASES])
def test_a_target_anywhere_is_refused_before_it_is_built(tmp_path, place, target, depth):
    trace = tmp_path / "trace"
    override = f"+{place}x={nested(target, HARMFUL[target].format(f=trace), depth)}"
    groups = ["adapter=lora"] if place == "adapter." else []
    with pytest.raises(BadInput) as e:
        compose([*groups, override])
    msg = str(e.value)
    assert "\n" not in msg and target in msg and f"{place}x" in msg and "_target_" in msg
    with pytest.raises(BadInput) as again:  # a sweep's cells are composed by a Composer: the same refusal
        Composer()([*groups, override])
    assert str(again.value) == msg
    assert not trace.exists()


@pytest.mark.parametrize("override", ["optimizer._target_=builtins.open", "adapter._target_=subprocess.Popen",
                                      "optimizer._target_=torch.optimx.SGD", "optimizer._target_=peftx.Y"])
def test_the_built_nodes_name_only_allowed_modules(override):
    groups = ["adapter=lora"] if override.startswith("adapter") else []
    with pytest.raises(BadInput, match="not under the allowed modules torch.optim, peft"):
        compose([*groups, override])


def test_a_users_own_module_is_allowed_through_the_environment(monkeypatch):
    with pytest.raises(BadInput):
        compose(["optimizer._target_=mylab.optim.Fancy"])
    monkeypatch.setenv("RLVR_ALLOWED_TARGETS", "mylab.optim, otherlab")
    assert compose(["optimizer._target_=mylab.optim.Fancy"]).optimizer._target_ == "mylab.optim.Fancy"


def test_a_refused_train_builds_nothing_and_makes_no_run_directory(tmp_path):
    """On a real process: the reproducer of issue 26 (`builtins.open` truncated the file before PEFT refused x)."""
    trace = tmp_path / "trace"
    trace.write_text("kept")
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-m", "rlvr_cli.cli", "train", *TINY, f"output_dir={out}", "adapter=lora",
         f"+adapter.x={{_target_: builtins.open, file: {trace}, mode: w}}"],
        capture_output=True, text=True, cwd=REPO, timeout=300)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "adapter.x._target_='builtins.open'" in lines[0], proc.stderr
    assert trace.read_text() == "kept"
    assert not out.exists()


SWEEP_FILES = {  # a sweep file carrying a _target_ -> where the refusal names it
    "axes_value": (lambda trace: {"name": "evil", "axes": {"seed": [0], "overrides": {
        "+grpo.x": [{"_target_": "os.system", "command": f"touch {trace}"}]}}},
        "axes.overrides.+grpo.x[0]._target_='os.system'"),
    "base_override": (lambda trace: {"name": "evil", "axes": {"seed": [0]}, "base": [
        f"+data.x={{_target_: builtins.open, file: {trace}, mode: w}}"]},
        "data.x._target_='builtins.open'"),
}


@pytest.mark.parametrize("case", SWEEP_FILES)
def test_a_sweep_file_with_a_target_is_refused_before_its_directory_exists(tmp_path, case):
    make, where = SWEEP_FILES[case]
    trace = tmp_path / "trace"
    sweep = tmp_path / "evil.yaml"
    sweep.write_text(yaml.safe_dump(make(trace)))
    out = tmp_path / "out"
    r = runner.invoke(app, ["sweep", str(sweep), "--output-dir", str(out), *TINY])
    assert r.exit_code == 2, r.output
    assert where in r.output
    assert not out.exists() and not trace.exists()


def test_a_launcher_or_callback_target_comes_from_hydra_or_rlvr(tmp_path):
    trace = tmp_path / "trace"
    for bad in [f"+hydra.callbacks.evil={{_target_: builtins.open, file: {trace}, mode: w}}",
                "hydra.launcher._target_=subprocess.Popen"]:
        with pytest.raises(BadInput, match="not under the modules a launcher or callback may come from"):
            check_hydra_overrides([bad])
    check_hydra_overrides(["+hydra.callbacks.quiet_polling._target_=rlvr_cli.sweeps.slurm.QuietPolling",
                           "hydra.launcher.partition=gpu"])
    sweep = REPO / "sweeps" / "smoke.yaml"
    r = runner.invoke(app, ["sweep", str(sweep), "--output-dir", str(tmp_path / "out"), "--dry-run",
                            f"+hydra.callbacks.evil={{_target_: builtins.open, file: {trace}, mode: w}}"])
    assert r.exit_code == 2 and "hydra.callbacks.evil._target_='builtins.open'" in r.output, r.output
    assert not trace.exists()


def test_option_files_have_one_allowed_top_level_target(tmp_path):
    check_option_file(OmegaConf.load(REPO / "conf" / "reward" / "format.yaml"), ("hydra.utils.get_method",))
    with pytest.raises(BadInput, match=r"path\._target_='builtins.open'"):
        check_option_file({"_target_": "hydra.utils.get_method", "path": {"_target_": "builtins.open"}},
                          ("hydra.utils.get_method",))
    with pytest.raises(BadInput, match="_target_='os.system'"):
        check_option_file({"_target_": "os.system", "command": "true"}, ("rlvr_cli.evaluation.benchmarks",))


def test_an_adapter_is_built_without_its_nested_nodes(tmp_path):
    """Defence in depth: even a config that skipped the composition's check builds no nested node."""
    from rlvr_cli.models.adapters import peft_config

    trace = tmp_path / "trace"
    cfg = compose_run(["adapter=lora"]).adapter
    nested = {"_target_": "builtins.open", "file": str(trace), "mode": "w"}
    cfg = dataclasses.replace(cfg, peft={**cfg.peft, "target_modules": nested})
    try:
        peft_config(cfg)
    except BadInput:
        pass
    assert not trace.exists()
