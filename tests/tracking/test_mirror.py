"""MLflow mirrors the lineage exactly, as an MLflow user sees it (MlflowClient only).

A small family made with the real recipes and verbs (add, commit, a finetune and its
re-derivation on the new base, an int8 quantization, inherited tests, a promotion
done *before* the queue is written, which is where numbers used to cross): every
lineage version is the MLflow version of the same number with its parents, the
recipe's metrics and the test metrics on its LoggedModel, and
`models:/NAME@champion` loads and predicts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from lineage.ops.add import add, commit
from lineage.ops.derive import add_from_recipe, rederive
from lineage.ops.promote import promote
from lineage.ops.tests import declare_model_test, run_tests
from lineage.tracking import mlflow_session
from lineage.tracking.queue import has_pending
from lineage.tracking.writer import drain

from .conftest import mlflow_uri


def _family(ws: Any, tiny_berts: dict[str, Path]) -> None:
    add(ws, "base", source=tiny_berts["s0"], message="the upstream")
    finetune = {"steps": 3, "batch_size": 8, "lr": 1e-3}
    add_from_recipe(
        ws, "ft", recipe_id="finetune", parents=["base@1"], params=finetune, data="sentiment"
    )
    add_from_recipe(ws, "ft-q", recipe_id="quantize", parents=["ft@1"], params={})
    commit(ws, "base", source=tiny_berts["s1"], message="new upstream")
    rederive(ws, "ft@1", ["base@2"])
    declare_model_test(ws, "base", "small", "size", {"max_bytes": 50_000_000})
    for ref in ("base@1", "base@2", "ft@1", "ft@2", "ft-q@1"):
        assert run_tests(ws, ref).passed


def test_every_version_is_the_mlflow_version_of_the_same_number(
    sqlite_workspace: Any, tiny_berts: dict[str, Path]
) -> None:
    import mlflow

    ws = sqlite_workspace
    _family(ws, tiny_berts)
    # Promote the *second* ft before anything was written to MLflow: the promotion
    # registers ft@1 first, so ft@2 is MLflow version 2, never 1.
    assert has_pending(ws)
    promote(ws, "ft@2", reason="better on the new base")
    assert drain(ws).error == ""
    assert not has_pending(ws)

    versions = [v for model in ws.models() for v in ws.log(model.name)]
    assert len(versions) == 5
    with mlflow_session(ws) as client:
        for version in versions:
            mv = client.get_model_version(version.model, str(version.number))
            assert str(mv.version) == str(version.number)
            tags = mv.tags
            assert tags["lineage.ref"] == version.ref
            assert tags["lineage.parents"] == ",".join(p.ref for p in version.derivation_parents)
            assert tags["lineage.link"].endswith(f"#{version.ref}")
            # Exactly one MLflow version per lineage version: nothing registered twice.
            numbers = {
                str(m.version) for m in client.search_model_versions(f"name='{version.model}'")
            }
            assert numbers == {str(v.number) for v in ws.log(version.model)}
            logged = client.get_logged_model(tags["lineage.logged_model_id"])
            on_model = {metric.key: metric.value for metric in logged.metrics}
            # The test metrics, on the model page.
            assert on_model["tests.passed"] == 1.0
            assert on_model["test.small.passed"] == 1.0
            if version.recipe_id == "finetune":
                # The recipe's metrics too; the derive run made this model.
                recipe_metrics = version.extra["metrics"]
                assert recipe_metrics
                for key, value in recipe_metrics.items():
                    assert on_model[key] == pytest.approx(value)
                run = client.get_run(mv.run_id)
                assert run.data.tags["lineage.step"] == "derive"
                assert [m.model_id for m in run.outputs.model_outputs] == [logged.model_id]
                assert len(client.get_metric_history(run.info.run_id, "loss")) == 3
        assert client.get_model_version_by_alias("ft", "champion").version in ("2", 2)
        assert client.get_registered_model("base").aliases == {}

    with mlflow_uri(ws):
        model = mlflow.pyfunc.load_model("models:/ft@champion")
        out = np.asarray(model.predict(["a lovely film", "a dull, tiring mess"]))
    assert out.shape == (2, 2)
    np.testing.assert_allclose(out.sum(axis=1), 1.0, rtol=1e-5)
