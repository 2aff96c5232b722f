"""The package's layers hold: the import-linter contracts in pyproject.toml (no upward imports, no cycles)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_import_contracts_are_kept():
    lint = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run([str(lint), "--no-cache"], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "0 broken" in result.stdout


def test_every_subpackage_is_in_the_layers():
    """A new sub-package must be placed in a layer, or the contract says nothing about it."""
    import tomllib

    layers = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"][0]["layers"]
    named = {m.strip().removeprefix("rlvr_cli.") for layer in layers for m in layer.split("|")}
    packages = {p.parent.name for p in (REPO / "rlvr_cli").glob("*/__init__.py")}
    assert packages == named


ARCHITECTURE = REPO / "docs" / "architecture.md"


def test_the_layout_map_names_every_module():
    """docs/architecture.md's layer table names each module of each sub-package in its package's row (issue 20:
    README's map had fallen behind the tree by seven modules)."""
    import re

    text = ARCHITECTURE.read_text()
    table = text[text.index("| layer | package | what lives there |"):text.index("## Where to add an axis")]
    rows = {m.group(1): m.group(2) for m in re.finditer(r"^\|[^|]*\| `(\w+)/` \|(.*)\|$", table, re.M)}
    for package in sorted(p.parent for p in (REPO / "rlvr_cli").glob("*/__init__.py")):
        modules = {p.name for p in package.glob("*.py") if p.name != "__init__.py"} - {"__main__.py"}
        missing = sorted(m for m in modules if f"`{m}`" not in rows.get(package.name, ""))
        assert not missing, f"docs/architecture.md's layout map lacks {package.name}/: {missing}"


def _defined(path: Path) -> set[str]:
    """The top-level names a module defines (functions, classes, assignments)."""
    import ast

    names = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
    return names


def test_every_file_and_function_the_architecture_page_names_exists():
    """Issue 27, item 7: the page's claims hold. Every `rlvr_cli/...py` it names is a file; a function named right
    after a file (`rlvr_cli/core/compose.py` `compose`) is defined there; the recipe's stages (`- `setup`:`) are
    methods of the recipe object; the axis table's files (`optimizers/build.py`, `core/targets.build_option_file`)
    exist."""
    import re

    text = ARCHITECTURE.read_text()
    paths = set(re.findall(r"`(rlvr_cli/[\w/]+\.py)`", text))
    assert {p for p in paths if not (REPO / p).is_file()} == set()
    pairs = re.findall(r"`(rlvr_cli/[\w/]+\.py)` `(\w+)`", text)
    assert len(pairs) >= 10
    assert [(p, n) for p, n in pairs if n not in _defined(REPO / p)] == []
    from rlvr_cli.training.recipe import GRPORecipe

    stages = re.findall(r"^   - `(\w+)`", text, re.M)
    assert {"check", "setup", "train", "save", "evaluate", "cleanup"} <= set(stages)
    assert [n for n in stages if not callable(getattr(GRPORecipe, n, None))] == []
    axes = text[text.index("## Where to add an axis"):text.index("## The spine")]
    for ref in re.findall(r"`((?:\w+/)+\w+\.py|\w+/\w+\.\w+)`", axes):
        if not (REPO / "rlvr_cli" / ref.split("/")[0] / "__init__.py").is_file():
            continue  # conf/, docs/, benchmarks/: not a module of rlvr_cli
        module, _, name = ref.partition(".py") if ref.endswith(".py") else ref.rpartition(".")
        file = REPO / "rlvr_cli" / (ref if ref.endswith(".py") else module + ".py")
        assert file.is_file(), ref
        if not ref.endswith(".py"):
            assert name in _defined(file), ref


def test_no_module_over_500_lines_and_no_file_name_twice():
    """Issue 27, item 4: each concept in its room. A module stays short enough to read, and a file name says which
    module it is (`__init__.py` and `__main__.py` aside)."""
    modules = [p for p in (REPO / "rlvr_cli").rglob("*.py") if "__pycache__" not in p.parts]
    long = {str(p.relative_to(REPO)): n for p in modules if (n := len(p.read_text().splitlines())) > 500}
    assert not long, long
    names: dict[str, list[str]] = {}
    for p in modules:
        if p.name not in ("__init__.py", "__main__.py"):
            names.setdefault(p.name, []).append(str(p.relative_to(REPO)))
    twice = {name: paths for name, paths in names.items() if len(paths) > 1}
    assert not twice, twice
