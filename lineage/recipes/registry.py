"""Finding recipes by id: built-ins, registered ones, `module:function`, entry points.

Only references are ever stored (the recipe id in a version's provenance), never
code: re-deriving imports the same reference again. A user recipe is validated
when it is registered or first resolved — importable, and either a `Recipe` or a
function whose signature accepts `(parents, params, data, out_dir[, progress])`.

>>> from lineage.recipes import get_recipe, list_recipes
>>> [r.id for r in list_recipes()][:3]
['distill', 'finetune', 'lora']
>>> get_recipe("no-such-recipe")  # doctest: +ELLIPSIS
Traceback (most recent call last):
lineage.errors.RecipeError: unknown recipe 'no-such-recipe' (built-in: distill, ...
"""

from __future__ import annotations

import importlib
import inspect
import re
from collections.abc import Callable
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from lineage.datasets import TextDataset
from lineage.errors import RecipeError
from lineage.recipes.base import KINDS, DeriveFunction, Recipe
from lineage.recipes.training import TrainingProgress
from lineage.records import is_kind

ENTRY_POINT_GROUP = "lineage.recipes"
_REF_RE = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")
_REQUIRED_ARGS = ("parents", "params", "data", "out_dir")

_registered: dict[str, Recipe] = {}


class OpenParams(BaseModel):
    """Params of a plain-function user recipe without its own `Params`: any JSON keys."""

    model_config = ConfigDict(extra="allow", frozen=True)


def _builtins() -> dict[str, Recipe]:
    from lineage.recipes.builtin import BUILTIN_RECIPES

    return {r.id: r for r in BUILTIN_RECIPES}


def check_signature(fn: Any, ref: str) -> None:
    """`RecipeError` unless `fn` can be called as `fn(parents, params, data, out_dir)`."""
    if not callable(fn):
        raise RecipeError(f"recipe {ref!r} is not callable")
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        raise RecipeError(f"recipe {ref!r}: cannot read its signature") from None
    try:
        sig.bind(*_REQUIRED_ARGS)
    except TypeError as exc:
        raise RecipeError(
            f"recipe {ref!r} has signature {sig}; expected "
            f"(parents, params, data, out_dir, progress=None): {exc}"
        ) from None


def recipe_from_object(obj: Any, ref: str) -> Recipe:
    """Turn what a reference points at into a validated `Recipe`.

    A `Recipe` is taken as is (its id becomes `ref`, the name provenance stores).
    A function may carry `Params` (a pydantic model), `kind` and `deterministic`
    attributes; it gets permissive params, kind `other` and `deterministic=False`
    otherwise.
    """
    if isinstance(obj, Recipe):
        check_signature(obj.run, ref)
        return Recipe(**{**obj.__dict__, "id": ref})
    check_signature(obj, ref)
    params = getattr(obj, "Params", OpenParams)
    if not (isinstance(params, type) and issubclass(params, BaseModel)):
        raise RecipeError(f"recipe {ref!r}: its Params must be a pydantic model class")
    kind = getattr(obj, "kind", "other")
    if not is_kind(kind):
        raise RecipeError(f"recipe {ref!r}: kind {kind!r} is not one of {', '.join(KINDS)}")
    return Recipe(
        id=ref,
        kind=kind,
        Params=params,
        run=_accepting_progress(obj),
        description=(obj.__doc__ or "").strip().split("\n")[0],
        deterministic=bool(getattr(obj, "deterministic", False)),
        needs_data=bool(getattr(obj, "needs_data", False)),
        min_parents=int(getattr(obj, "min_parents", 1)),
        max_parents=getattr(obj, "max_parents", None),
    )


def _accepting_progress(fn: Callable[..., Any]) -> DeriveFunction:
    # User functions may omit `progress`; pass it only to those that take it.
    params = inspect.signature(fn).parameters
    if "progress" in params or any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return fn

    def call(
        parents: list[Path],
        params: Any,
        data: TextDataset | None,
        out_dir: Path,
        progress: TrainingProgress | None = None,
    ) -> Any:
        return fn(parents, params, data, out_dir)

    return call


def load_reference(ref: str) -> Recipe:
    """Import `package.module:attribute` and validate it as a recipe."""
    if not _REF_RE.match(ref):
        raise RecipeError(f"invalid recipe reference {ref!r}: use package.module:function")
    module_name, attr = ref.split(":", 1)
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise RecipeError(f"recipe {ref!r}: cannot import module {module_name!r}: {exc}") from None
    obj: Any = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise RecipeError(f"recipe {ref!r}: module {module_name!r} has no {attr!r}") from None
    return recipe_from_object(obj, ref)


def _from_entry_point(name: str) -> Recipe | None:
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name == name:
            try:
                obj = ep.load()
            except Exception as exc:
                raise RecipeError(
                    f"recipe {name!r} (entry point {ep.value}) failed to load: {exc}"
                ) from None
            return recipe_from_object(obj, name)
    return None


def register_recipe(target: Recipe | str, *, id: str | None = None) -> Recipe:
    """Register a `Recipe` or a `module:function` reference under `id`; validate now.

    Registration lasts for the process; for a persistent name, publish an entry
    point in the `lineage.recipes` group or use the reference itself as the id.
    """
    recipe = (
        load_reference(target) if isinstance(target, str) else recipe_from_object(target, target.id)
    )
    rid = id or recipe.id
    if rid in _builtins():
        raise RecipeError(f"recipe id {rid!r} is taken by a built-in recipe")
    recipe = Recipe(**{**recipe.__dict__, "id": rid})
    _registered[rid] = recipe
    return recipe


def get_recipe(recipe_id: str) -> Recipe:
    """The recipe named `recipe_id`: built-in, registered, `module:function` or entry point."""
    builtins = _builtins()
    if recipe_id in builtins:
        return builtins[recipe_id]
    if recipe_id in _registered:
        return _registered[recipe_id]
    if ":" in recipe_id:
        return load_reference(recipe_id)
    found = _from_entry_point(recipe_id)
    if found is not None:
        return found
    raise RecipeError(
        f"unknown recipe {recipe_id!r} (built-in: {', '.join(sorted(builtins))}; "
        "or give module:function)"
    )


def list_recipes() -> list[Recipe]:
    """Built-in, registered and entry-point recipes, sorted by id (entry points that fail
    to load are left out rather than breaking the listing)."""
    found = {**_builtins(), **_registered}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name not in found:
            try:
                found[ep.name] = recipe_from_object(ep.load(), ep.name)
            except Exception:  # a broken plugin must not hide the others
                continue
    return [found[k] for k in sorted(found)]
