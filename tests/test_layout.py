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


def test_the_readme_layout_map_names_every_module():
    """README's "How the code is laid out" names each module of each sub-package in its package's row (issue 20:
    it had fallen behind the tree by seven modules)."""
    import re

    text = (REPO / "README.md").read_text()
    table = text[text.index("| layer | package | what lives there |"):text.index("Where to add an axis")]
    rows = {m.group(1): m.group(2) for m in re.finditer(r"^\|[^|]*\| `(\w+)/` \|(.*)\|$", table, re.M)}
    for package in sorted(p.parent for p in (REPO / "rlvr_cli").glob("*/__init__.py")):
        modules = {p.name for p in package.glob("*.py") if p.name != "__init__.py"} - {"__main__.py"}
        missing = sorted(m for m in modules if f"`{m}`" not in rows.get(package.name, ""))
        assert not missing, f"README's layout map lacks {package.name}/: {missing}"
