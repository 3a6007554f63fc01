"""Same recipe, params, parents and data on CPU: bit-identical safetensors."""

from __future__ import annotations

import pytest
import torch

from lineage.recipes import get_recipe

CASES = [
    ("finetune", {"steps": 5, "batch_size": 8}, "sentiment"),
    ("lora", {"steps": 5, "batch_size": 8}, "sentiment"),
    ("distill", {"steps": 5, "batch_size": 8}, "topic"),
    ("prune", {"sparsity": 0.5, "recovery_steps": 3, "batch_size": 8}, "sentiment"),
    ("quantize", {}, None),
]


def _weights(directory):
    return {f.name: f.read_bytes() for f in sorted(directory.glob("*.safetensors"))} | {
        "adapter_config.json": (directory / "adapter_config.json").read_bytes()
        if (directory / "adapter_config.json").exists()
        else b""
    }


@pytest.mark.parametrize(("recipe", "params", "data"), CASES, ids=[c[0] for c in CASES])
def test_bit_identical_reruns(recipe, params, data, tiny_encoder, tmp_path):
    r = get_recipe(recipe)
    assert r.deterministic
    # Different ambient state must not matter: derive fixes seeds and threads.
    torch.manual_seed(123)
    first = r.derive([tiny_encoder], params, data, tmp_path / "a")
    torch.manual_seed(456)
    second = r.derive([tiny_encoder], params, data, tmp_path / "b")
    assert _weights(tmp_path / "a") == _weights(tmp_path / "b")
    assert first.loss_curve == second.loss_curve


def test_seed_changes_the_result(tiny_encoder, tmp_path):
    r = get_recipe("finetune")
    r.derive([tiny_encoder], {"steps": 3, "seed": 1}, "sentiment", tmp_path / "a")
    r.derive([tiny_encoder], {"steps": 3, "seed": 2}, "sentiment", tmp_path / "b")
    assert _weights(tmp_path / "a") != _weights(tmp_path / "b")


def test_derive_restores_global_torch_state(tiny_encoder, tmp_path):
    threads = torch.get_num_threads()
    get_recipe("quantize").derive([tiny_encoder], {}, None, tmp_path / "q")
    assert torch.get_num_threads() == threads
    assert not torch.are_deterministic_algorithms_enabled()
