"""A node's steps without Prefect: retry classification and the promotion gate."""

from __future__ import annotations

import pytest

from lineage.cascade.node import gate_node, is_transient
from lineage.errors import DataError, RecipeError, RunnerError, UsageError
from lineage.ops.add import add, commit
from lineage.ops.promote import promote, set_model_policy


def test_transient_failures_are_retried_and_bad_input_is_not() -> None:
    from lineage.steps.runners.errors import StepFailedError, StepTimeoutError

    assert is_transient(OSError("disk busy"))
    assert is_transient(StepTimeoutError("step timed out"))
    assert is_transient(RunnerError("container died"))
    assert is_transient(StepFailedError("crashed", 70, "RuntimeError"))
    assert not is_transient(StepFailedError("bad recipe", 9, "RecipeError"))
    for permanent in (RecipeError("x"), DataError("x"), UsageError("x"), ValueError("x")):
        assert not is_transient(permanent)


@pytest.fixture
def tested(sqlite_workspace, tiny_weights):  # type: ignore[no-untyped-def]
    """m@1 (champion) and m@2, both with a passing size test result."""
    from lineage.ops.tests import declare_model_test, run_tests

    ws = sqlite_workspace
    add(ws, "m", source=tiny_weights(0))
    commit(ws, "m", source=tiny_weights(1))
    declare_model_test(ws, "m", "small-enough", "size", {"max_params": 100_000})
    assert run_tests(ws, "m@1").passed and run_tests(ws, "m@2").passed
    promote(ws, "m@1", mlflow="off")
    return ws


def test_gate_promotes_and_records_who_and_why(tested) -> None:  # type: ignore[no-untyped-def]
    ws = tested
    outcome = gate_node(ws, "m@2", True, reason="cascade base@1 -> base@2", track=False)
    assert outcome.promoted and set(outcome.aliases) == {"candidate", "previous", "champion"}
    # One promotion rule with or without MLflow: promoting consumes `candidate`.
    assert ws.model("m").aliases == {"champion": 2, "previous": 1}
    event = ws.alias_history("m", "champion")[-1]
    assert (event.actor, event.reason, event.action) == (
        "lineage-cascade",
        "cascade base@1 -> base@2",
        "promote",
    )
    # Gating again is a no-op: nothing new recorded.
    events = len(ws.alias_history("m"))
    assert gate_node(ws, "m@2", True, reason="again", track=False).aliases == []
    assert len(ws.alias_history("m")) == events


def test_gate_failure_and_approval_keep_the_champion(tested) -> None:  # type: ignore[no-untyped-def]
    ws = tested
    assert gate_node(ws, "m@2", False, reason="r", track=False).aliases == []
    assert ws.model("m").aliases == {"champion": 1}
    set_model_policy(ws, "m", require_approval=True)
    outcome = gate_node(ws, "m@2", True, reason="r", track=False)
    assert not outcome.promoted and outcome.aliases == ["candidate"]
    assert "approval" in outcome.note
    assert ws.model("m").aliases == {"candidate": 2, "champion": 1}


def test_gate_without_test_results_stays_candidate(sqlite_workspace, tiny_weights) -> None:  # type: ignore[no-untyped-def]
    ws = sqlite_workspace
    add(ws, "m", source=tiny_weights(0))
    outcome = gate_node(ws, "m@1", True, reason="r", track=False)
    assert not outcome.promoted and "no test results" in outcome.note
    assert ws.model("m").aliases == {"candidate": 1}
