"""Every optional extra installs beside rlvr's own pins, as pip's resolver decides (`pip install --dry-run --report`
against the package index, metadata only, nothing installed): a pin bump that breaks co-installation fails here.
Needs the package index, so it runs in `make test-vllm` (marker `resolver`), not in `make test`."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib

REPO = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
EXTRAS = [e for e in PROJECT["optional-dependencies"] if e != "dev"]

pytestmark = pytest.mark.resolver


def _pins(requirements: list[str]) -> dict[str, str]:
    """`name==version` requirements as {normalised name: version}."""
    pins = {}
    for req in requirements:
        m = re.fullmatch(r"([A-Za-z0-9_.-]+)==([^;,\s]+)", req.strip())
        if m:
            pins[re.sub(r"[-_.]+", "-", m.group(1)).lower()] = m.group(2)
    return pins


def _resolve(target: str) -> dict[str, str]:
    """What `pip install TARGET` would install into an empty environment: {normalised name: version}."""
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet",
                           "--report", "-", target], capture_output=True, text=True, cwd=REPO, timeout=600)
    assert proc.returncode == 0, f"pip refuses {target}: {proc.stderr[-3000:]}"
    report = json.loads(proc.stdout)
    return {re.sub(r"[-_.]+", "-", i["metadata"]["name"]).lower(): i["metadata"]["version"]
            for i in report["install"]}


@pytest.mark.parametrize("extra", EXTRAS)
def test_each_extra_resolves_beside_rlvrs_pins(extra):
    resolved = _resolve(f".[{extra}]")
    wanted = {**_pins(PROJECT["dependencies"]), **_pins(PROJECT["optional-dependencies"][extra])}
    assert wanted, "no pinned requirement to check"
    for name, version in wanted.items():
        assert resolved.get(name, "").split("+")[0] == version, (name, version, resolved.get(name))

