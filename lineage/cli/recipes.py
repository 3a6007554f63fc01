"""`lineage recipes list|show`: the recipes lineage can run."""

from __future__ import annotations

import typer

from lineage.cli.output import JsonOption, print_json, say

recipes_app = typer.Typer(help="Built-in and user recipes.", no_args_is_help=True)


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
        say(f"{row['id']:<12} {row['kind']:<9} {row['description']}")


@recipes_app.command("show")
def recipes_show(
    recipe_id: str = typer.Argument(..., metavar="ID", help="Recipe id or module:function."),
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
    say(f"{recipe.id} ({recipe.kind}): {recipe.description}")
    schema = recipe.params_schema()
    for name, spec in schema.get("properties", {}).items():
        say(f"  {name:<16} default={spec.get('default')!r:<12} {spec.get('description', '')}")


def register(app: typer.Typer) -> None:
    app.add_typer(recipes_app, name="recipes")
