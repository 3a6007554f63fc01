"""Derivable versions: a cheap deterministic recipe's output is stored as the recipe
plus content hashes, and checkout re-makes it bit-exactly."""

from __future__ import annotations

from pathlib import Path

from lineage.bundled import make_tiny_model
from lineage.formats import CHECKOUT_MARKER
from lineage.ops.add import add, commit
from lineage.ops.checkout import checkout
from lineage.ops.derive import add_from_recipe, rederive
from lineage.ops.storage import store_stats, store_verify


def _files(root: Path) -> list[Path]:
    """The model's files (a checkout's own marker aside)."""
    return sorted(
        p.relative_to(root) for p in root.rglob("*") if p.is_file() and p.name != CHECKOUT_MARKER
    )


def _same_tree(a: Path, b: Path) -> None:
    files_a, files_b = _files(a), _files(b)
    assert files_a == files_b
    for rel in files_a:
        assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel


def test_quantized_and_merged_versions_are_stored_as_recipes(sqlite_workspace, tmp_path) -> None:
    ws = sqlite_workspace
    add(ws, "base", source=make_tiny_model(tmp_path / "base", num_labels=2, seed=0))
    add(ws, "other", source=make_tiny_model(tmp_path / "other", num_labels=2, seed=1))
    q = add_from_recipe(
        ws, "q", recipe_id="quantize", parents=["base"], params={"dtype": "int8", "min_numel": 0}
    )
    soup = add_from_recipe(ws, "soup", recipe_id="merge", parents=["base@1", "other@1"])
    for version in (q, soup):
        manifest = ws.manifest(version.ref)
        assert manifest.derivation is not None, version.ref
        assert manifest.derivation["recipe"] == version.recipe_id
    report = store_stats(ws, ["q@1", "soup@1"]).to_dict()
    assert all(v["derived"] for v in report["versions"].values())
    # Only the side files (tokenizer, config) take room; tensors are the recipe.
    assert report["total"]["ratio"] > 10, report

    # Checkout re-runs the recipe and verifies the bytes: same files as a fresh run.
    out = checkout(ws, "q@1", tmp_path / "q-out")
    from lineage.recipes import get_recipe

    recipe = get_recipe("quantize")
    fresh = tmp_path / "q-fresh"
    recipe.derive(
        [checkout(ws, "base@1", tmp_path / "b")],
        recipe.validate_params({"dtype": "int8", "min_numel": 0}),
        None,
        fresh,
    )
    _same_tree(out, fresh)
    # A derivable version built on a derivable version checks out too.
    qq = add_from_recipe(
        ws, "soup-half", recipe_id="quantize", parents=["soup@1"], params={"dtype": "float16"}
    )
    assert ws.manifest(qq.ref).derivation is not None
    assert (checkout(ws, qq.ref, tmp_path / "qq") / "model.safetensors").stat().st_size > 0
    assert store_verify(ws).ok


def test_rederived_version_on_new_parent_is_derivable(sqlite_workspace, tmp_path) -> None:
    ws = sqlite_workspace
    add(ws, "base", source=make_tiny_model(tmp_path / "b1", num_labels=2, seed=0))
    add_from_recipe(
        ws, "half", recipe_id="quantize", parents=["base@1"], params={"dtype": "float16"}
    )
    commit(ws, "base", source=make_tiny_model(tmp_path / "b2", num_labels=2, seed=5))
    new = rederive(ws, "half@1", ["base@2"])
    assert new.ref == "half@2"
    assert [p.ref for p in new.derivation_parents] == ["base@2"]
    assert ws.manifest("half@2").derivation is not None
    out = checkout(ws, "half@2", tmp_path / "out")
    assert (out / "config.json").exists()
