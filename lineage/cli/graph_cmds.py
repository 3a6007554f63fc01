"""Commands over the lineage graph: init, add, commit, log, show, descendants, graph..."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.table import Table

from lineage.cli.output import (
    JsonOption,
    byte_progress,
    console,
    err_console,
    parse_params,
    print_json,
    workspace_from,
)
from lineage.errors import UsageError
from lineage.records import VersionInfo

if TYPE_CHECKING:
    from lineage.store import LossyOptions

GRAPH_FORMATS = ("text", "mermaid", "dot", "html", "json")

LossyOption = typer.Option(
    False,
    "--lossy",
    help="Store approximately (quantized deltas) if the version's tests still pass; else lossless.",
)
MaxErrorOption = typer.Option(
    None, "--max-error", help="With --lossy: largest |error| per weight (default 1e-4)."
)
LossyToleranceOption = typer.Option(
    None,
    "--lossy-tolerance",
    help="With --lossy: largest change of any test metric vs the exact weights (default 0.01).",
)


def _lossy_request(
    lossy: bool, max_error: float | None, tolerance: float | None
) -> tuple[LossyOptions | None, float]:
    """(options or None, tolerance) from the --lossy flags, validated before any write."""
    if not lossy:
        if max_error is not None or tolerance is not None:
            raise UsageError("--max-error and --lossy-tolerance need --lossy")
        return None, 0.01
    from lineage.api.lossy import DEFAULT_TOLERANCE, check_lossy_request, lossy_options

    options = lossy_options(1e-4 if max_error is None else max_error)
    tolerance = DEFAULT_TOLERANCE if tolerance is None else tolerance
    check_lossy_request(options, tolerance)
    return options, tolerance


def _report_lossy(version: VersionInfo) -> None:
    """One line on stderr on how a --lossy request ended."""
    decision = (version.extra or {}).get("lossy")
    if not decision:
        return
    if decision["accepted"]:
        err_console.print(
            f"Stored {version.ref} lossily (|error| <= {decision['max_abs_error']:g}, "
            f"{decision['approximate_tensors']} tensors approximate): {decision['reason']}",
            highlight=False,
            soft_wrap=True,
        )
    else:
        err_console.print(
            f"warning: {version.ref}: lossy not kept: {decision['reason']}",
            highlight=False,
            soft_wrap=True,
        )


def _version_line(version: VersionInfo) -> str:
    parents = ", ".join(f"{link.ref} ({link.kind})" for link in version.derivation_parents)
    aliases = f" [{', '.join(version.aliases)}]" if version.aliases else ""
    origin = f" ← {parents}" if parents else ""
    return f"{version.ref}{aliases}{origin}"


def _versions_table(versions: list[VersionInfo], title: str) -> Table:
    table = Table(title=title, title_justify="left")
    for column in ("version", "kind", "parents", "aliases", "recipe", "created", "message"):
        table.add_column(column)
    for version in versions:
        table.add_row(
            version.ref,
            version.kind or "-",
            ", ".join(link.ref for link in version.derivation_parents) or "-",
            ", ".join(version.aliases) or "",
            version.recipe_id or "-",
            version.created_at.strftime("%Y-%m-%d %H:%M"),
            version.message,
        )
    return table


def init(
    directory: Path = typer.Argument(Path("."), help="Where to create the workspace."),
    db_url: str = typer.Option(
        "", "--db-url", help="SQLAlchemy URL of the graph DB (default: SQLite in .lineage/)."
    ),
    store_url: str = typer.Option(
        "", "--store-url", help="Object store: a folder or s3://bucket/prefix."
    ),
    tracking: bool = typer.Option(
        True, "--tracking/--no-tracking", help="Create (migrate) the MLflow store now."
    ),
    json_out: bool = JsonOption,
) -> None:
    """Create a workspace (.lineage/ with config, graph DB, object store, MLflow store)."""
    from lineage.workspace import Workspace

    workspace = Workspace.init(directory, graph_url=db_url, store_url=store_url)
    mlflow_uri = None
    if tracking:
        from lineage.tracking import init_tracking

        # Migrate the MLflow DB once, here, before parallel cascade tasks touch it.
        mlflow_uri = init_tracking(workspace)
    if json_out:
        print_json(
            {"root": str(workspace.root), "graph_url": workspace.graph_url, "mlflow": mlflow_uri}
        )
    else:
        console.print(f"Initialised lineage workspace in {workspace.root / '.lineage'}")


def add(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="Name of the new model."),
    source: Path = typer.Option(None, "--from", help="HF directory or .safetensors file."),
    parent: list[str] = typer.Option(
        [], "--parent", "-p", help="Parent reference (repeatable); `auto` finds the likeliest."
    ),
    kind: str = typer.Option(
        None, "--kind", "-k", help="finetune|adapter|distill|quantize|prune|merge|other"
    ),
    recipe: str = typer.Option(None, "--recipe", "-r", help="Make the weights with a recipe."),
    param: list[str] = typer.Option([], "--param", help="Recipe parameter KEY=VALUE."),
    data: str = typer.Option(None, "--data", help="Data set: a built-in name or a CSV/JSONL."),
    message: str = typer.Option("", "--message", "-m", help="What this version is."),
    tag: list[str] = typer.Option([], "--tag", "-t", help="Tag the version (repeatable)."),
    lossy: bool = LossyOption,
    max_error: float = MaxErrorOption,
    lossy_tolerance: float = LossyToleranceOption,
    json_out: bool = JsonOption,
) -> None:
    """Register a new model from existing weights, or make it with a recipe."""
    lossy_opts, tolerance = _lossy_request(lossy, max_error, lossy_tolerance)
    workspace = workspace_from(ctx)
    if recipe is not None:
        if source is not None:
            raise UsageError("give either --from (existing weights) or --recipe, not both")
        if lossy_opts is not None:
            raise UsageError("--lossy applies to --from weights (a recipe's output is re-made)")
        from lineage.api.derive import add_from_recipe

        version = add_from_recipe(
            workspace,
            name,
            recipe_id=recipe,
            parents=parent,
            params=parse_params(param),
            data=data,
            message=message,
            show_progress=not json_out,
            tags=tag,
        )
    else:
        if source is None:
            raise UsageError("give --from PATH (existing weights) or --recipe ID")
        suggested: list[tuple[str, float]] = []
        if parent == ["auto"]:
            parent = _auto_parent(workspace, source, json_out)
        with byte_progress(f"adding {name}", enabled=not json_out) as progress:
            version = workspace.add(
                name,
                source=source,
                parents=parent,
                kind=kind,
                message=message,
                tags=tag,
                progress=progress,
                lossy=lossy_opts,
                lossy_tolerance=tolerance,
            )
    _report_lossy(version)
    if recipe is None and not version.parents:
        # MGit's autopilot: name the likely parent, but let the user decide.
        from lineage.api.storage import likely_parents

        suggested = [
            (ref, score)
            for ref, score in likely_parents(workspace, source)
            if score >= 0.5 and not ref.startswith(f"{name}@")
        ][:3]
    if json_out:
        data = version.to_dict()
        if recipe is None:
            data["suggested_parents"] = [
                {"ref": ref, "similarity": round(score, 3)} for ref, score in suggested
            ]
        print_json(data)
    else:
        console.print(f"Added {_version_line(version)}")
        if recipe is None and suggested:
            best, score = suggested[0]
            console.print(
                f"Hint: {name} looks derived from {best} (similarity {score:.2f}); record it "
                f"with `lineage link {version.ref} {best} --kind finetune`, or next time "
                "pass --parent auto"
            )


def _auto_parent(workspace, source: Path, quiet: bool) -> list[str]:  # type: ignore[no-untyped-def]
    from lineage.api.storage import likely_parents

    candidates = likely_parents(workspace, source)
    if not candidates:
        raise UsageError("--parent auto found no similar model in the workspace")
    best, score = candidates[0]
    if not quiet:
        console.print(f"Likely parent: {best} (similarity {score:.2f})")
    return [best]


def commit(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="Existing model."),
    source: Path = typer.Option(..., "--from", help="HF directory or .safetensors file."),
    parent: list[str] = typer.Option(
        None, "--parent", "-p", help="Parents of the new version (default: as before)."
    ),
    message: str = typer.Option("", "--message", "-m"),
    tag: list[str] = typer.Option([], "--tag", "-t", help="Tag the version (repeatable)."),
    emit: bool = typer.Option(
        True, "--emit/--no-emit", help="Announce the version to Prefect when one is configured."
    ),
    lossy: bool = LossyOption,
    max_error: float = MaxErrorOption,
    lossy_tolerance: float = LossyToleranceOption,
    json_out: bool = JsonOption,
) -> None:
    """Record the next version of a model."""
    lossy_opts, tolerance = _lossy_request(lossy, max_error, lossy_tolerance)
    workspace = workspace_from(ctx)
    with byte_progress(f"committing {name}", enabled=not json_out) as progress:
        version = workspace.commit(
            name,
            source=source,
            parents=parent or None,
            message=message,
            tags=tag,
            progress=progress,
            lossy=lossy_opts,
            lossy_tolerance=tolerance,
        )
    _report_lossy(version)
    emitted = False
    if emit:
        from lineage.events import emit_if_configured

        emitted = emit_if_configured(workspace, version)
    if json_out:
        print_json({**version.to_dict(), "event_emitted": emitted})
    else:
        console.print(f"Committed {_version_line(version)}")
        if emitted:
            console.print("Emitted lineage.model.committed")


def log(
    ctx: typer.Context,
    name: str = typer.Argument(...),
    aliases: bool = typer.Option(False, "--aliases", help="Show the alias history instead."),
    json_out: bool = JsonOption,
) -> None:
    """Versions of a model, newest first (or its alias history with --aliases)."""
    workspace = workspace_from(ctx)
    if aliases:
        events = workspace.alias_history(name)
        if json_out:
            print_json([event.to_dict() for event in events])
            return
        table = Table(title=f"alias history of {name}", title_justify="left")
        for column in ("when", "alias", "action", "from", "to", "who", "why"):
            table.add_column(column)
        for event in events:
            table.add_row(
                event.at.strftime("%Y-%m-%d %H:%M:%S"),
                event.alias,
                event.action,
                "-" if event.from_version is None else str(event.from_version),
                "-" if event.to_version is None else str(event.to_version),
                event.actor,
                event.reason,
            )
        console.print(table)
        return
    versions = workspace.log(name)
    if json_out:
        print_json([version.to_dict() for version in versions])
    else:
        console.print(_versions_table(versions, f"{name}: {len(versions)} version(s)"))


def show(
    ctx: typer.Context,
    ref: str = typer.Argument(..., help="name, name@3, name@champion"),
    json_out: bool = JsonOption,
) -> None:
    """One version: provenance, parents, children, aliases, tests."""
    from lineage.api.show import describe_version

    workspace = workspace_from(ctx)
    info = describe_version(workspace, ref)
    if json_out:
        print_json(info)
        return
    console.print(f"[bold]{info['ref']}[/bold]  {' '.join(info['aliases'])}")
    for key in (
        "kind",
        "recipe_id",
        "data_fingerprint",
        "code_version",
        "image_digest",
        "author",
        "created_at",
        "message",
        "manifest_id",
    ):
        value = info.get(key)
        if value not in (None, "", {}):
            console.print(f"  {key:17} {value}")
    if info["recipe_params"]:
        console.print(f"  {'recipe_params':17} {info['recipe_params']}")
    if info.get("approximate"):
        bound = info["lossy"]["max_abs_error"]
        console.print(f"  {'weights':17} approximate (stored in lossy mode, |error| <= {bound:g})")
    elif (info.get("extra") or {}).get("lossy"):
        console.print(f"  {'weights':17} exact (lossy requested, not kept)")
    for link in info["parents"]:
        how = "previous version" if link["edge_type"] == "versioning" else link["kind"]
        console.print(f"  parent           {link['ref']} ({how})")
    for child in info["children"]:
        console.print(f"  child            {child}")
    for test in info.get("tests", []):
        origin = "" if test["declared_on"] == info["model"] else f" (from {test['declared_on']})"
        result = test.get("latest")
        if result is None:
            status = "not run"
        else:
            status = "pass" if result["passed"] else "FAIL"
            if result.get("value") is not None:
                status += f" ({result['metric']}={result['value']:.4g})"
        console.print(f"  test             {test['name']} [{test['kind']}]{origin}: {status}")


def descendants(
    ctx: typer.Context,
    ref: str = typer.Argument(...),
    all_versions: bool = typer.Option(False, "--all-versions", help="Follow versioning edges too."),
    json_out: bool = JsonOption,
) -> None:
    """Everything derived from REF, in topological order (parents first)."""
    workspace = workspace_from(ctx)
    versions = workspace.descendants(ref, include_versions=all_versions)
    if json_out:
        print_json([version.to_dict() for version in versions])
    else:
        for version in versions:
            console.print(_version_line(version))
        if not versions:
            console.print(f"nothing is derived from {ref}")


def ancestors(
    ctx: typer.Context,
    ref: str = typer.Argument(...),
    all_versions: bool = typer.Option(False, "--all-versions"),
    json_out: bool = JsonOption,
) -> None:
    """Everything REF was derived from, oldest first."""
    workspace = workspace_from(ctx)
    versions = workspace.ancestors(ref, include_versions=all_versions)
    if json_out:
        print_json([version.to_dict() for version in versions])
    else:
        for version in versions:
            console.print(_version_line(version))
        if not versions:
            console.print(f"{ref} has no ancestors")


def path(
    ctx: typer.Context,
    source: str = typer.Argument(...),
    target: str = typer.Argument(...),
    json_out: bool = JsonOption,
) -> None:
    """The chain of derivations and versions from SOURCE down to TARGET."""
    workspace = workspace_from(ctx)
    found = workspace.path(source, target)
    if json_out:
        print_json(None if found is None else [version.ref for version in found])
    elif found is None:
        console.print(f"no path from {source} to {target}")
    else:
        console.print(" → ".join(version.ref for version in found))


def graph(
    ctx: typer.Context,
    names: list[str] = typer.Argument(None, help="Only these models' families."),
    fmt: str = typer.Option("text", "--format", "-f", help="text|mermaid|dot|html|json"),
    output: Path = typer.Option(None, "--output", "-o", help="Write to a file."),
    all_versions: bool = typer.Option(
        False, "--all-versions", "-a", help="Every version and the next-version edges."
    ),
    json_out: bool = JsonOption,
) -> None:
    """The family tree: each model's latest version, what it was derived from, aliases."""
    from lineage.render import RENDERERS, GraphView

    if json_out:
        fmt = "json"
    if fmt not in GRAPH_FORMATS:
        raise UsageError(f"unknown format {fmt!r}; use one of {', '.join(GRAPH_FORMATS)}")
    workspace = workspace_from(ctx)
    if fmt == "html":  # the lineage ui app as one file: panels, tests, cascades included
        from lineage.ui.export import export_html

        rendered = export_html(workspace, names or None, all_versions=all_versions)
    else:
        view = GraphView.from_dict(workspace.graph_data(names or None, all_versions=all_versions))
        rendered = RENDERERS[fmt](view)
    if output is not None:
        output.write_text(rendered + "\n")
        if not json_out:
            console.print(f"Wrote {fmt} graph to {output}")
    else:
        typer.echo(rendered)


