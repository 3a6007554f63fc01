"""Recipes: registered, typed, deterministic creation functions for derived models.

>>> from lineage.recipes import get_recipe
>>> recipe = get_recipe("finetune")
>>> params = recipe.validate_params({"steps": 30, "mode": "head"})
>>> # result = recipe.derive([parent_dir], params, "sentiment", out_dir)
>>> # result.metrics["val_accuracy"], result.loss_curve[-1]

Built-in ids: finetune, lora, distill, quantize, prune, merge. User recipes:
`get_recipe("my_pkg.recipes:my_derive")`, `register_recipe(...)`, or an entry point
in the `lineage.recipes` group.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lineage.recipes.base import KINDS, DeriveResult, Recipe, RecipeParams, recipe
    from lineage.recipes.registry import (
        ENTRY_POINT_GROUP,
        get_recipe,
        list_recipes,
        load_reference,
        register_recipe,
    )
    from lineage.recipes.training import TrainingProgress

# Exported names and their modules, imported on first use: the recipes need torch,
# but checkout-time helpers in this package (`stock`, `int8`) must not pull it in.
_EXPORTS = {
    "KINDS": "lineage.recipes.base",
    "DeriveResult": "lineage.recipes.base",
    "Recipe": "lineage.recipes.base",
    "RecipeParams": "lineage.recipes.base",
    "recipe": "lineage.recipes.base",
    "ENTRY_POINT_GROUP": "lineage.recipes.registry",
    "get_recipe": "lineage.recipes.registry",
    "list_recipes": "lineage.recipes.registry",
    "load_reference": "lineage.recipes.registry",
    "register_recipe": "lineage.recipes.registry",
    "TrainingProgress": "lineage.recipes.training",
}

__all__ = [
    "ENTRY_POINT_GROUP",
    "KINDS",
    "DeriveResult",
    "Recipe",
    "RecipeParams",
    "TrainingProgress",
    "get_recipe",
    "list_recipes",
    "load_reference",
    "recipe",
    "register_recipe",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'lineage.recipes' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value
