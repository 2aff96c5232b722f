"""MkDocs hook: the CLI reference page (`cli.md`), generated from rlvr's Typer app at every build.

The page is not a file of `docs/`: `on_files` adds it to the build as a generated file (MkDocs 1.6,
`File.generated`), so it cannot fall behind the code and nothing is written into the source tree (`mkdocs serve`
does not rebuild in a loop). It is built the way Typer's own generator builds one (`typer.cli.get_docs_for_click`,
what `typer rlvr_cli.cli.main utils docs` prints): the click command that Typer makes of the app
(`typer.main.get_command`), walked group by group; each command's help text, usage, arguments and options with the
help records click prints for `--help`. Unlike Typer's generator it escapes the help text for Markdown (`<model>`
would be an HTML tag, `*` emphasis) while keeping its backtick code spans as written.

Listed in `mkdocs.yml` under `hooks:`; `exclude_docs` keeps this file out of the site.
"""

from __future__ import annotations

import re
from typing import Any

PAGE = "cli.md"

#: Characters that Markdown would read as markup in running text (outside a code span).
_SPECIAL = re.compile(r"([\\*_\[\]<>&|#])")
_ENTITIES = {"<": "&lt;", ">": "&gt;", "&": "&amp;"}


def escape(text: str) -> str:
    """`text` as Markdown that renders as written: its backtick code spans kept, everything else escaped."""
    parts = re.split(r"(`[^`]*`)", text)
    out = []
    for i, part in enumerate(parts):
        if i % 2:  # a code span
            out.append(part)
        else:
            out.append(_SPECIAL.sub(lambda m: _ENTITIES.get(m.group(1), "\\" + m.group(1)), part))
    return "".join(out)


def code(text: str) -> str:
    """`text` as one inline code span, whatever backticks it holds."""
    fence = "``" if "`" in text else "`"
    return f"{fence}{text}{fence}" if fence == "`" else f"{fence} {text} {fence}"


def command_docs(command: Any, ctx: Any, path: str, level: int = 2) -> str:
    """One command's section (and, for a group, its subcommands' sections after it).

    Args:
        command: a click command or group (Typer's `TyperCommand` / `TyperGroup`).
        ctx: its click context (Typer's `Context`), parented like the real command line's.
        path: the command line up to it, e.g. `rlvr config show`.
        level: the Markdown heading level of its section.
    """
    import typer

    lines = [f"{'#' * level} `{path}`", ""]
    if command.help:
        paragraphs = [" ".join(p.split()) for p in re.split(r"\n\s*\n", command.help.strip())]
        lines += [text for p in paragraphs for text in (escape(p), "")]
    usage = " ".join([path, *command.collect_usage_pieces(ctx)])
    lines += ["```text", usage, "```", ""]
    arguments, options = [], []
    for param in command.get_params(ctx):
        record = param.get_help_record(ctx)
        if record is None:
            continue
        (arguments if param.param_type_name == "argument" else options).append(record)
    for title, records in (("Arguments", arguments), ("Options", options)):
        if records:
            lines += [f"**{title}**", ""]
            lines += [f"- {code(name)}" + (f": {escape(' '.join(text.split()))}" if text else "")
                      for name, text in records]
            lines.append("")
    if isinstance(command, typer.core.TyperGroup):
        names = command.list_commands(ctx)
        lines += ["**Commands**", ""]
        for name in names:
            sub = command.get_command(ctx, name)
            lines.append(f"- [`{path} {name}`](#{slug(f'{path} {name}')}): {escape(sub.get_short_help_str(80))}")
        lines.append("")
        for name in names:
            sub = command.get_command(ctx, name)
            sub_ctx = typer.Context(sub, info_name=name, parent=ctx)
            lines.append(command_docs(sub, sub_ctx, f"{path} {name}", level + (path != "rlvr")))
    return "\n".join(lines)


def slug(title: str) -> str:
    """The anchor Python-Markdown's `toc` gives a heading (its default `slugify`), for the command index."""
    text = re.sub(r"[^\w\s-]", "", title).strip().lower()
    return re.sub(r"[-\s]+", "-", text)


def page() -> str:
    """The whole CLI reference page, Markdown."""
    import typer

    from rlvr_cli.cli.main import app

    group = typer.main.get_command(app)
    ctx = typer.Context(group, info_name="rlvr")
    intro = (
        "# CLI reference\n\n"
        "Generated from the Typer app (`rlvr_cli.cli.main:app`) each time the site is built "
        "(`docs/hooks/cli_reference.py`), so it says what `rlvr COMMAND --help` says. Examples and explanations are "
        "on the other pages: [rlvr train](configuration.md), [rlvr eval](evaluation.md), "
        "[rlvr sweep and rlvr report](sweeps.md), [rlvr sparsity and rlvr memory](memory-and-sparsity.md); "
        "[`--json`](run-directory.md#machine-readable-output) and exit codes: "
        "[the run directory and faults](run-directory.md).\n\n"
    )
    return intro + command_docs(group, ctx, "rlvr")


def on_files(files: Any, config: Any) -> Any:
    """MkDocs event: add the generated page to the build."""
    from mkdocs.structure.files import File

    files.append(File.generated(config, PAGE, content=page()))
    return files
