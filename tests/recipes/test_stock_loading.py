"""Every built-in recipe's output, checked out of a workspace, loads with the stock
Hugging Face API (Auto* classes, PEFT's AutoPeft*, offline) with no tensor left to
random initialisation, and predicts what lineage's own loader predicts on the stored
form. Also: the stored form stays available (`raw`), lineage's loader refuses
incomplete weights, and checkouts get ordinary permissions."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file, save_file

from lineage.errors import UsageError, WeightsError
from lineage.formats import CHECKOUT_MARKER
from lineage.ops.add import add
from lineage.ops.checkout import checkout
from lineage.ops.derive import add_from_recipe
from lineage.recipes.hf import inspect_model, load_for_inference
from lineage.recipes.stock import BASE_DIR, DEQUANTIZED_KEY
from lineage.testing import same_model_files
from lineage.workspace import Workspace

FAST = {"steps": 2, "batch_size": 8}
TEXTS = ["a lovely, moving film", "dull and far too long", "stocks fell sharply today"]
# (name, recipe, parents, params, data set): one version per kind of output.
RECIPES = [
    ("ft", "finetune", ["enc@1"], FAST, "sentiment"),
    ("adapter", "lora", ["enc@1"], FAST, "topic"),
    # On a parent whose head is for other labels (2 sentiment vs 4 topics).
    ("adapter-on-clf", "lora", ["clf@1"], FAST, "topic"),
    ("lora-merged", "lora", ["enc@1"], {**FAST, "merge": True}, "sentiment"),
    ("distilled", "distill", ["clf@1"], {**FAST, "layers": [1]}, "sentiment"),
    ("distilled-enc", "distill", ["enc@1"], {**FAST, "layers": [0]}, "sentiment"),
    ("int8", "quantize", ["clf@1"], {"dtype": "int8", "min_numel": 0}, None),
    ("fp16", "quantize", ["clf@1"], {"dtype": "float16"}, None),
    ("bf16", "quantize", ["clf@1"], {"dtype": "bfloat16"}, None),
    ("pruned", "prune", ["clf@1"], {"sparsity": 0.5}, None),
    ("soup", "merge", ["clf@1", "ft@1"], {}, None),
]
ADAPTERS = {"adapter", "adapter-on-clf"}
# Stock transformers computes in the dtype the weights are stored in; lineage in float32.
TOLERANCE = {"fp16": 5e-3, "bf16": 5e-2}


@pytest.fixture(scope="module")
def family(tmp_path_factory: pytest.TempPathFactory, tiny_encoder: Path, tiny_sentiment: Path):
    ws = Workspace.init(tmp_path_factory.mktemp("stock") / "ws")
    add(ws, "enc", source=tiny_encoder)
    add(ws, "clf", source=tiny_sentiment, parents=["enc@1"], kind="finetune")
    for name, recipe_id, parents, params, data in RECIPES:
        add_from_recipe(ws, name, recipe_id=recipe_id, parents=parents, params=params, data=data)
    yield ws
    ws.close()


@pytest.fixture
def quiet_hub(monkeypatch: pytest.MonkeyPatch) -> None:
    # What a user's offline machine has: any attempt to reach the Hub fails at once.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def _outputs(model: Any, tokenizer: Any) -> torch.Tensor:
    batch = tokenizer(TEXTS, padding=True, return_tensors="pt")
    with torch.no_grad():
        out = model.eval()(**batch)
    if getattr(out, "logits", None) is not None:
        return out.logits.float()
    return out.last_hidden_state.float()


def _lineage_outputs(ws: Workspace, ref: str, tmp: Path) -> torch.Tensor:
    """Lineage's loader on the stored form (adapter: on its parent, as tests run it)."""
    version = ws.resolve(ref)
    raw = checkout(ws, ref, tmp / "raw")
    base = None
    if (raw / "adapter_config.json").is_file():
        base = checkout(ws, version.derivation_parents[0].ref, tmp / "parent")
    model, tokenizer, _ = load_for_inference(raw, base)
    return _outputs(model, tokenizer)


def _stock_load(cls: Any, directory: Path) -> Any:
    model, loading = cls.from_pretrained(str(directory), output_loading_info=True)
    assert not loading["missing_keys"], f"random-initialised: {loading['missing_keys']}"
    assert not loading["unexpected_keys"], f"ignored: {loading['unexpected_keys']}"
    return model


