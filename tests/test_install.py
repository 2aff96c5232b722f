"""Issue 28, item 1: rlvr installs as a wheel and runs from any directory. The wheel is built from a copy of the
source (setuptools, as `pip install .` and `pip install git+...` build it), installed without rlvr's checkout on the
path (a new virtual environment that sees this one's dependencies but not its editable rlvr), and its `rlvr` runs
`config show` and a 1-step tiny training from a directory outside the checkout. Every imported package is a declared
dependency, and every declared one is used."""

from __future__ import annotations

import ast
import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest
from conftest import REPO

tomllib = pytest.importorskip("tomllib")  # Python 3.11 on (pyproject.toml's reader)

#: What `pyproject.toml` declares that rlvr does not import itself, and who needs it: transformers' Trainer needs
#: accelerate (an extra of transformers, `transformers[torch]`); transformers' GGUF loader needs gguf (the embedded
#: SmolLM2 is a GGUF file) and sentencepiece; Hydra finds the submitit launchers as a plugin
#: (`conf/hydra/launcher/*.yaml`); `optimizer=lion` names `lion_pytorch.Lion` (`conf/optimizer/lion.yaml`).
USED_BY_OTHERS = {"accelerate": "transformers' Trainer", "gguf": "transformers' GGUF loader",
                  "sentencepiece": "transformers, converting the embedded GGUF's tokenizer",
                  "hydra-submitit-launcher": "Hydra's launcher plugins (conf/hydra/launcher/)",
                  "lion-pytorch": "conf/optimizer/lion.yaml's _target_"}


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~\[; ]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def _imported_distributions() -> dict[str, str]:
    """Top-level module -> its distribution, for every third-party module that rlvr_cli imports (statically)."""
    modules: set[str] = set()
    for path in (REPO / "rlvr_cli").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                modules.update(a.name.split(".")[0] for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules.add(node.module.split(".")[0])
    third = modules - set(sys.stdlib_module_names) - {"rlvr_cli", "__future__"}
    found = importlib.metadata.packages_distributions()
    return {m: _name(found[m][0]) if m in found else m for m in sorted(third)}


def test_every_imported_package_is_declared_and_every_declared_one_is_used():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    declared = {_name(r) for r in project["dependencies"]}
    extras = {_name(r) for group in project["optional-dependencies"].values() for r in group}
    imported = _imported_distributions()
    guarded = {"vllm", "deepspeed"}  # optional: imported where their extra is installed, and checked before
    missing = {m: d for m, d in imported.items() if d not in declared and not (m in guarded and d in extras)}
    assert not missing, f"imported by rlvr_cli but not in pyproject.toml's dependencies: {missing}"
    unused = declared - set(imported.values()) - set(USED_BY_OTHERS)
    assert not unused, f"declared in pyproject.toml but nothing uses them: {sorted(unused)}"
    assert set(USED_BY_OTHERS) <= declared


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """rlvr's wheel, built from a copy of the source tree (the build writes build/ and *.egg-info/ beside it)."""
    src = tmp_path_factory.mktemp("src")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    shutil.copytree(REPO / "conf", src / "conf")
    shutil.copytree(REPO / "rlvr_cli", src / "rlvr_cli", symlinks=True,
                    ignore=shutil.ignore_patterns("__pycache__"))
    out = tmp_path_factory.mktemp("dist")
    # --no-build-isolation: the build backend of this environment (setuptools), no registry asked
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(out),
                    str(src)], check=True, capture_output=True, text=True)
    (found,) = out.glob("rlvr-*.whl")
    return found


def test_the_wheel_carries_every_option_file(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    shipped = {f"rlvr_cli/conf/{p.relative_to(REPO / 'conf').as_posix()}" for p in (REPO / "conf").rglob("*.yaml")}
    assert shipped and shipped <= names, sorted(shipped - names)


def test_the_installed_wheel_runs_from_any_directory(wheel, tmp_path):
    """A new virtual environment sees this one's packages through a .pth line (whose own .pth files, the editable
    rlvr's finder among them, Python does not process), pip installs the wheel into it, and its `rlvr` runs from an
    empty directory: the option files come from the installed package."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    purelib = Path(subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                  check=True, capture_output=True, text=True).stdout.strip())
    (purelib / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps",
                    "--no-index", str(wheel)], check=True, capture_output=True, text=True)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("RLVR_CONFIG_DIR", "PYTHONPATH")}
    rlvr = str(venv / "bin" / "rlvr")

    where = subprocess.run([python, "-c", "import rlvr_cli.core.groups as g; print(g.PACKAGED_CONFIG)"], cwd=elsewhere,
                           env=env, check=True, capture_output=True, text=True).stdout.strip()
    assert Path(where).is_relative_to(purelib) and not Path(where).is_symlink()  # not the checkout's conf/
    shown = subprocess.run([rlvr, "config", "show", "optimizer=adamw"], cwd=elsewhere, env=env, capture_output=True,
                           text=True)
    assert shown.returncode == 0, shown.stderr
    assert "_target_: torch.optim.AdamW" in shown.stdout

    args = ["model=tiny-random", "logger=none", "grpo.max_steps=1", "grpo.num_generations=2",
            "grpo.per_device_train_batch_size=2", "grpo.max_completion_length=4", "sparsity=null",
            "output_dir=runs", "run_name=r"]
    done = subprocess.run([rlvr, "train", *args, "--json"], cwd=elsewhere, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads((elsewhere / "runs" / "r" / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["global_step"] == 1


def test_a_users_option_files_sit_beside_rlvrs_and_replace_a_same_named_one(own_conf):
    """`RLVR_CONFIG_DIR` is searched before the packaged files: a new option is added to rlvr's, and a file of the
    same name as one of rlvr's replaces it; train.yaml and every other option still come from the package."""
    from rlvr_cli.core.compose import compose, group_options

    (own_conf / "optimizer" / "sgd.yaml").write_text("defaults:\n  - adamw\n  - _self_\n\nname: sgd\nlr: 0.5\n")
    (own_conf / "optimizer" / "my_adam.yaml").write_text("defaults:\n  - adamw\n  - _self_\n\nname: my_adam\n")
    assert {"my_adam", "sgd", "adamw", "lion"} <= set(group_options("optimizer"))
    cfg = compose(["model=tiny-random"])  # train.yaml's default optimizer is sgd: now the user's
    assert cfg.optimizer._target_ == "torch.optim.AdamW" and cfg.optimizer.lr == 0.5
    assert compose(["optimizer=my_adam"]).optimizer.name == "my_adam"
    assert compose(["optimizer=lion"]).optimizer._target_ == "lion_pytorch.Lion"


def test_a_config_dir_that_is_not_a_directory_is_one_line(tmp_path):
    env = {**os.environ, "RLVR_CONFIG_DIR": str(tmp_path / "nowhere")}
    done = subprocess.run([sys.executable, "-m", "rlvr_cli.cli", "config", "show"], env=env, capture_output=True,
                          text=True)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1].endswith(
        f"RLVR_CONFIG_DIR={tmp_path / 'nowhere'} is not a directory; point it at a folder of your own option files "
        "(e.g. my_conf/optimizer/NAME.yaml), or unset it")