def checkout(
    ctx: typer.Context,
    ref: str = typer.Argument(...),
    directory: Path = typer.Argument(..., help="Output directory (must be empty or absent)."),
    force: bool = typer.Option(False, "--force", help="Replace a non-empty directory."),
    json_out: bool = JsonOption,
) -> None:
    """Write a version's weights as a Hugging Face directory, bit-exactly (approximately,
    with a warning, for a version stored with --lossy)."""
    workspace = workspace_from(ctx)
    version = workspace.resolve(ref)
    from lineage.api.lossy import approximate_warning_silenced

    manifest = workspace.store.get_manifest(version.manifest_id)

    # the store logs its own warning for an approximate version; the CLI says it once
    with (
        approximate_warning_silenced(),
        byte_progress(f"checking out {version.ref}", enabled=not json_out) as progress,
    ):
        target = workspace.checkout(version.ref, directory, progress=progress, force=force)
    if manifest.approximate:
        assert manifest.lossy is not None
        sys.stderr.write(
            f"warning: {version.ref} was stored in lossy mode: its weights are approximate "
            f"(|error| <= {manifest.lossy['max_abs_error']:g})\n"
        )
    if json_out:
        print_json({"ref": version.ref, "path": str(target), "approximate": manifest.approximate})
    else:
        console.print(f"Checked out {version.ref} to {target}")