@pytest.mark.parametrize("name", [name for name, *_ in RECIPES if name not in ADAPTERS])
def test_full_model_checkouts_load_with_auto_classes(
    family: Workspace, name: str, tmp_path: Path, quiet_hub: None
) -> None:
    from transformers import AutoModel, AutoModelForSequenceClassification, AutoTokenizer

    expected = _lineage_outputs(family, f"{name}@1", tmp_path)
    directory = checkout(family, f"{name}@1", tmp_path / "stock", loadable=True)
    cls = AutoModelForSequenceClassification if inspect_model(directory).has_head else AutoModel
    model = _stock_load(cls, directory)
    got = _outputs(model, AutoTokenizer.from_pretrained(str(directory)))
    tol = TOLERANCE.get(name, 1e-5)
    torch.testing.assert_close(got, expected, atol=tol, rtol=tol)


@pytest.mark.parametrize("name", sorted(ADAPTERS))
def test_adapter_checked_out_with_its_base_loads_with_peft_and_transformers(
    family: Workspace, name: str, tmp_path: Path, quiet_hub: None
) -> None:
    from peft import AutoPeftModelForSequenceClassification
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    expected = _lineage_outputs(family, f"{name}@1", tmp_path)
    directory = checkout(family, f"{name}@1", tmp_path / "stock", with_base=True)
    config = json.loads((directory / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == str(directory / BASE_DIR)
    tokenizer = AutoTokenizer.from_pretrained(str(directory))
    for cls in (AutoPeftModelForSequenceClassification, AutoModelForSequenceClassification):
        model = cls.from_pretrained(str(directory))
        assert model.config.id2label == {0: "business", 1: "food", 2: "sports", 3: "technology"}
        torch.testing.assert_close(_outputs(model, tokenizer), expected, atol=1e-5, rtol=1e-5)


def test_with_base_path_follows_the_final_folder_not_the_staging_one(
    family: Workspace, tmp_path: Path
) -> None:
    directory = checkout(family, "adapter@1", tmp_path / "a" / "b", with_base=True)
    assert not list((tmp_path / "a").glob(".lineage-checkout-*"))
    # The base is the parent version with the adapter's labels, weights untouched.
    base = directory / BASE_DIR
    parent = checkout(family, "enc@1", tmp_path / "parent")
    assert (base / "model.safetensors").read_bytes() == (parent / "model.safetensors").read_bytes()
    assert json.loads((base / "config.json").read_text())["id2label"]["3"] == "technology"


def test_plain_adapter_checkout_names_its_base_and_fails_clearly_offline(
    family: Workspace, tmp_path: Path, quiet_hub: None
) -> None:
    from peft import AutoPeftModelForSequenceClassification

    directory = checkout(family, "adapter@1", tmp_path / "plain", loadable=True)
    config = json.loads((directory / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == "lineage:enc@1"
    # Not a valid Hub id: the loader stops before any network, naming the ref.
    with pytest.raises(OSError, match="lineage:enc@1"):
        AutoPeftModelForSequenceClassification.from_pretrained(str(directory))
    raw = checkout(family, "adapter@1", tmp_path / "raw")
    assert json.loads((raw / "adapter_config.json").read_text())["base_model_name_or_path"] is None


def test_an_added_adapter_keeps_the_base_its_author_named(
    family: Workspace, tmp_path: Path
) -> None:
    # An adapter added from a folder with its own base path checks out as it went in.
    mine = shutil.copytree(checkout(family, "adapter@1", tmp_path / "raw"), tmp_path / "mine")
    (mine / CHECKOUT_MARKER).unlink()
    config_path = mine / "adapter_config.json"
    config = json.loads(config_path.read_text())
    config["base_model_name_or_path"] = "/models/my-encoder"
    config_path.write_text(json.dumps(config))
    add(family, "my-adapter", source=mine, parents=["enc@1"], kind="adapter")
    directory = checkout(family, "my-adapter@1", tmp_path / "out", loadable=True)
    assert same_model_files(mine, directory)


def test_int8_checkout_is_float_by_default_and_raw_keeps_the_stored_form(
    family: Workspace, tmp_path: Path
) -> None:
    loadable = checkout(family, "int8@1", tmp_path / "loadable", loadable=True)
    raw = checkout(family, "int8@1", tmp_path / "raw")
    floats = load_file(str(loadable / "model.safetensors"))
    stored = load_file(str(raw / "model.safetensors"))
    assert {t.dtype for t in floats.values()} == {torch.float32}
    assert not any(k.endswith(("_int8", "_scale")) for k in floats)
    codes, scale = stored["classifier.weight_int8"], stored["classifier.weight_scale"]
    torch.testing.assert_close(
        floats["classifier.weight"], codes.float() * scale[:, None], atol=0, rtol=0
    )
    config = json.loads((loadable / "config.json").read_text())
    assert config[DEQUANTIZED_KEY]["format"] == "int8-per-channel"
    assert inspect_model(loadable).layout == "model" and inspect_model(raw).layout == "quantized"
    # The raw form is the stored bytes: re-made by the recipe and verified on checkout.
    again = checkout(family, "int8@1", tmp_path / "again")
    assert (again / "model.safetensors").read_bytes() == (raw / "model.safetensors").read_bytes()


def test_with_base_is_refused_for_a_full_model_before_anything_is_written(
    family: Workspace, tmp_path: Path
) -> None:
    for ref in ("int8@1", "lora-merged@1"):
        with pytest.raises(UsageError, match="--with-base needs a LoRA adapter"):
            checkout(family, ref, tmp_path / "out", with_base=True)
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".lineage-checkout-*"))


def test_cli_checkout_is_loadable_by_default_raw_on_request(
    family: Workspace, tmp_path: Path
) -> None:
    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "LINEAGE_WORKSPACE": str(family.root)}
        return subprocess.run(
            [sys.executable, "-m", "lineage.cli.main", *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
        )

    done = cli("checkout", "int8@1", str(tmp_path / "out"), "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["raw"] is False
    assert inspect_model(tmp_path / "out").layout == "model"
    refused = cli("checkout", "adapter@1", str(tmp_path / "x"), "--raw", "--with-base")
    assert refused.returncode == 2
    assert refused.stderr.strip().count("\n") == 0 and "--raw" in refused.stderr
    assert not (tmp_path / "x").exists()


@pytest.fixture
def umask_022() -> Iterator[None]:
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def test_checkouts_get_ordinary_permissions(
    family: Workspace, tmp_path: Path, umask_022: None
) -> None:
    directory = checkout(family, "adapter@1", tmp_path / "out", with_base=True)
    for path in (directory, directory / BASE_DIR):
        assert stat.S_IMODE(path.stat().st_mode) == 0o755, path
    for path in (directory / "adapter_config.json", directory / BASE_DIR / "config.json"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o644, path


def test_lineage_loader_refuses_missing_and_unexpected_tensors(
    tiny_sentiment: Path, tmp_path: Path
) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(tiny_sentiment, broken)
    tensors = load_file(str(broken / "model.safetensors"))
    tensors["bert.encoder.layer.0.output.dense.kernel"] = tensors.pop(
        "bert.encoder.layer.0.output.dense.weight"
    )
    save_file(tensors, str(broken / "model.safetensors"))
    with pytest.raises(WeightsError, match=r"1 missing .*1 unexpected") as info:
        load_for_inference(broken)
    assert "\n" not in str(info.value) and "output.dense.weight" in str(info.value)


def test_lineage_loader_refuses_an_adapter_without_its_head(
    family: Workspace, tmp_path: Path
) -> None:
    adapter = checkout(family, "adapter@1", tmp_path / "adapter")
    base = checkout(family, "enc@1", tmp_path / "base")
    weights = load_file(str(adapter / "adapter_model.safetensors"))
    del weights["base_model.model.classifier.weight"]
    save_file(weights, str(adapter / "adapter_model.safetensors"))
    with pytest.raises(WeightsError, match=r"missing .*classifier"):
        load_for_inference(adapter, base)


def test_raw_safetensors_round_trip_keeps_every_dtype_and_refuses_garbage(tmp_path: Path) -> None:
    from lineage.recipes.safetensors_raw import read_safetensors, write_safetensors

    tensors = {
        "a.bf16": torch.arange(6, dtype=torch.bfloat16).reshape(2, 3),
        "b.int8": torch.tensor([[-127, 0, 127]], dtype=torch.int8),
        "c.f32": torch.linspace(-1, 1, 5),
        "d.bool": torch.tensor([True, False]),
    }
    save_file(tensors, str(tmp_path / "in.safetensors"), metadata={"format": "pt"})
    raw = read_safetensors(tmp_path / "in.safetensors")
    write_safetensors(tmp_path / "out.safetensors", raw, {"format": "pt"})
    back = load_file(str(tmp_path / "out.safetensors"))
    for name, tensor in tensors.items():
        assert back[name].dtype == tensor.dtype and torch.equal(back[name], tensor), name
    (tmp_path / "bad.safetensors").write_bytes(b"\xff" * 16)
    with pytest.raises(WeightsError, match="not a readable safetensors file"):
        read_safetensors(tmp_path / "bad.safetensors")
