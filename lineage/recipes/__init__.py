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

from lineage.recipes.base import KINDS, DeriveResult, Recipe, RecipeParams, recipe
from lineage.recipes.registry import (
    ENTRY_POINT_GROUP,
    get_recipe,
    list_recipes,
    load_reference,
    register_recipe,
)
from lineage.recipes.training import TrainingProgress

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
