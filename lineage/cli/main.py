"""Entry point of the `lineage` command.

Each command group lives in a module named after its commands, with a
`register(app)` function; this module wires them together and turns `LineageError`s
into one line on stderr (secrets in URLs masked, control characters escaped).
"""

from __future__ import annotations

import gc
import importlib
import os
import sys
from typing import Any

import typer

from lineage.cli.output import clean
from lineage.errors import LineageError
from lineage.redact import redact_url

app = typer.Typer(
    name="lineage",
    help="Model versioning and lineage-driven ModelOps.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    # `lineage --install-completion`: commands, options, model names and refs.
    add_completion=True,
)

# Command modules, in the order their commands appear in --help.
COMMAND_MODULES = [
    "lineage.cli.init",
    "lineage.cli.add",
    "lineage.cli.log",
    "lineage.cli.descendants",
    "lineage.cli.graph",
    "lineage.cli.checkout",
    "lineage.cli.diff",
    "lineage.cli.store",
    "lineage.cli.recipes",
    "lineage.cli.derive",
    "lineage.cli.tests",
    "lineage.cli.cascade",
    "lineage.cli.server",
    "lineage.cli.promote",
    "lineage.cli.trust",
    "lineage.cli.sync",
    "lineage.cli.image",
    "lineage.cli.ui",
]


def _print_version(value: bool) -> None:
    if value:
        from lineage.provenance import package_version

        typer.echo(f"lineage {package_version()}")
        raise typer.Exit()


@app.callback()
def _root(
    ctx: typer.Context,
    workspace: str = typer.Option(
        None,
        "--workspace",
        "-w",
        metavar="DIR",
        help="Workspace directory (default: $LINEAGE_WORKSPACE, else search up from the cwd).",
    ),
    _version: bool = typer.Option(
        False, "--version", callback=_print_version, is_eager=True, help="Print the version."
    ),
) -> None:
    ctx.obj = {"workspace": workspace}


def _register_commands() -> None:
    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).register(app)


_register_commands()


def _tidy_help(command: Any) -> None:
    """`--help` shows what to type, not Python types: no `<bool>` after a flag and no
    `<str>` after an argument's metavar (options with choices keep `<a|b|c>`)."""
    for param in command.params:
        _tidy_param(param)
    make_help_option = command.get_help_option

    def help_option(ctx: Any) -> Any:
        option = make_help_option(ctx)
        if option is not None:
            _tidy_param(option)
        return option

    command.get_help_option = help_option  # built per invocation, like any context
    for sub in getattr(command, "commands", {}).values():
        _tidy_help(sub)


def _tidy_param(param: Any) -> None:
    if getattr(param, "is_flag", False) and param.metavar is None:
        param.metavar = ""
    elif param.param_type_name == "argument" and param.metavar:
        # An argument's type is shown by this method (an instance attribute wins).
        param.display_type_rich = lambda ctx: None


def cli_command() -> Any:
    """The Click command behind `app`, its help tidied (what `main` runs)."""
    command = typer.main.get_command(app)
    _tidy_help(command)
    return command


def main() -> None:
    """Console-script entry: run the app, map expected errors to exit codes."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    try:
        _run_command()
    finally:
        # The interpreter's last cyclic collection walks every object that torch,
        # transformers and Prefect made (about a second at the end of a command that
        # imported them); the process is ending and its memory goes back to the OS
        # anyway. atexit handlers, flushing and closing still run as usual.
        gc.freeze()


def _run_command() -> None:
    """Run the app; map expected errors to exit codes."""
    try:
        cli_command().main(prog_name="lineage", standalone_mode=False)
    except LineageError as exc:
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        sys.stderr.write(f"error: {clean(redact_url(message))}\n")
        sys.exit(exc.exit_code)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        sys.stderr.write("error: aborted\n")
        sys.exit(130)
    except KeyboardInterrupt:
        sys.stderr.write("error: interrupted\n")
        sys.exit(130)
    except Exception as exc:  # usage errors of typer's (vendored) click
        if type(exc).__name__ == "NoArgsIsHelpError":
            sys.exit(2)  # the help text is already printed
        exit_code = getattr(exc, "exit_code", None)
        if hasattr(exc, "format_message") and isinstance(exit_code, int):
            sys.stderr.write(f"error: {exc.format_message()}\n")
            sys.exit(exit_code)
        raise


if __name__ == "__main__":
    main()
