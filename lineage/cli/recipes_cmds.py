"""Commands over recipes and model tests: recipes list/show, derive, test, bisect,
tests declare/disable/remove/list. Each parses, calls one API function, prints."""

from __future__ import annotations

import typer

from lineage.cli.output import JsonOption, console, parse_params, print_json, workspace_from
from lineage.errors import TestsFailedError

recipes_app = typer.Typer(help="Built-in and user recipes.", no_args_is_help=True)
tests_app = typer.Typer(help="Declare, override and opt out of model tests.", no_args_is_help=True)


@recipes_app.command("list")
def recipes_list(json_out: bool = JsonOption) -> None:
    """List the recipes lineage can run."""
    from lineage.recipes import list_recipes

    rows = [
        {"id": r.id, "kind": r.kind, "deterministic": r.deterministic, "description": r.description}
        for r in list_recipes()
    ]
    if json_out:
        print_json(rows)
        return
    for row in rows:
        console.print(f"{row['id']:<12} {row['kind']:<9} {row['description']}")


@recipes_app.command("show")
def recipes_show(
    recipe_id: str = typer.Argument(..., help="Recipe id or module:function."),
    json_out: bool = JsonOption,
) -> None:
    """Show a recipe's parameters (JSON schema with defaults)."""
    from lineage.recipes import get_recipe

    recipe = get_recipe(recipe_id)
    data = {
        "id": recipe.id,
        "kind": recipe.kind,
        "description": recipe.description,
        "deterministic": recipe.deterministic,
        "params": recipe.params_schema(),
    }
    if json_out:
        print_json(data)
        return
    console.print(f"{recipe.id} ({recipe.kind}): {recipe.description}")
    for name, spec in data["params"].get("properties", {}).items():
        console.print(
            f"  {name:<16} default={spec.get('default')!r:<12} {spec.get('description', '')}"
        )


def derive(
    ctx: typer.Context,
    ref: str = typer.Argument(..., help="Recipe-made version to re-derive, e.g. sentiment@2."),
    on: list[str] = typer.Option([], "--on", help="New parent reference (repeatable)."),
    runner: str = typer.Option(None, "--runner", help="process|docker (default: in-process)."),
    message: str = typer.Option("", "--message", "-m"),
    json_out: bool = JsonOption,
) -> None:
    """Re-run REF's recipe on new parents; the result is the next version of REF's model."""
    from lineage.api.derive import rederive

    version = rederive(
        workspace_from(ctx), ref, on, runner=runner, message=message, show_progress=not json_out
    )
    if json_out:
        print_json(version.to_dict())
    else:
        console.print(
            f"Derived {version.ref} from {', '.join(p.ref for p in version.derivation_parents)}"
        )


def test(
    ctx: typer.Context,
    refs: list[str] = typer.Argument(..., help="Version(s) to test."),
    only: list[str] = typer.Option([], "--only", help="Run only this test (repeatable)."),
    data: str = typer.Option(None, "--data", help="Data set for tests that name none."),
    json_out: bool = JsonOption,
) -> None:
    """Run every test that applies to each REF, store the results; exit 12 if one fails."""
    from lineage.api.testing import run_tests

    workspace = workspace_from(ctx)
    reports = [run_tests(workspace, ref, data=data, only=only or None) for ref in refs]
    if json_out:
        dicts = [report.to_dict() for report in reports]
        print_json(dicts[0] if len(dicts) == 1 else dicts)
    else:
        for report in reports:
            if len(reports) > 1:
                console.print(f"[bold]{report.ref}[/bold]")
            if not report.results:
                console.print(f"{report.ref} has no tests")
            for r in report.results:
                mark = "[green]pass[/green]" if r.passed else "[red]FAIL[/red]"
                value = "-" if r.value is None else f"{r.value:.4g}"
                bound = "-" if r.threshold is None else f"{r.threshold:.4g}"
                console.print(
                    f"{mark} {r.name:<20} {r.metric}={value} (threshold {bound}) "
                    f"from {report.declared_on.get(r.name, '?')} [{r.duration_s:.1f}s]"
                )
    failing = [report for report in reports if not report.passed]
    if failing:
        parts = [
            f"{report.ref} failed {sum(not r.passed for r in report.results)} test(s): "
            + ", ".join(r.name for r in report.results if not r.passed)
            for report in failing
        ]
        raise TestsFailedError("; ".join(parts))


def bisect(
    ctx: typer.Context,
    test_name: str = typer.Argument(..., metavar="TEST", help="Test name."),
    ref: str = typer.Argument(..., help="Version that fails it."),
    json_out: bool = JsonOption,
) -> None:
    """Find the first version along REF's provenance chain where TEST fails."""
    from lineage.api.testing import bisect as bisect_chain

    result = bisect_chain(workspace_from(ctx), test_name, ref)
    if json_out:
        print_json(result.to_dict())
        return
    if result.first_failing is None:
        console.print(f"{test_name} passes at {result.ref}: nothing to bisect")
        return
    console.print(f"first failing: {result.first_failing} (last passing: {result.last_passing})")
    for ref_, info in result.checked.items():
        console.print(f"  {ref_}: {'pass' if info['passed'] else 'FAIL'} ({info['source']})")


@tests_app.command("declare")
def tests_declare(
    ctx: typer.Context,
    model: str = typer.Argument(...),
    name: str = typer.Argument(...),
    kind: str = typer.Option(
        ..., "--kind", "-k", help="accuracy|f1|no_regression|invariance|size|latency|user"
    ),
    param: list[str] = typer.Option([], "--param", help="KEY=VALUE (repeatable)."),
    json_out: bool = JsonOption,
) -> None:
    """Declare test NAME on MODEL (overrides an inherited test of that name)."""
    from lineage.api.testing import declare_model_test

    decl = declare_model_test(workspace_from(ctx), model, name, kind, parse_params(param))
    if json_out:
        print_json(decl.to_dict())
    else:
        console.print(f"Declared {decl.name} ({decl.kind}) on {model}")


@tests_app.command("disable")
def tests_disable(
    ctx: typer.Context, model: str = typer.Argument(...), name: str = typer.Argument(...)
) -> None:
    """Opt MODEL (and its descendants) out of the inherited test NAME."""
    from lineage.api.testing import disable_test

    disable_test(workspace_from(ctx), model, name)
    console.print(f"{model} opts out of {name}")


@tests_app.command("remove")
def tests_remove(
    ctx: typer.Context, model: str = typer.Argument(...), name: str = typer.Argument(...)
) -> None:
    """Remove MODEL's own declaration (or opt-out) of NAME."""
    from lineage.api.testing import remove_test

    remove_test(workspace_from(ctx), model, name)
    console.print(f"Removed {name} from {model}")


@tests_app.command("list")
def tests_list(
    ctx: typer.Context, ref: str = typer.Argument(...), json_out: bool = JsonOption
) -> None:
    """Tests that apply to REF, where each comes from, and its latest result."""
    from lineage.api.testing import describe_tests

    rows = describe_tests(workspace_from(ctx), ref)
    if json_out:
        print_json(rows)
        return
    for row in rows:
        latest = row["latest"]
        state = "not run" if latest is None else ("pass" if latest["passed"] else "FAIL")
        source = f"inherited from {row['declared_on']}" if row["inherited"] else "own"
        console.print(f"{row['name']:<20} {row['kind']:<13} {source:<28} {state}")


def register(app: typer.Typer) -> None:
    app.add_typer(recipes_app, name="recipes")
    app.add_typer(tests_app, name="tests")
    app.command()(derive)
    app.command()(test)
    app.command()(bisect)
