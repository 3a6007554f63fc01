"""Entry point of the `lineage` command.

Each command group lives in its own module with a `register(app)` function; this
module wires them together and turns `LineageError`s into one line on stderr.
"""

from __future__ import annotations

import importlib
import os
import sys

import typer

from lineage.errors import LineageError

app = typer.Typer(
    name="lineage",
    help="Model versioning and lineage-driven ModelOps.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

# Command modules, in the order their commands appear in --help.
COMMAND_MODULES = [
    "lineage.cli.graph_cmds",
    "lineage.cli.store_cmds",
    "lineage.cli.recipes_cmds",
    "lineage.cli.cascade_cmds",
    "lineage.cli.registry_cmds",
    "lineage.cli.image_cmds",
    "lineage.cli.ui_cmds",
]


def _print_version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        typer.echo(f"lineage {version('lineage')}")
        raise typer.Exit()


@app.callback()
def _root(
    ctx: typer.Context,
    workspace: str = typer.Option(
        None,
        "--workspace",
        "-w",
        help="Workspace directory (default: $LINEAGE_WORKSPACE, else search up from the cwd).",
    ),
    _version: bool = typer.Option(
        False, "--version", callback=_print_version, is_eager=True, help="Print the version."
    ),
) -> None:
    ctx.obj = {"workspace": workspace}


def _register_commands() -> None:
    for module_name in COMMAND_MODULES:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name == module_name:
                continue  # command group not part of this build
            raise
        module.register(app)


_register_commands()


def main() -> None:
    """Console-script entry: run the app, map expected errors to exit codes."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    try:
        app(standalone_mode=False)
    except LineageError as exc:
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        sys.stderr.write(f"error: {message}\n")
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
        if hasattr(exc, "format_message") and isinstance(getattr(exc, "exit_code", None), int):
            sys.stderr.write(f"error: {exc.format_message()}\n")
            sys.exit(exc.exit_code)
        raise


if __name__ == "__main__":
    main()
