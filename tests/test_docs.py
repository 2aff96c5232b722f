"""The documentation a user reads (issue 28, item 2): README stays short and keeps the CI command, the MkDocs site
under docs/ builds with `--strict` (every page in the nav, every link, anchor and image resolved), the CLI reference
is generated from the Typer app, and every `rlvr ...` command line that README.md and docs/ show in a bash block is
one the app accepts: its subcommand exists, its options parse with click, and its overrides compose."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
DOCS = REPO / "docs"
#: The sentence CI's script is checked against (`.ci/run` runs what README says).
CI_SENTENCE = "The test command (what CI runs, `.ci/run`) is `make test && make test-vllm`."
#: A command line shown as a pattern rather than something to run: `<run>`, `...`, RUN_DIR, MODEL, SWEEP_DIR.
PLACEHOLDER = re.compile(r"<[^>]*>|\.\.\.|\bRUN_DIR\b|\bMODEL\b|\bSWEEP_DIR\b")


def doc_files() -> list[Path]:
    return [README, *sorted(DOCS.rglob("*.md"))]


def bash_commands(path: Path) -> list[tuple[int, str]]:
    """The `rlvr ...` command lines of a Markdown file's bash code blocks: (line number, the command), a command
    continued with a trailing backslash joined into one line, comments dropped."""
    commands, block, start, pending = [], None, 0, ""
    for number, line in enumerate(path.read_text().splitlines(), 1):
        fence = re.match(r"\s*```(\w*)", line)
        if fence:
            block = None if block is not None else fence.group(1)
            continue
        if block != "bash":
            continue
        if not pending:
            start = number
        pending += line.rstrip()
        if pending.endswith("\\"):
            pending = pending[:-1] + " "
            continue
        words = shlex.split(pending, comments=True)
        while words and re.match(r"^[A-Z_][A-Z0-9_]*=", words[0]):  # an environment assignment before the command
            words = words[1:]
        if words[:1] == ["rlvr"]:
            commands.append((start, pending))
        pending = ""
    return commands


COMMANDS = [pytest.param(line, id=f"{path.relative_to(REPO)}:{number}")
            for path in doc_files() for number, line in bash_commands(path) if not PLACEHOLDER.search(line)]


def test_readme_is_short_and_keeps_the_ci_command():
    text = README.read_text()
    assert len(text.splitlines()) <= 250, "README.md is the front page; the reference belongs under docs/"
    assert CI_SENTENCE in text
    first_block = text.split("```bash", 1)[1].split("```", 1)[0]
    assert [line.split()[:2] for line in first_block.strip().splitlines()] == [
        ["make", "demo"], ["make", "test"], ["make", "test-vllm"]]


def github_slug(heading: str) -> str:
    """The anchor GitHub gives a Markdown heading (and MkDocs too, for headings without runs of punctuation)."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower().replace("`", ""))
    return text.replace(" ", "-")


def test_readme_links_resolve():
    """README is read on GitHub, outside the site's strict build: each relative link names a file of the checkout,
    and an anchor into a page names one of its headings."""
    text = README.read_text()
    links = re.findall(r"\]\(((?!https?://)[^)#\s]+)(?:#([^)\s]+))?\)", text)
    assert len(links) >= 15
    for target, anchor in links:
        path = REPO / target
        assert path.exists(), target
        if anchor:
            slugs = {github_slug(h) for h in re.findall(r"^#+ (.+)$", path.read_text(), re.M)}
            assert anchor in slugs, f"{target}#{anchor}"


def test_the_docs_show_commands():
    """The command lines are found: README and the pages hold dozens (a broken fence rule would silently test
    none), and README shows every command of the app at least once."""
    import typer

    from rlvr_cli.cli.main import app

    every = set(typer.main.get_command(app).commands)
    assert len(COMMANDS) >= 40
    assert {parse(line)[0][0] for _, line in bash_commands(README)} == every


def _options(group: str) -> list[str]:
    from rlvr_cli.core.groups import group_options

    return group_options(group)


def parse(line: str) -> tuple[list[str], dict, list[str]]:
    """A documented command line as the app parses it, without running it: (the subcommand's path, e.g.
    `["config", "show"]`, its parameters as click parsed them, the environment assignments before `rlvr`).

    Raises:
        AssertionError: no such subcommand.
        click's UsageError (Typer's): an unknown option, a value of the wrong type, a missing argument.
    """
    import typer

    from rlvr_cli.cli.main import app

    words = shlex.split(line, comments=True)
    env = words[:words.index("rlvr")]
    args = words[len(env) + 1:]
    command, path = typer.main.get_command(app), []
    while hasattr(command, "commands"):  # a group: the next word names its subcommand
        assert args and args[0] in command.commands, f"no such command: rlvr {' '.join(path + args[:1])}"
        path.append(args.pop(0))
        command = command.commands[path[-1]]
    ctx = command.make_context(" ".join(["rlvr", *path]), list(args), resilient_parsing=False)
    return path, ctx.params, env


@pytest.mark.parametrize("line", COMMANDS)
def test_a_documented_command_is_one_the_app_accepts(line):
    from rlvr_cli.core.compose import compose, validate
    from rlvr_cli.core.errors import BadInput
    from rlvr_cli.core.precision import PRECISIONS

    path, params, env = parse(line)
    # values that name an option file or a fixed set: the names the code accepts
    if path == ["eval"]:
        for name in (params["benchmarks"] or "").split(","):
            assert not name or name in _options("benchmark"), name
        assert params["data"] is None or params["data"] in _options("data"), params["data"]
    if path == ["memory"]:
        assert set(params["optimizer"]) <= set(_options("optimizer")), params["optimizer"]
        assert params["adapter"] in _options("adapter"), params["adapter"]
        assert params["shard"] in _options("distributed"), params["shard"]
        assert params["precision"] in PRECISIONS, params["precision"]
    try:
        if path in (["train"], ["config", "show"]) and not env:  # what `rlvr train` checks before torch loads
            cfg = compose(params["overrides"] or [])
            if path == ["train"]:
                validate(cfg)
        if path == ["sweep"]:  # what `rlvr sweep --dry-run` checks: the file, the launcher, every cell's config
            from rlvr_cli.sweeps.launch import LAUNCHERS, check_cells, plan

            assert params["launcher"] in LAUNCHERS, params["launcher"]
            sweep = plan(REPO / params["sweep_file"], params["overrides"] or [], params["launcher"],
                         params["max_parallel"])
            if sweep.search is None:
                check_cells(sweep.cells, sweep.extra)
    except BadInput as e:
        pytest.fail(f"{line}\n  -> error: {e}")


def test_the_optimizer_table_lists_every_option_file():
    """docs/optimizers.md's table: one row per file of conf/optimizer/, with its class and default learning rate."""
    import yaml

    rows = {m.group(1): (m.group(2), float(m.group(3))) for m in re.finditer(
        r"^\| `(\w+)` \| `([\w.]+)`[^|]*\| ([\d.e-]+) \|", (DOCS / "optimizers.md").read_text(), re.M)}
    files = {p.stem: yaml.safe_load(p.read_text()) for p in (REPO / "conf" / "optimizer").glob("*.yaml")}
    assert set(rows) == set(files)
    assert {k: v for k, v in rows.items() if v != (files[k]["_target_"], float(files[k]["lr"]))} == {}


def test_the_peft_table_lists_every_adapter_file():
    rows = set(re.findall(r"^\| `(\w+)` \|", (DOCS / "peft.md").read_text(), re.M))
    assert rows == {p.stem for p in (REPO / "conf" / "adapter").glob("*.yaml")}


def test_the_cli_reference_covers_every_command():
    """The page the site's hook generates has a section for each command and subcommand of the Typer app."""
    import typer

    sys.path.insert(0, str(DOCS / "hooks"))
    try:
        import cli_reference
    finally:
        sys.path.remove(str(DOCS / "hooks"))
    from rlvr_cli.cli.main import app

    page = cli_reference.page()
    group = typer.main.get_command(app)
    for name, command in group.commands.items():
        assert f"## `rlvr {name}`" in page
        for sub in getattr(command, "commands", {}):
            assert f"### `rlvr {name} {sub}`" in page
    assert "`--max-new-tokens <int>`" in page and "evals/&lt;model&gt;-&lt;time&gt;" in page


def test_the_site_builds_strict(tmp_path):
    """`mkdocs build --strict` with every link, anchor and omitted page a warning (mkdocs.yml's `validation`):
    README's pages, the benchmarks by topic, their images, the generated CLI reference."""
    pytest.importorskip("mkdocs")
    pytest.importorskip("material")
    site = tmp_path / "site"
    result = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file",
                             str(REPO / "mkdocs.yml"), "--site-dir", str(site)], cwd=REPO, capture_output=True,
                            text=True, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"}, timeout=120)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    assert "WARNING" not in result.stderr
    assert (site / "cli" / "index.html").is_file()
    assert (site / "sweep" / "reward_vs_lr.png").is_file()
    assert not (site / "hooks").exists()
