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


def test_deterministic_sets_and_restores_the_kernel_flag_without_loading_the_compiler():
    """The flag torch's kernels read is on inside and restored after; torch's compiler
    (whose import costs a cold process over a second) is not loaded for it."""
    import subprocess
    import sys

    code = (
        "import sys, torch\n"
        "from lineage.recipes.determinism import deterministic\n"
        "assert not torch.are_deterministic_algorithms_enabled()\n"
        "with deterministic(0, threads=1):\n"
        "    assert torch.are_deterministic_algorithms_enabled()\n"
        "    assert torch.get_num_threads() == 1\n"
        "assert not torch.are_deterministic_algorithms_enabled()\n"
        "print('torch._inductor' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


def test_a_loaded_compiler_follows_the_flag():
    import torch._inductor.config as inductor_config

    from lineage.recipes.determinism import deterministic

    before = inductor_config.deterministic
    with deterministic(0):
        assert inductor_config.deterministic is True
    assert inductor_config.deterministic == before
