"""`lineage ui`: serve the lineage explorer for this workspace on a local port."""

from __future__ import annotations

import sys

import typer

from lineage.cli.output import err_console, workspace_from


def ui(
    ctx: typer.Context,
    names: list[str] = typer.Argument(None, help="Only these models' families."),
    port: int = typer.Option(8765, "--port", "-p", help="TCP port (0: any free port)."),
    host: str = typer.Option(
        None,
        "--host",
        help="Address to bind (default 127.0.0.1). Anything but loopback exposes the "
        "workspace to the network without a login: only when you mean it.",
    ),
    no_browser: bool = typer.Option(False, "--no-browser", help="Do not open a browser."),
    verbose: bool = typer.Option(False, "--verbose", help="Log every request on stderr."),
) -> None:
    """A read-only web explorer of the lineage graph: versions, tests, cascades, diffs."""
    from lineage.ui.server import DEFAULT_HOST, make_server

    workspace = workspace_from(ctx)
    server = make_server(
        workspace,
        host=host or DEFAULT_HOST,
        port=port,
        allow_remote=host is not None,
        names=names or None,
        verbose=verbose,
    )
    if host is not None and server.any_host:
        err_console.print(
            f"warning: serving on every interface ({host}); anyone who can reach this "
            "machine can read the workspace",
            highlight=False,
        )
    # One plain line on stdout, flushed: scripts and tests wait for it.
    sys.stdout.write(f"lineage ui: serving {workspace.root} at {server.url} (Ctrl-C to stop)\n")
    sys.stdout.flush()
    if not no_browser:
        import webbrowser

        webbrowser.open(server.url)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        workspace.close()


def register(app: typer.Typer) -> None:
    app.command()(ui)
