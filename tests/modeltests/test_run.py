"""Running each test kind on real (tiny and bundled) models."""

from __future__ import annotations

import sys
import textwrap

import pytest

from lineage.errors import ModelTestError
from lineage.modeltests import declare_test, run_model_test
from lineage.recipes import get_recipe


def _run(kind, params, model, parent=None, data="sentiment", name="t"):
    return run_model_test(declare_test(name, kind, params), model, parent, data)


def test_accuracy_and_f1_with_a_head(tiny_sentiment):
    acc = _run("accuracy", {"threshold": 0.9}, tiny_sentiment)
    assert acc.passed and acc.metric == "accuracy" and acc.details["predictor"] == "head"
    assert acc.details["split"] == "test" and acc.duration_s > 0
    f1 = _run("f1", {"threshold": 0.9}, tiny_sentiment)
    assert f1.passed and f1.metric == "f1"
    fail = _run("accuracy", {"threshold": 1.0, "max_examples": 200}, tiny_sentiment)
    assert fail.value <= 1.0 and fail.threshold == 1.0


def test_embedding_model_uses_centroid_probe(tiny_encoder):
    out = _run("accuracy", {"threshold": 0.0}, tiny_encoder, data="topic")
    assert out.details["predictor"] == "centroid" and 0.0 <= out.value <= 1.0


def test_declared_dataset_wins_over_run_data(tiny_sentiment):
    out = _run("accuracy", {"threshold": 0.5, "dataset": "sentiment"}, tiny_sentiment, data="topic")
    assert out.details["dataset"] == "sentiment"
    with pytest.raises(ModelTestError, match="needs a data set"):
        _run("accuracy", {"threshold": 0.5}, tiny_sentiment, data=None)


def test_adapter_is_scored_on_its_base(tiny_encoder, tmp_path):
    adapter = tmp_path / "adapter"
    get_recipe("lora").derive([tiny_encoder], {"steps": 20, "lr": 5e-3}, "sentiment", adapter)
    out = _run("accuracy", {"threshold": 0.0}, adapter, parent=tiny_encoder)
    assert out.details["predictor"] == "head"
    from lineage.errors import WeightsError

    with pytest.raises(WeightsError, match="base model directory is needed"):
        _run("accuracy", {"threshold": 0.0}, adapter, parent=None)


def test_no_regression(tiny_sentiment, tiny_classifier, tmp_path):
    same = _run("no_regression", {"max_drop": 0.0}, tiny_sentiment, parent=tiny_sentiment)
    assert same.passed and same.value == same.details["parent_value"]
    # An untrained head against the trained parent: a clear regression.
    worse = _run("no_regression", {"max_drop": 0.05}, tiny_classifier, parent=tiny_sentiment)
    assert not worse.passed and worse.threshold == pytest.approx(
        worse.details["parent_value"] - 0.05
    )
    root = _run("no_regression", {}, tiny_sentiment, parent=None)
    assert root.passed and root.skipped and root.threshold is None


def test_quantized_model_is_tested_like_its_parent(tiny_sentiment, tmp_path):
    q = tmp_path / "q"
    get_recipe("quantize").derive([tiny_sentiment], {}, None, q)
    out = _run("no_regression", {"max_drop": 0.02}, q, parent=tiny_sentiment)
    assert out.passed, out


def test_invariance(tiny_sentiment):
    out = _run("invariance", {"threshold": 0.5, "max_examples": 50}, tiny_sentiment)
    assert set(out.details["per_perturbation"]) == {"typos", "casing", "word_swap"}
    assert out.passed and out.metric == "unchanged_fraction"
    # The tokenizer is uncased, so casing alone changes nothing.
    assert out.details["per_perturbation"]["casing"] == 1.0
    again = _run("invariance", {"threshold": 0.5, "max_examples": 50}, tiny_sentiment)
    assert again.value == out.value


def test_size_budget(tiny_sentiment):
    ok = _run("size", {"max_bytes": 10_000_000, "max_params": 2_000_000}, tiny_sentiment)
    assert ok.passed and ok.details["params"] > 900_000
    over = _run("size", {"max_params": 1000}, tiny_sentiment)
    assert not over.passed and over.metric == "params" and over.threshold == 1000


def test_latency_budget(tiny_sentiment):
    ok = _run("latency", {"max_ms": 10_000, "max_examples": 5}, tiny_sentiment)
    assert ok.passed and ok.metric == "ms_per_example" and ok.details["examples"] == 5
    over = _run("latency", {"max_ms": 1e-6, "max_examples": 3}, tiny_sentiment, data=None)
    assert not over.passed


USER_TESTS = """
def has_tokenizer(model_dir, parent_dir, data, params):
    return (model_dir / "vocab.txt").exists()

def file_count(model_dir, parent_dir, data, params):
    return float(len(list(model_dir.iterdir())))

def structured(model_dir, parent_dir, data, params):
    return {"metric": "labels", "value": len(data.labels), "passed": params["want"] == 2}
"""


def test_user_tests(tiny_sentiment, tmp_path, monkeypatch):
    (tmp_path / "my_model_checks.py").write_text(textwrap.dedent(USER_TESTS))
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        assert _run("user", {"ref": "my_model_checks:has_tokenizer"}, tiny_sentiment).passed
        n = _run(
            "user",
            {"ref": "my_model_checks:file_count", "threshold": 20, "higher_is_better": False},
            tiny_sentiment,
        )
        assert n.passed and n.value < 20
        s = _run("user", {"ref": "my_model_checks:structured", "args": {"want": 2}}, tiny_sentiment)
        assert s.passed and s.metric == "labels" and s.value == 2
        with pytest.raises(ModelTestError, match="no threshold"):
            _run("user", {"ref": "my_model_checks:file_count"}, tiny_sentiment)
    finally:
        sys.modules.pop("my_model_checks", None)