def models(ctx: typer.Context, json_out: bool = JsonOption) -> None:
    """Every model with its latest version and aliases."""
    workspace = workspace_from(ctx)
    found = workspace.models()
    if json_out:
        print_json([model.to_dict() for model in found])
        return
    table = Table(title=f"{len(found)} model(s)", title_justify="left")
    for column in ("model", "latest", "aliases", "promotion"):
        table.add_column(column)
    for model in found:
        policy = (
            "approval" if model.require_approval else ("auto" if model.auto_promote else "manual")
        )
        table.add_row(
            model.name,
            str(model.latest or "-"),
            ", ".join(f"{alias}={number}" for alias, number in model.aliases.items()),
            policy,
        )
    console.print(table)


def search(
    ctx: typer.Context,
    kind: str = typer.Option(None, "--kind"),
    tag: str = typer.Option(None, "--tag"),
    recipe: str = typer.Option(None, "--recipe"),
    latest: bool = typer.Option(False, "--latest", help="Only each model's latest version."),
    json_out: bool = JsonOption,
) -> None:
    """Find versions by derivation kind, tag or recipe."""
    workspace = workspace_from(ctx)
    found = workspace.search(kind=kind, tag=tag, recipe=recipe, latest_only=latest)
    if json_out:
        print_json([version.to_dict() for version in found])
    else:
        for version in found:
            console.print(_version_line(version))


