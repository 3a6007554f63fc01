"""Finding recipes, validating params and user recipes."""

from __future__ import annotations

import sys
import textwrap

import pytest

from lineage.errors import RecipeError
from lineage.recipes import get_recipe, list_recipes, register_recipe

USER_MODULE = '''
from pathlib import Path
from pydantic import BaseModel

class Params(BaseModel):
    factor: float = 2.0

def copy_parent(parents, params, data, out_dir, progress=None):
    """Copy the parent's files (a recipe that trains nothing)."""
    for f in Path(parents[0]).iterdir():
        (out_dir / f.name).write_bytes(f.read_bytes())
    return {"factor": params.factor}

copy_parent.Params = Params
copy_parent.kind = "other"
copy_parent.deterministic = True

def wrong_signature(model, out):
    return None

not_callable = 3
'''


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    (tmp_path / "my_user_recipes.py").write_text(textwrap.dedent(USER_MODULE))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "my_user_recipes"
    sys.modules.pop("my_user_recipes", None)


def test_builtins_are_listed():
    ids = [r.id for r in list_recipes()]
    assert {"finetune", "lora", "distill", "quantize", "prune", "merge"} <= set(ids)
    kinds = {r.id: r.kind for r in list_recipes()}
    assert kinds["lora"] == "adapter" and kinds["merge"] == "merge"


def test_unknown_recipe():
    with pytest.raises(RecipeError, match="unknown recipe 'fintune'"):
        get_recipe("fintune")


@pytest.mark.parametrize(
    ("recipe", "params", "message"),
    [
        ("finetune", {"steps": 0}, "steps: Input should be greater than 0"),
        ("finetune", {"steps": "many"}, "steps: Input should be a valid integer"),
        ("finetune", {"stepz": 3}, "stepz: unknown parameter"),
        ("finetune", {"mode": "half"}, "mode: Input should be 'full' or 'head'"),
        ("quantize", {"dtype": "int4"}, "dtype: Input should be"),
        ("prune", {"sparsity": 1.5}, "sparsity: Input should be less than 1"),
        ("merge", {"weights": [0, 0]}, "weights: Value error, must not all be zero"),
        ("lora", {"r": -1}, "r: Input should be greater than 0"),
    ],
)
def test_invalid_params_name_the_field(recipe, params, message):
    with pytest.raises(RecipeError, match=f"recipe '{recipe}': invalid params: .*{message}"):
        get_recipe(recipe).validate_params(params)


def test_user_recipe_by_reference(user_module, tiny_classifier, tmp_path):
    recipe = get_recipe(f"{user_module}:copy_parent")
    assert recipe.kind == "other" and recipe.deterministic
    result = recipe.derive([tiny_classifier], {"factor": 3}, None, tmp_path / "out")
    assert result.metrics == {"factor": 3.0}
    assert "model.safetensors" in result.files
    with pytest.raises(RecipeError, match="factor: Input should be a valid number"):
        recipe.validate_params({"factor": "x"})


def test_register_user_recipe(user_module):
    r = register_recipe(f"{user_module}:copy_parent", id="copy-parent")
    assert get_recipe("copy-parent") is r
    with pytest.raises(RecipeError, match="taken by a built-in"):
        register_recipe(f"{user_module}:copy_parent", id="finetune")


@pytest.mark.parametrize(
    ("ref", "message"),
    [
        ("no_such_module_xyz:derive", "cannot import module"),
        ("my_user_recipes:missing", "has no 'missing'"),
        ("my_user_recipes:wrong_signature", "expected \\(parents, params, data, out_dir"),
        ("my_user_recipes:not_callable", "is not callable"),
        ("not a ref:", "invalid recipe reference"),
    ],
)
def test_bad_user_recipes_fail_at_registration(user_module, ref, message):
    with pytest.raises(RecipeError, match=message):
        register_recipe(ref)


def test_entry_point_recipe(user_module, tmp_path, monkeypatch):
    # A real (if minimal) installed distribution advertising an entry point.
    dist = tmp_path / "my_plugin-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: my-plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(
        f"[lineage.recipes]\ncopy-ep = {user_module}:copy_parent\n"
    )
    assert get_recipe("copy-ep").id == "copy-ep"
    assert "copy-ep" in [r.id for r in list_recipes()]
