"""`lineage test`, `bisect` and `tests declare|disable|remove|list`: model tests."""

from __future__ import annotations

import typer

from lineage.cli.complete import complete_model, complete_ref
from lineage.cli.output import JsonOption, parse_params, print_json, say, workspace_from
from lineage.errors import TestsFailedError

tests_app = typer.Typer(help="Declare, override and opt out of model tests.", no_args_is_help=True)


def test(
    ctx: typer.Context,
    refs: list[str] = typer.Argument(
        ..., metavar="REF", autocompletion=complete_ref, help="Version(s) to test."
    ),
    only: list[str] = typer.Option(
        [], "--only", metavar="TEST", help="Run only this test (repeatable)."
    ),
    data: str = typer.Option(
        None, "--data", metavar="DATA", help="Data set for tests that name none."
    ),
    json_out: bool = JsonOption,
) -> None:
    """Run every test that applies to each REF, store the results; exit 12 if one fails."""
    from lineage.ops.tests import run_tests

    workspace = workspace_from(ctx)
    reports = [run_tests(workspace, ref, data=data, only=only or None) for ref in refs]
    if json_out:
        dicts = [report.to_dict() for report in reports]
        print_json(dicts[0] if len(dicts) == 1 else dicts)
    else:
        for report in reports:
            if len(reports) > 1:
                say(report.ref, style="bold")
            if not report.results:
                say(f"{report.ref} has no tests")
            for r in report.results:
                value = "-" if r.value is None else f"{r.value:.4g}"
                bound = "-" if r.threshold is None else f"{r.threshold:.4g}"
                say(
                    f"{'pass' if r.passed else 'FAIL'} {r.name:<20} {r.metric}={value} "
                    f"(threshold {bound}) from {report.declared_on.get(r.name, '?')} "
                    f"[{r.duration_s:.1f}s]",
                    style="green" if r.passed else "red",
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
    ref: str = typer.Argument(
        ..., metavar="REF", autocompletion=complete_ref, help="Version that fails it."
    ),
    json_out: bool = JsonOption,
) -> None:
    """Find the first version along REF's provenance chain where TEST fails."""
    from lineage.ops.tests import bisect as bisect_chain

    result = bisect_chain(workspace_from(ctx), test_name, ref)
    if json_out:
        print_json(result.to_dict())
        return
    if result.first_failing is None:
        say(f"{test_name} passes at {result.ref}: nothing to bisect")
        return
    say(f"first failing: {result.first_failing} (last passing: {result.last_passing})")
    for ref_, info in result.checked.items():
        say(f"  {ref_}: {'pass' if info['passed'] else 'FAIL'} ({info['source']})")


@tests_app.command("declare")
def tests_declare(
    ctx: typer.Context,
    model: str = typer.Argument(..., metavar="MODEL", autocompletion=complete_model),
    name: str = typer.Argument(..., metavar="TEST"),
    kind: str = typer.Option(
        ...,
        "--kind",
        "-k",
        metavar="KIND",
        help="accuracy|f1|no_regression|invariance|size|latency|user",
    ),
    param: list[str] = typer.Option(
        [], "--param", metavar="KEY=VALUE", help="Test parameter (repeatable)."
    ),
    json_out: bool = JsonOption,
) -> None:
    """Declare test NAME on MODEL (overrides an inherited test of that name)."""
    from lineage.ops.tests import declare_model_test

    decl = declare_model_test(workspace_from(ctx), model, name, kind, parse_params(param))
    if json_out:
        print_json(decl.to_dict())
    else:
        say(f"Declared {decl.name} ({decl.kind}) on {model}")


@tests_app.command("disable")
def tests_disable(
    ctx: typer.Context,
    model: str = typer.Argument(..., metavar="MODEL", autocompletion=complete_model),
    name: str = typer.Argument(..., metavar="TEST"),
) -> None:
    """Opt MODEL (and its descendants) out of the inherited test NAME."""
    from lineage.ops.tests import disable_test

    disable_test(workspace_from(ctx), model, name)
    say(f"{model} opts out of {name}")


@tests_app.command("remove")
def tests_remove(
    ctx: typer.Context,
    model: str = typer.Argument(..., metavar="MODEL", autocompletion=complete_model),
    name: str = typer.Argument(..., metavar="TEST"),
) -> None:
    """Remove MODEL's own declaration (or opt-out) of NAME."""
    from lineage.ops.tests import remove_test

    remove_test(workspace_from(ctx), model, name)
    say(f"Removed {name} from {model}")


@tests_app.command("list")
def tests_list(
    ctx: typer.Context,
    ref: str = typer.Argument(..., metavar="REF", autocompletion=complete_ref),
    json_out: bool = JsonOption,
) -> None:
    """Tests that apply to REF, where each comes from, and its latest result."""
    from lineage.ops.tests import describe_tests

    rows = describe_tests(workspace_from(ctx), ref)
    if json_out:
        print_json(rows)
        return
    for row in rows:
        latest = row["latest"]
        state = "not run" if latest is None else ("pass" if latest["passed"] else "FAIL")
        source = f"inherited from {row['declared_on']}" if row["inherited"] else "own"
        say(f"{row['name']:<20} {row['kind']:<13} {source:<28} {state}")


def register(app: typer.Typer) -> None:
    app.add_typer(tests_app, name="tests")
    app.command()(test)
    app.command()(bisect)