def link(
    ctx: typer.Context,
    child: str = typer.Argument(...),
    parent: str = typer.Argument(...),
    kind: str = typer.Option("other", "--kind", "-k"),
    json_out: bool = JsonOption,
) -> None:
    """Record that existing version CHILD was derived from PARENT (refuses cycles)."""
    workspace = workspace_from(ctx)
    version = workspace.link(child, parent, kind=kind)
    if json_out:
        print_json(version.to_dict())
    else:
        console.print(f"Linked {_version_line(version)}")


def alias(
    ctx: typer.Context,
    ref: str = typer.Argument(..., help="Version the alias should point to."),
    name: str = typer.Argument(..., help="Alias, e.g. champion, candidate, staging."),
    reason: str = typer.Option("", "--reason"),
    json_out: bool = JsonOption,
) -> None:
    """Point an alias of REF's model at REF (recorded in the alias history)."""
    workspace = workspace_from(ctx)
    event = workspace.set_alias(ref, name, reason=reason)
    if json_out:
        print_json(event.to_dict())
    else:
        console.print(f"{event.model}@{name} → {event.model}@{event.to_version}")


def register(app: typer.Typer) -> None:
    app.command()(init)
    app.command()(add)
    app.command()(commit)
    app.command()(log)
    app.command()(show)
    app.command()(descendants)
    app.command()(ancestors)
    app.command()(path)
    app.command()(graph)
    app.command()(checkout)
    app.command()(models)
    app.command()(search)
    app.command()(link)
    app.command()(alias)
