"""Each built-in recipe on tiny models, and the parents each one refuses."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from lineage.errors import RecipeError
from lineage.recipes import get_recipe
from lineage.recipes.hf import inspect_model, load_for_inference
from lineage.recipes.training import predict_logits

FAST = {"steps": 4, "batch_size": 8}


def _logits(model_dir, texts, base=None):
    model, tok, _ = load_for_inference(model_dir, base)
    return predict_logits(model, tok, texts)


def test_finetune_full_and_head(tiny_encoder, tiny_sentiment, tmp_path):
    seen = []
    result = get_recipe("finetune").derive(
        [tiny_encoder], FAST, "sentiment", tmp_path / "full", progress=lambda *a: seen.append(a)
    )
    assert [s[0] for s in seen] == [1, 2, 3, 4] and seen[0][1] == 4
    assert [s for s, _ in result.loss_curve] == [1, 2, 3, 4]
    assert {"val_accuracy", "val_f1", "train_seconds"} <= set(result.metrics)
    assert result.data_fingerprint and "model.safetensors" in result.files
    assert inspect_model(tmp_path / "full").labels == ("negative", "positive")

    head = get_recipe("finetune").derive(
        [tiny_sentiment], {**FAST, "mode": "head"}, "sentiment", tmp_path / "head"
    )
    before, after = (
        load_file(str(tiny_sentiment / "model.safetensors")),
        load_file(str(tmp_path / "head" / "model.safetensors")),
    )
    encoder = [k for k in before if ".encoder." in k]
    assert encoder and all(torch.equal(before[k], after[k]) for k in encoder)
    assert not torch.equal(before["classifier.weight"], after["classifier.weight"])
    assert head.metrics["val_accuracy"] > 0.9  # parent already learned the task


def test_tiny_finetune_learns(tiny_sentiment):
    texts = ["The movie was wonderful.", "The movie was terrible."]
    assert _logits(tiny_sentiment, texts).argmax(-1).tolist() == [1, 0]


@pytest.mark.parametrize("merge", [False, True])
def test_lora_adapter_and_merged(tiny_encoder, tmp_path, merge):
    out = tmp_path / "lora"
    result = get_recipe("lora").derive([tiny_encoder], {**FAST, "merge": merge}, "sentiment", out)
    assert result.layout == ("model" if merge else "adapter")
    info = inspect_model(out)
    if merge:
        assert info.layout == "model" and info.has_head
    else:
        assert info.layout == "adapter" and info.labels == ("negative", "positive")
        config = json.loads((out / "adapter_config.json").read_text())
        assert config["base_model_name_or_path"] is None
        assert (out / "adapter_model.safetensors").stat().st_size < 200_000
        assert _logits(out, ["fine"], base=tiny_encoder).shape == (1, 2)
    assert result.metrics["trainable_params"] > 0


def test_distill_embedding_teacher(tiny_encoder, tmp_path):
    result = get_recipe("distill").derive(
        [tiny_encoder], {**FAST, "layers": [1]}, "topic", tmp_path / "s"
    )
    cfg = json.loads((tmp_path / "s" / "config.json").read_text())
    assert cfg["num_hidden_layers"] == 1
    assert result.metrics["student_layers"] == 1.0 and "teacher_cosine" in result.metrics
    teacher, student = (
        load_file(str(tiny_encoder / "model.safetensors")),
        load_file(str(tmp_path / "s" / "model.safetensors")),
    )
    assert teacher["embeddings.word_embeddings.weight"].shape == (
        student["embeddings.word_embeddings.weight"].shape
    )


def test_distill_classifier_teacher(tiny_sentiment, tmp_path):
    result = get_recipe("distill").derive(
        [tiny_sentiment], {**FAST, "alpha": 0.5}, "sentiment", tmp_path / "s"
    )
    assert result.metrics["student_layers"] == 1.0  # every other of 2 layers
    assert {"teacher_agreement", "val_accuracy"} <= set(result.metrics)
    with pytest.raises(RecipeError, match="layers: \\[5\\] out of range"):
        get_recipe("distill").derive([tiny_sentiment], {"layers": [5]}, "sentiment", tmp_path / "x")
    assert not (tmp_path / "x").exists(), "a failed derive leaves no output behind"


def test_quantize_int8_loads_close_to_float(tiny_sentiment, tmp_path):
    result = get_recipe("quantize").derive([tiny_sentiment], {}, None, tmp_path / "q")
    tensors = load_file(str(tmp_path / "q" / "model.safetensors"))
    q = "bert.encoder.layer.0.attention.self.query"
    assert tensors[f"{q}.weight_int8"].dtype == torch.int8
    assert tensors[f"{q}.weight_scale"].dtype == torch.float32
    assert tensors["classifier.weight"].dtype == torch.float32  # below min_numel: kept
    assert result.metrics["compression"] > 3
    assert inspect_model(tmp_path / "q").layout == "quantized"
    texts = ["The food was great.", "The hotel was awful."]
    ref, got = _logits(tiny_sentiment, texts), _logits(tmp_path / "q", texts)
    assert torch.allclose(ref, got, atol=0.05)
    assert ref.argmax(-1).tolist() == got.argmax(-1).tolist()


@pytest.mark.parametrize(
    ("dtype", "torch_dtype"), [("float16", torch.float16), ("bfloat16", torch.bfloat16)]
)
def test_quantize_casts(tiny_sentiment, tmp_path, dtype, torch_dtype):
    get_recipe("quantize").derive([tiny_sentiment], {"dtype": dtype}, None, tmp_path / "c")
    tensors = load_file(str(tmp_path / "c" / "model.safetensors"))
    assert {t.dtype for t in tensors.values() if t.is_floating_point()} == {torch_dtype}
    from transformers import AutoModelForSequenceClassification

    # A plain transformers load works: the cast is a standard HF directory.
    model = AutoModelForSequenceClassification.from_pretrained(str(tmp_path / "c"))
    assert next(model.parameters()).dtype == torch_dtype


def test_prune_with_mask_and_recovery(tiny_sentiment, tmp_path):
    result = get_recipe("prune").derive(
        [tiny_sentiment],
        {"sparsity": 0.6, "recovery_steps": 3, "batch_size": 8},
        "sentiment",
        tmp_path / "p",
    )
    assert abs(result.metrics["sparsity"] - 0.6) < 0.01 and len(result.loss_curve) == 3
    weights = load_file(str(tmp_path / "p" / "model.safetensors"))
    masks = load_file(str(tmp_path / "p" / "prune_mask.safetensors"))
    assert masks and all(m.dtype == torch.bool for m in masks.values())
    for name, keep in masks.items():
        assert "embeddings" not in name and not name.startswith("classifier")
        assert torch.all(weights[name][~keep] == 0), f"{name}: pruned weights moved in recovery"
    with pytest.raises(RecipeError, match="recovery_steps > 0 needs a data set"):
        get_recipe("prune").derive([tiny_sentiment], {"recovery_steps": 1}, None, tmp_path / "x")


def test_merge_is_weighted_average(tiny_sentiment, tmp_path):
    sibling = tmp_path / "sibling"
    get_recipe("finetune").derive(
        [tiny_sentiment], {**FAST, "mode": "head", "seed": 7}, "sentiment", sibling
    )
    get_recipe("merge").derive([tiny_sentiment, sibling], {"weights": [3, 1]}, None, tmp_path / "m")
    a = load_file(str(tiny_sentiment / "model.safetensors"))
    b = load_file(str(sibling / "model.safetensors"))
    merged = load_file(str(tmp_path / "m" / "model.safetensors"))
    assert sorted(merged) == sorted(a)
    for k in ("classifier.weight", "bert.encoder.layer.0.attention.self.query.weight"):
        assert torch.allclose(merged[k], 0.75 * a[k] + 0.25 * b[k], atol=1e-6)


def test_merge_refuses_mismatched_parents(tiny_sentiment, tiny_encoder, tiny_classifier, tmp_path):
    for other in (tiny_encoder, tiny_classifier):  # no head / other labels
        with pytest.raises(RecipeError, match="differ in architecture"):
            get_recipe("merge").derive([tiny_sentiment, other], {}, None, tmp_path / "m")
    with pytest.raises(RecipeError, match="weights: 3 given for 2 parents"):
        get_recipe("merge").derive(
            [tiny_sentiment, tiny_sentiment], {"weights": [1, 1, 1]}, None, tmp_path / "m"
        )
    with pytest.raises(RecipeError, match="at least 2 parent"):
        get_recipe("merge").derive([tiny_sentiment], {}, None, tmp_path / "m")


@pytest.fixture
def gpt2_dir(tmp_path):
    d = tmp_path / "gpt2"
    d.mkdir()
    (d / "config.json").write_text(json.dumps({"model_type": "gpt2", "n_layer": 1}))
    save_file({"h.0.attn.c_attn.weight": torch.zeros(4, 12)}, str(d / "model.safetensors"))
    return d


@pytest.mark.parametrize("recipe", ["finetune", "lora", "distill", "prune"])
def test_wrong_architecture(recipe, gpt2_dir, tmp_path):
    with pytest.raises(RecipeError, match="architecture 'gpt2' is not supported"):
        params = {} if recipe == "prune" else {"steps": 1}
        get_recipe(recipe).derive([gpt2_dir], params, "sentiment", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_unusable_parents(tiny_encoder, tmp_path):
    adapter = tmp_path / "adapter"
    get_recipe("lora").derive([tiny_encoder], FAST, "sentiment", adapter)
    for recipe in ("finetune", "quantize", "merge"):
        parents = [adapter, adapter] if recipe == "merge" else [adapter]
        with pytest.raises(RecipeError, match="it is a adapter directory"):
            get_recipe(recipe).derive(
                parents, FAST if recipe == "finetune" else {}, "sentiment", tmp_path / "out"
            )
    pickled = tmp_path / "pickled"
    pickled.mkdir()
    (pickled / "config.json").write_text('{"model_type": "bert"}')
    (pickled / "pytorch_model.bin").write_bytes(b"\x80\x04not really")
    with pytest.raises(RecipeError, match="pickled weights"):
        get_recipe("quantize").derive([pickled], {}, None, tmp_path / "out")
    with pytest.raises(RecipeError, match="does not exist"):
        get_recipe("quantize").derive([tmp_path / "missing"], {}, None, tmp_path / "out")


def test_bad_inputs_before_running(tiny_encoder, tmp_path):
    with pytest.raises(RecipeError, match="needs a data set"):
        get_recipe("finetune").derive([tiny_encoder], FAST, None, tmp_path / "out")
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "x").write_text("x")
    with pytest.raises(RecipeError, match="exists and is not empty"):
        get_recipe("quantize").derive([tiny_encoder], {}, None, busy)
    from lineage.errors import DataError

    with pytest.raises(DataError, match="lacks column"):
        bad = tmp_path / "bad.csv"
        bad.write_text("sentence,y\nhi,1\n")
        get_recipe("finetune").derive([tiny_encoder], FAST, bad, tmp_path / "out")
