"""Tiny models shared by the model-test tests (built once per session, seconds in all)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from lineage.bundled import make_tiny_model

# Other engineers share the cores; tests stay within a thread or two.
torch.set_num_threads(2)


@pytest.fixture(scope="session")
def tiny_encoder(tmp_path_factory) -> Path:
    """A tiny random BERT without a head (an embedding model, like MiniLM)."""
    return make_tiny_model(tmp_path_factory.mktemp("models") / "tiny-encoder")


@pytest.fixture(scope="session")
def tiny_classifier(tmp_path_factory) -> Path:
    """A tiny random BERT with a 2-label head."""
    return make_tiny_model(tmp_path_factory.mktemp("models") / "tiny-classifier", num_labels=2)


@pytest.fixture(scope="session")
def tiny_sentiment(tmp_path_factory, tiny_encoder) -> Path:
    """The tiny encoder fine-tuned on the shipped sentiment set (learns it in ~1 s)."""
    from lineage.recipes import get_recipe

    out = tmp_path_factory.mktemp("models") / "tiny-sentiment"
    get_recipe("finetune").derive(
        [tiny_encoder], {"steps": 40, "lr": 3e-3, "batch_size": 32}, "sentiment", out
    )
    return out
