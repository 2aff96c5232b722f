"""The `rlvr` command line (Typer). Imports nothing heavy: torch loads only inside commands that train.

    rlvr train  [OVERRIDES...]        one GRPO run; Hydra override syntax
    rlvr eval   MODEL [options]       avg@k / pass@k / maj@k on AIME24/25, MATH-500, AMC23, GSM8K,
                                      OlympiadBench, Minerva Math
    rlvr sweep  SWEEP.yaml [OVERRIDES...]   a grid of runs through a Hydra launcher
    rlvr report SWEEP_DIR             table, best learning rates, CSV/JSON and plots of a sweep
    rlvr memory MODEL [options]       training memory per optimizer: weights, gradients, states, master
    rlvr sparsity BASE TARGET         update sparsity: % of weights changed, per module type and layer
    rlvr config show [OVERRIDES...]   the composed config, resolved
    rlvr env                          the versions a bug report needs
    rlvr --version
"""

from __future__ import annotations

import typer

from rlvr_cli import __version__
from rlvr_cli.cli import analysis, config, env, sweep, train
from rlvr_cli.cli import eval as evaluate
from rlvr_cli.cli.output import console

app = typer.Typer(help="Experiment runner for reinforcement learning with verifiable rewards (GRPO) on LLMs.",
                  no_args_is_help=True, pretty_exceptions_enable=False)  # --install-completion: bash, zsh, fish
config_app = typer.Typer(help="Inspect the composed configuration.", no_args_is_help=True)
app.add_typer(config_app, name="config")


def _version(value: bool) -> None:
    if value:
        console.print(f"rlvr {__version__}")
        raise typer.Exit()


@app.callback()
def main(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                      help="Print the version and exit.")) -> None:
    """rlvr: compose configs, run GRPO with TRL, track with W&B."""


app.command()(train.train)
app.command("eval")(evaluate.eval_)
app.command()(sweep.sweep)
app.command()(sweep.report)
app.command()(analysis.sparsity)
app.command(context_settings=analysis.MEMORY_CONTEXT)(analysis.memory)
config_app.command("show")(config.config_show)
app.command("env")(env.env)



def run(args: list[str] | None = None) -> None:
    """The `rlvr` console script: the Typer app, with click's usage errors (a value of the wrong type for an option,
    `--k abc`; an unknown option; a missing argument) as one `error:` line and exit 2, as rlvr's own refusals are,
    instead of Typer's boxed message. `rlvr` alone prints the help. Any other exception is one line, exit 1, its
    traceback in a file (`rlvr_cli.cli.crash.report_unexpected`). A Ctrl-C that no command handled ends with exit
    130 and no traceback (Typer's own rule inside a command; `error: interrupted` outside one).

    Args:
        args: the command line without the program name; default `sys.argv[1:]`.
    """
    import sys

    try:
        code = app(args=args, standalone_mode=False, prog_name="rlvr")
    except typer.Abort:
        print("error: aborted", file=sys.stderr)
        code = 130
    except typer.TyperException as e:  # click's errors (Typer vendors click): a usage error has a message and a ctx
        ctx = getattr(e, "ctx", None)
        if type(e).__name__ == "NoArgsIsHelpError" and ctx is not None:
            print(ctx.get_help())
            code = 0
        elif hasattr(e, "format_message"):
            where = f" See '{ctx.command_path} --help'." if ctx is not None else ""
            print(f"error: {e.format_message().rstrip('.')}.{where}", file=sys.stderr)
            code = getattr(e, "exit_code", 2)
        else:
            raise
    except KeyboardInterrupt:  # a Ctrl-C that no command turned into its own line
        print("error: interrupted", file=sys.stderr)
        code = 130
    except Exception as e:  # the last line of defence: one line, the traceback in a file (cli/crash.py)
        from rlvr_cli.cli.crash import report_unexpected

        code = report_unexpected(e)
    sys.exit(code or 0)


if __name__ == "__main__":
    run()
