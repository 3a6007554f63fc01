"""MLflow tracking and registry against the embedded store (SQLite in the workspace).

Real MLflow, real workspace, real tiny BERTs: derive and test runs, registered
versions mirroring lineage, pointer models that load by alias and predict, gated
promotion, rollback with --cascade, all-or-nothing on failure, sync.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import func, select

import lineage.ops.promote as promote_module
from lineage.errors import PromotionError
from lineage.graph import schema as t
from lineage.ops.add import add, commit
from lineage.ops.promote import gate, promote, rollback, set_model_policy
from lineage.records import Provenance
from lineage.tracking import (
    mlflow_session,
    record_derive,
    record_tests,
    register_version,
    sync_aliases,
    sync_workspace,
)
from lineage.tracking.backend import mlflow_dir
from lineage.tracking.queue import queue_dir
from lineage.tracking.writer import drain

from .conftest import alias_runs, mlflow_uri, record_results


def mlflow_alias_numbers(ws: Any, name: str) -> dict[str, int]:
    """Alias -> lineage version number, as MLflow sees it (via get_model_version_by_alias,
    since search results carry no aliases)."""
    with mlflow_session(ws) as client:
        aliases = client.get_registered_model(name).aliases or {}
        return {
            alias: int(client.get_model_version_by_alias(name, alias).tags["lineage.version"])
            for alias in aliases
        }


def event_count(ws: Any) -> int:
    with ws.graph.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(t.alias_events)).scalar() or 0)


def test_init_tracking_creates_store_in_workspace(sqlite_workspace: Any) -> None:
    from lineage.tracking import init_tracking, tracking_uri

    uri = init_tracking(sqlite_workspace)
    assert uri == tracking_uri(sqlite_workspace)
    assert uri.startswith("sqlite:///") and str(mlflow_dir(sqlite_workspace)) in uri
    assert (mlflow_dir(sqlite_workspace) / "mlflow.db").is_file()
    assert init_tracking(sqlite_workspace) == uri  # idempotent


def test_derive_and_test_runs_record_params_metrics_curve_tags_inputs(
    sqlite_workspace: Any, tiny_weights: Any
) -> None:
    ws = sqlite_workspace
    add(ws, "base", source=tiny_weights(0))
    child = add(
        ws,
        "child",
        source=tiny_weights(1),
        parents=["base@1"],
        kind="finetune",
        provenance=Provenance(
            recipe_id="finetune",
            recipe_params={"epochs": 2, "lr": 0.001, "data": "sst2-tiny"},
            data_fingerprint="ab" * 32,
        ),
    )
    curve = [(1, 2.0), (2, 1.2), (3, 0.7)]
    run_id = record_derive(
        ws,
        child,
        metrics={"accuracy": 0.91, "train_loss": 0.7},
        loss_curve=curve,
        cascade_id="cascade-1",
        flow_run_id="0f0f-flow",
        flow_run_url="http://127.0.0.1:4200/runs/flow-run/0f0f-flow",
        image_digest="sha256:" + "c" * 64,
    )
    # Idempotent: a second call finds the finished run instead of adding one.
    assert record_derive(ws, child, metrics={"accuracy": 0.91}, loss_curve=curve) == run_id

    with mlflow_session(ws) as client:
        run = client.get_run(run_id)
        params, tags = run.data.params, run.data.tags
        assert params["recipe_id"] == "finetune"
        assert params["recipe.epochs"] == "2" and params["recipe.lr"] == "0.001"
        assert params["parents"] == "base@1"
        assert run.data.metrics["accuracy"] == pytest.approx(0.91)
        history = client.get_metric_history(run_id, "loss")
        assert sorted((m.step, m.value) for m in history) == curve
        assert tags["lineage.model"] == "child" and tags["lineage.version"] == "1"
        assert tags["lineage.cascade_id"] == "cascade-1"
        assert tags["prefect.flow_run_id"] == "0f0f-flow"
        assert tags["prefect.flow_run_url"].endswith("/flow-run/0f0f-flow")
        assert tags["lineage.image_digest"].startswith("sha256:")
        # Inputs: the data set, and the parent's pointer LoggedModel.
        datasets = run.inputs.dataset_inputs
        assert [d.dataset.name for d in datasets] == ["sst2-tiny"]
        parent_inputs = [m.model_id for m in run.inputs.model_inputs]
        assert len(parent_inputs) == 1
        assert client.get_logged_model(parent_inputs[0]).tags["lineage.ref"] == "base@1"
        # The version is registered and tagged with its parents.
        mv = client.get_model_version("child", "1")
        assert mv.tags["lineage.parents"] == "base@1" and mv.tags["lineage.ref"] == "child@1"
        assert mv.run_id == run_id
        # The derive run's output is the version's LoggedModel, with the recipe's metrics.
        (output,) = client.get_run(run_id).outputs.model_outputs
        assert output.model_id == mv.tags["lineage.logged_model_id"]
        logged = client.get_logged_model(output.model_id)
        assert logged.source_run_id == run_id
        assert {m.key: m.value for m in logged.metrics}["accuracy"] == pytest.approx(0.91)

    record_results(ws, "child@1", names=("acc", "size"))
    test_run = record_tests(ws, child)
    assert test_run is not None and record_tests(ws, child) == test_run
    with mlflow_session(ws) as client:
        data = client.get_run(test_run).data
        assert data.metrics["test.acc.accuracy"] == pytest.approx(0.9)
        assert data.metrics["tests.passed"] == 1.0
        assert data.tags["lineage.step"] == "test"
        # ... and on the version's LoggedModel, so MLflow's model page shows them.
        logged = client.get_logged_model(output.model_id)
        on_model = {m.key: m.value for m in logged.metrics}
        assert on_model["test.acc.accuracy"] == pytest.approx(0.9)
        assert on_model["test.size.passed"] == 1.0


def test_pointer_model_loads_by_champion_alias_and_predicts(
    sqlite_workspace: Any, tiny_berts: dict[str, Path]
) -> None:
    import mlflow

    ws = sqlite_workspace
    add(ws, "clf", source=tiny_berts["s0"])
    record_results(ws, "clf@1")
    promote(ws, "clf@1", reason="first")
    assert mlflow_alias_numbers(ws, "clf") == {"champion": 1}
    with mlflow_uri(ws):
        model = mlflow.pyfunc.load_model("models:/clf@champion")
        out = np.asarray(model.predict(["a fine film", "dull and long", "ok"]))
    assert out.shape == (3, 2)
    np.testing.assert_allclose(out.sum(axis=1), 1.0, rtol=1e-5)
    # No weights were copied into MLflow: the artifacts are code and config only.
    artifacts = mlflow_dir(ws) / "artifacts"
    assert not list(artifacts.rglob("*.safetensors"))
    assert sum(p.stat().st_size for p in artifacts.rglob("*") if p.is_file()) < 200_000


def test_pointer_models_of_an_encoder_and_its_lora_adapter_predict(
    sqlite_workspace: Any, tiny_family: dict[str, Path]
) -> None:
    import mlflow

    ws = sqlite_workspace
    add(ws, "enc", source=tiny_family["base"])
    add(ws, "lora", source=tiny_family["adapter"], parents=["enc@1"], kind="adapter")
    for ref in ("enc@1", "lora@1"):
        record_results(ws, ref)
        promote(ws, ref)
    with mlflow_uri(ws):
        embeddings = np.asarray(
            mlflow.pyfunc.load_model("models:/enc@champion").predict(["a", "b c"])
        )
        # The adapter loads onto its base (the parent version, from the store).
        probabilities = np.asarray(
            mlflow.pyfunc.load_model("models:/lora@champion").predict(["great", "awful"])
        )
    assert embeddings.shape == (2, 32)
    np.testing.assert_allclose(np.linalg.norm(embeddings, axis=1), 1.0, rtol=1e-5)
    assert probabilities.shape == (2, 2)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)


def test_promotion_is_gated_on_tests(sqlite_workspace: Any, tiny_weights: Any) -> None:
    ws = sqlite_workspace
    add(ws, "m", source=tiny_weights(0))
    with pytest.raises(PromotionError, match="no test results"):
        promote(ws, "m@1")
    record_results(ws, "m@1", passed=False)
    with pytest.raises(PromotionError, match="failed 1 test"):
        promote(ws, "m@1")
    # A test declared on the model but never run also blocks it.
    record_results(ws, "m@1", passed=True)
    from lineage.ops.tests import declare_model_test

    declare_model_test(ws, "m", "size", "size", {"max_bytes": 10_000_000})
    with pytest.raises(PromotionError, match="not run test"):
        promote(ws, "m@1")
    assert ws.model("m").aliases == {} and event_count(ws) == 0
    record_results(ws, "m@1", names=("size",))
    set_model_policy(ws, "m", require_approval=True)
    with pytest.raises(PromotionError, match="requires approval"):
        promote(ws, "m@1")
    result = promote(ws, "m@1", approved_by="alice", reason="ok")
    assert result.events[0].reason == "ok (approved by alice)"
    assert ws.model("m").aliases == {"champion": 1}


def test_promote_moves_champion_and_previous_and_records_history(
    sqlite_workspace: Any, tiny_weights: Any
) -> None:
    ws = sqlite_workspace
    add(ws, "m", source=tiny_weights(0))
    commit(ws, "m", source=tiny_weights(1))
    for ref in ("m@1", "m@2"):
        record_results(ws, ref)
    set_model_policy(ws, "m", auto_promote=False)  # the gate marks m@2 candidate only
    assert gate(ws, "m@2", True, reason="tests passed", actor="ci", track=False).aliases == [
        "candidate"
    ]
    promote(ws, "m@1", actor="ci", reason="first release")
    result = promote(ws, "m@2", actor="bob", reason="better")
    assert (result.from_version, result.to_version) == (1, 2)
    assert ws.model("m").aliases == {"champion": 2, "previous": 1}
    assert mlflow_alias_numbers(ws, "m") == {"champion": 2, "previous": 1}
    history = [
        (e.alias, e.action, e.from_version, e.to_version, e.actor) for e in ws.alias_history("m")
    ]
    assert history[-3:] == [
        ("champion", "promote", 1, 2, "bob"),
        ("previous", "promote", None, 1, "bob"),
        ("candidate", "promote", 2, None, "bob"),
    ]
    # The alias history reaches MLflow as runs (queued, written by the writer), never
    # as tags crowding the registered model.
    drain(ws)
    with mlflow_session(ws) as client:
        tags = client.get_registered_model("m").tags
    assert not [k for k in tags if k.startswith("lineage.alias_event")]
    runs = alias_runs(ws, "m")
    assert len(runs) == len(ws.alias_history("m"))
    promotion = runs[-3]  # champion 1 -> 2, by bob
    assert promotion.data.tags["lineage.actor"] == "bob"
    assert promotion.data.tags["lineage.from_version"] == "1"
    assert promotion.data.tags["lineage.to_version"] == "2"
    assert promotion.data.tags["mlflow.note.content"] == "better"
    # Promoting the champion again changes nothing.
    assert not promote(ws, "m@2").changed


def _family(ws: Any, tiny_weights: Any) -> None:
    """base@1 -> a@1 -> b@1; base@2 -> a@2 -> b@2; c@1 from base@1 only; d unrelated."""
    add(ws, "base", source=tiny_weights(0))
    add(ws, "a", source=tiny_weights(1), parents=["base@1"], kind="finetune")
    add(ws, "b", source=tiny_weights(2), parents=["a@1"], kind="adapter")
    add(ws, "c", source=tiny_weights(3), parents=["base@1"], kind="distill")
    add(ws, "d", source=tiny_weights(4))
    for ref in ("base@1", "a@1", "b@1", "c@1", "d@1"):
        record_results(ws, ref)
        promote(ws, ref)
    commit(ws, "base", source=tiny_weights(5))
    commit(ws, "a", source=tiny_weights(6), parents=["base@2"])
    commit(ws, "b", source=tiny_weights(7), parents=["a@2"])
    for ref in ("base@2", "a@2", "b@2"):
        record_results(ws, ref)
        promote(ws, ref, reason="cascade")


def test_rollback_cascade_moves_exactly_the_right_aliases(
    workspace: Any, tiny_weights: Any
) -> None:
    ws = workspace  # graph DB on SQLite and on PostgreSQL
    _family(ws, tiny_weights)
    before = {m.name: m.aliases for m in ws.models()}
    assert before["a"] == {"champion": 2, "previous": 1}

    result = rollback(ws, "base", cascade=True, actor="oncall", reason="bad tokenizer")
    assert result.cascaded == {"a": (2, 1), "b": (2, 1)}
    after = {m.name: m.aliases for m in ws.models()}
    # Back to how things stood when v1 served: no previous then.
    assert after["base"] == after["a"] == after["b"] == {"champion": 1}
    assert after["c"] == before["c"] and after["d"] == before["d"]
    for name in ("base", "a", "b", "c", "d"):
        assert mlflow_alias_numbers(ws, name) == after[name], name
    last = ws.alias_history("a")[-1]
    assert last.action == "rollback" and last.actor == "oncall"
    assert "cascade rollback of base@2" in last.reason and "bad tokenizer" in last.reason

    # Without --cascade only the named model moves.
    for ref in ("base@2",):
        promote(ws, ref)
    rollback(ws, "base")
    assert ws.model("a").aliases == {"champion": 1}
    assert ws.model("base").aliases["champion"] == 1


def test_rollback_refusals(sqlite_workspace: Any, tiny_weights: Any) -> None:
    ws = sqlite_workspace
    add(ws, "m", source=tiny_weights(0))
    with pytest.raises(PromotionError, match="no champion"):
        rollback(ws, "m")
    commit(ws, "m", source=tiny_weights(1))
    commit(ws, "m", source=tiny_weights(2))
    record_results(ws, "m@3")
    promote(ws, "m@3")
    with pytest.raises(PromotionError, match="no previous champion"):
        rollback(ws, "m")
    with pytest.raises(PromotionError, match="no such version"):
        rollback(ws, "m", to=9)
    with pytest.raises(PromotionError, match="m@1 has no test results"):
        rollback(ws, "m", to=1)
    record_results(ws, "m@2", passed=False)
    with pytest.raises(PromotionError, match="m@2 failed"):
        rollback(ws, "m", to=2)
    assert ws.model("m").aliases == {"champion": 3}
    assert mlflow_alias_numbers(ws, "m") == {"champion": 3}


def test_failure_in_the_middle_leaves_nothing_half_done(
    sqlite_workspace: Any, tiny_weights: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    ws = sqlite_workspace
    _family(ws, tiny_weights)
    before_db = {m.name: m.aliases for m in ws.models()}
    before_mlflow = {name: mlflow_alias_numbers(ws, name) for name in before_db}
    events = event_count(ws)

    def crash_on_second_model(name: str) -> None:
        if name == "a":  # base's MLflow aliases already moved, a's too
            raise RuntimeError("worker lost")

    monkeypatch.setattr(promote_module, "_after_mlflow_move", crash_on_second_model)
    with pytest.raises(RuntimeError, match="worker lost"):
        rollback(ws, "base", cascade=True)
    assert {m.name: m.aliases for m in ws.models()} == before_db
    assert {name: mlflow_alias_numbers(ws, name) for name in before_db} == before_mlflow
    assert event_count(ws) == events
    # Nothing of the failed rollback reaches the alias history in MLflow either.
    drain(ws)
    assert len(alias_runs(ws, "base")) == len(ws.alias_history("base"))


def _ft_family(ws: Any, tiny_weights: Any) -> None:
    add(ws, "base", source=tiny_weights(0))
    add(
        ws,
        "ft",
        source=tiny_weights(1),
        parents=["base@1"],
        kind="finetune",
        provenance=Provenance(
            recipe_id="finetune",
            extra={"metrics": {"accuracy": 0.8}, "loss_curve": [[1, 1.0], [2, 0.5]]},
        ),
    )
    record_results(ws, "ft@1")
    # Aliases moved in the lineage DB, their MLflow side queued (the writer is off).
    promote(ws, "ft@1", mlflow="queued")
    set_model_policy(ws, "base", auto_promote=False)
    gate(ws, "base@1", True, reason="tests passed", actor="ci")


def test_sync_writes_the_queue_then_finds_nothing_to_repair(
    sqlite_workspace: Any, tiny_weights: Any
) -> None:
    ws = sqlite_workspace
    _ft_family(ws, tiny_weights)
    # Adds and alias moves were queued, not written (LINEAGE_MLFLOW_WRITER=deferred).
    assert not (mlflow_dir(ws) / "mlflow.db").exists()
    report = sync_workspace(ws)
    assert report.queued_written == 4  # base, ft (its derive run), two alias moves
    assert sorted(report.registered) == ["base@1", "ft@1"]
    assert report.derive_runs == []  # the queue had it
    assert report.test_runs == ["ft@1"]  # results stored without `lineage test`: repaired
    assert report.aliases_changed == {"base": {"candidate": "1"}, "ft": {"champion": "1"}}
    assert mlflow_alias_numbers(ws, "ft") == {"champion": 1}
    assert not sync_workspace(ws).changed


def test_sync_repairs_mlflow_and_is_idempotent(sqlite_workspace: Any, tiny_weights: Any) -> None:
    ws = sqlite_workspace
    _ft_family(ws, tiny_weights)
    # The queue is lost (a workspace restored from a backup without it): the lineage DB,
    # the source of truth, is enough to rebuild MLflow.
    shutil.rmtree(queue_dir(ws))
    report = sync_workspace(ws)
    assert report.changed and report.queued_written == 0
    assert set(report.derive_runs) == {"ft@1"} and set(report.test_runs) == {"ft@1"}
    assert sorted(report.registered) == ["base@1", "ft@1"]
    with mlflow_session(ws) as client:
        (derive_run,) = client.search_runs(
            [client.get_experiment_by_name("lineage/ft").experiment_id],
            filter_string="tags.`lineage.step` = 'derive'",
        )
        assert derive_run.data.metrics["accuracy"] == pytest.approx(0.8)
        history = client.get_metric_history(derive_run.info.run_id, "loss")
        assert sorted((m.step, m.value) for m in history) == [(1, 1.0), (2, 0.5)]
    assert mlflow_alias_numbers(ws, "ft") == {"champion": 1}
    assert mlflow_alias_numbers(ws, "base") == {"candidate": 1}
    assert len(alias_runs(ws, "base")) == 1 and report.alias_history_runs == 2
    assert not sync_workspace(ws).changed
    # An alias removed in lineage disappears from MLflow too (promotion consumes it).
    record_results(ws, "base@1")
    promote(ws, "base@1", mlflow="off")
    assert set(sync_aliases(ws, "base")) == {"champion"}
    assert mlflow_alias_numbers(ws, "base") == {"champion": 1}
    assert register_version(ws, ws.resolve("base@1")) == "1"
