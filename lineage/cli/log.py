"""Read commands over versions: `lineage log`, `show`, `models`, `search`."""

from __future__ import annotations

import typer

from lineage.cli.complete import complete_model, complete_ref
from lineage.cli.output import (
    KIND_HELP,
    JsonOption,
    console,
    plain_table,
    print_json,
    say,
    version_line,
    workspace_from,
)
from lineage.records import Kind, VersionInfo


def _versions_table(versions: list[VersionInfo], title: str) -> object:
    return plain_table(
        title,
        ["version", "kind", "parents", "aliases", "recipe", "created", "message"],
        [
            [
                v.ref,
                v.kind or "-",
                ", ".join(link.ref for link in v.derivation_parents) or "-",
                ", ".join(v.aliases),
                v.recipe_id or "-",
                v.created_at.strftime("%Y-%m-%d %H:%M"),
                v.message,
            ]
            for v in versions
        ],
    )


def log(
    ctx: typer.Context,
    name: str = typer.Argument(..., metavar="MODEL", autocompletion=complete_model),
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
        rows = [
            [
                e.at.strftime("%Y-%m-%d %H:%M:%S"),
                e.alias,
                e.action,
                "-" if e.from_version is None else e.from_version,
                "-" if e.to_version is None else e.to_version,
                e.actor,
                e.reason,
            ]
            for e in events
        ]
        columns = ["when", "alias", "action", "from", "to", "who", "why"]
        console.print(plain_table(f"alias history of {name}", columns, rows))
        return
    versions = workspace.log(name)
    if json_out:
        print_json([version.to_dict() for version in versions])
    else:
        console.print(_versions_table(versions, f"{name}: {len(versions)} version(s)"))


SHOWN_FIELDS = (
    "kind",
    "recipe_id",
    "data_fingerprint",
    "code_version",
    "image_digest",
    "author",
    "created_at",
    "message",
    "manifest_id",
)


def show(
    ctx: typer.Context,
    ref: str = typer.Argument(
        ..., metavar="REF", autocompletion=complete_ref, help="name, name@3, name@champion"
    ),
    json_out: bool = JsonOption,
) -> None:
    """One version: provenance, parents, children, aliases, tests."""
    from lineage.ops.show import describe_version

    info = describe_version(workspace_from(ctx), ref)
    if json_out:
        print_json(info)
        return
    say(f"{info['ref']}  {' '.join(info['aliases'])}".rstrip(), style="bold")
    for key in SHOWN_FIELDS:
        value = info.get(key)
        if value not in (None, "", {}):
            say(f"  {key:17} {value}")
    if info["recipe_params"]:
        say(f"  {'recipe_params':17} {info['recipe_params']}")
    if info.get("approximate"):
        bound = info["lossy"]["max_abs_error"]
        say(f"  {'weights':17} approximate (stored in lossy mode, |error| <= {bound:g})")
    elif (info.get("extra") or {}).get("lossy"):
        say(f"  {'weights':17} exact (lossy requested, not kept)")
    for link in info["parents"]:
        how = "previous version" if link["edge_type"] == "versioning" else link["kind"]
        say(f"  parent           {link['ref']} ({how})")
    for child in info["children"]:
        say(f"  child            {child}")
    for test in info.get("tests", []):
        origin = "" if test["declared_on"] == info["model"] else f" (from {test['declared_on']})"
        result = test.get("latest")
        if result is None:
            status = "not run"
        else:
            status = "pass" if result["passed"] else "FAIL"
            if result.get("value") is not None:
                status += f" ({result['metric']}={result['value']:.4g})"
        say(f"  test             {test['name']} [{test['kind']}]{origin}: {status}")


def models(ctx: typer.Context, json_out: bool = JsonOption) -> None:
    """Every model with its latest version and aliases."""
    found = workspace_from(ctx).models()
    if json_out:
        print_json([model.to_dict() for model in found])
        return
    rows = [
        [
            m.name,
            m.latest or "-",
            ", ".join(f"{alias}={number}" for alias, number in m.aliases.items()),
            "approval" if m.require_approval else ("auto" if m.auto_promote else "manual"),
        ]
        for m in found
    ]
    console.print(
        plain_table(f"{len(found)} model(s)", ["model", "latest", "aliases", "promotion"], rows)
    )


def search(
    ctx: typer.Context,
    kind: Kind = typer.Option(None, "--kind", metavar="KIND", help=KIND_HELP),
    tag: str = typer.Option(None, "--tag", metavar="TAG"),
    recipe: str = typer.Option(None, "--recipe", metavar="ID"),
    latest: bool = typer.Option(False, "--latest", help="Only each model's latest version."),
    json_out: bool = JsonOption,
) -> None:
    """Find versions by derivation kind, tag or recipe."""
    found = workspace_from(ctx).search(kind=kind, tag=tag, recipe=recipe, latest_only=latest)
    if json_out:
        print_json([version.to_dict() for version in found])
    else:
        for version in found:
            say(version_line(version))


def register(app: typer.Typer) -> None:
    app.command()(log)
    app.command()(show)
    app.command()(models)
    app.command()(search)
