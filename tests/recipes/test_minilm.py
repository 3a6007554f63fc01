"""End to end on the real bundled all-MiniLM-L6-v2 (about 20 s on 2 cores)."""

from __future__ import annotations

import pytest

from lineage.bundled import minilm_path
from lineage.modeltests import declare_test, run_model_test
from lineage.recipes import get_recipe


@pytest.mark.slow
def test_minilm_finetune_reaches_real_accuracy(tmp_path):
    out = tmp_path / "minilm-sentiment"
    result = get_recipe("finetune").derive([minilm_path()], {"steps": 40}, "sentiment", out)
    assert result.loss_curve[-1][1] < result.loss_curve[0][1]
    assert result.metrics["val_accuracy"] >= 0.9
    outcome = run_model_test(
        declare_test("acc", "accuracy", {"threshold": 0.9, "dataset": "sentiment"}), out
    )
    assert outcome.passed and outcome.details["predictor"] == "head", outcome
