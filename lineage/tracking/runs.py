"""MLflow runs for derive and test steps (primitives on an open client).

A derive step becomes one run in the experiment `lineage/<model>`:

- params: `recipe_id`, each recipe parameter as `recipe.<key>`, `parents`
  (and `parent.<i>`), `kind`, `data_fingerprint`;
- metrics: every final metric of the recipe (also on the version's LoggedModel), and
  the training loss curve as the metric `loss` logged at each step;
- tags: `lineage.model`, `lineage.version`, `lineage.ref`, `lineage.step=derive`,
  `lineage.cascade_id`, `prefect.flow_run_id`, `prefect.flow_run_url`,
  `lineage.image_digest`;
- inputs: the data set (by name and fingerprint) and each parent's pointer LoggedModel;
- output: the version's own pointer LoggedModel, registered as its model version.

A test step becomes a run with `lineage.step=test`, one metric per test
(`test.<name>.<metric>`), `test.<name>.passed` (1/0) and `tests.passed` overall, each
also logged on the tested version's LoggedModel (`model_id`), so that MLflow's model
page shows them; the LoggedModel is the run's input.

Both are idempotent: a finished run of the same step for the same version (same tags,
same outcomes) is reused, and given cascade or Prefect tags it lacks. Which runs to
write, and in which order, is `lineage.tracking.mirror`'s business.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from lineage.tracking.backend import experiment_id, tag_value
from lineage.tracking.registry import ensure_logged_model

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import Run

    from lineage.records import VersionInfo
    from lineage.workspace import Workspace

DERIVE = "derive"
TEST = "test"
#: Tags a step's context may carry (who ran it: cascade, Prefect flow run, image).
CONTEXT_TAGS = (
    "lineage.cascade_id",
    "prefect.flow_run_id",
    "prefect.flow_run_url",
    "lineage.image_digest",
)


def step_context(
    *,
    cascade_id: str | None = None,
    flow_run_id: str | None = None,
    flow_run_url: str | None = None,
    image_digest: str | None = None,
) -> dict[str, str]:
    """The tags saying who ran a step, captured where it ran (the Prefect flow run is
    read from the running flow when not given)."""
    context = {}
    if cascade_id:
        context["lineage.cascade_id"] = cascade_id
    if image_digest:
        context["lineage.image_digest"] = image_digest
    context.update(prefect_context(flow_run_id, flow_run_url))
    return {key: tag_value(value) for key, value in context.items()}


def prefect_context(
    flow_run_id: str | None = None, flow_run_url: str | None = None
) -> dict[str, str]:
    """Prefect flow-run id and UI URL: as given, else from the running flow.

    Prefect is consulted only when already imported (we are inside a flow): importing
    it just to find out costs seconds.
    """
    if flow_run_id is None and "prefect" in sys.modules:
        try:
            from prefect.runtime import flow_run

            flow_run_id = flow_run.id
            flow_run_url = flow_run_url or flow_run.ui_url
        except Exception:  # not in a flow run, or no API to ask
            flow_run_id = None
    if flow_run_id and not flow_run_url:
        flow_run_url = _flow_run_url(str(flow_run_id))
    found = {}
    if flow_run_id:
        found["prefect.flow_run_id"] = str(flow_run_id)
    if flow_run_url:
        found["prefect.flow_run_url"] = str(flow_run_url)
    return found


def _flow_run_url(flow_run_id: str) -> str | None:
    if "prefect" not in sys.modules:
        return None
    try:
        from prefect.settings import PREFECT_UI_URL

        base = PREFECT_UI_URL.value()
    except Exception:
        return None
    return f"{str(base).rstrip('/')}/runs/flow-run/{flow_run_id}" if base else None


def _step_tags(version: VersionInfo, step: str, context: Mapping[str, str]) -> dict[str, str]:
    tags = {
        "lineage.model": version.model,
        "lineage.version": str(version.number),
        "lineage.ref": version.ref,
        "lineage.step": step,
        "lineage.manifest_id": version.manifest_id,
    }
    if version.image_digest:
        tags["lineage.image_digest"] = version.image_digest
    tags.update({key: value for key, value in context.items() if key in CONTEXT_TAGS and value})
    return {key: tag_value(value) for key, value in tags.items()}


def find_step_run(
    client: MlflowClient, experiment: str, version: VersionInfo, step: str
) -> Run | None:
    """The newest finished run of `step` for `version`, if any."""
    runs = client.search_runs(
        [experiment],
        filter_string=(
            f"tags.`lineage.ref` = '{version.ref}' and tags.`lineage.step` = '{step}' "
            f"and tags.`lineage.manifest_id` = '{version.manifest_id}' "
            "and attributes.status = 'FINISHED'"
        ),
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    return runs[0] if runs else None


def add_context_tags(client: MlflowClient, run: Run, context: Mapping[str, str]) -> None:
    """Give an existing step run the context tags it lacks (the cascade's call may
    reach MLflow after the commit that made the version already did)."""
    for key, value in context.items():
        if key in CONTEXT_TAGS and value and run.data.tags.get(key) != value:
            client.set_tag(run.info.run_id, key, value)


def _params(version: VersionInfo) -> dict[str, str]:
    params = {
        "recipe_id": version.recipe_id or "",
        "kind": version.kind or "",
        "parents": ",".join(link.ref for link in version.derivation_parents),
        "data_fingerprint": version.data_fingerprint or "",
    }
    for position, link in enumerate(version.derivation_parents):
        params[f"parent.{position}"] = link.ref
    for key, value in sorted((version.recipe_params or {}).items()):
        params[f"recipe.{key}"] = value if isinstance(value, str) else repr(value)
    # MLflow caps param values at 6000 characters.
    return {key: str(value)[:6000] for key, value in params.items()}


def _metric_key(name: str) -> str:
    # MLflow keys: alphanumerics, _ - . / and space.
    return "".join(ch if ch.isalnum() or ch in "_-./ " else "_" for ch in name)


def _finite(value: Any) -> bool:
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def _dataset_input(version: VersionInfo, dataset: Any) -> Any | None:
    """An MLflow dataset input for what the version was trained on (by name and
    fingerprint; the examples themselves stay with lineage)."""
    from mlflow.entities import Dataset, DatasetInput, InputTag

    name = getattr(dataset, "name", None) if dataset is not None else None
    if name is None:
        name = (version.recipe_params or {}).get("data") or (version.extra or {}).get("data")
        name = name or (dataset if isinstance(dataset, str) else None)
    digest = getattr(dataset, "fingerprint", None) or version.data_fingerprint
    if not name and not digest:
        return None
    where = getattr(dataset, "source", "") or str(name or "unnamed")
    entity = Dataset(
        name=str(name or "data"),
        digest=(digest or "")[:36],
        source_type="http",
        source=f'{{"url": "lineage-data://{where}"}}',
    )
    # "mlflow.data.context" is the tag MLflow's UI groups dataset inputs by.
    return DatasetInput(dataset=entity, tags=[InputTag("mlflow.data.context", "training")])


def derive_run_in(
    client: MlflowClient,
    workspace: Workspace,
    version: VersionInfo,
    *,
    context: Mapping[str, str],
    metrics: Mapping[str, float] | None = None,
    loss_curve: Sequence[tuple[int, float]] | None = None,
    dataset: Any = None,
) -> tuple[str, str]:
    """Find or write the derive run of `version` and its pointer LoggedModel (an output
    of that run); returns (run id, model id). Does not register the version.

    `metrics` / `loss_curve` default to what the derive step kept in the version's
    provenance (`extra["metrics"]`, `extra["loss_curve"]` as `[[step, loss], ...]`).
    """
    from mlflow.entities import LoggedModelInput, Metric, Param

    extra = version.extra or {}
    if metrics is None:
        metrics = extra.get("metrics") or {}
    if not loss_curve:
        loss_curve = [(int(step), float(loss)) for step, loss in extra.get("loss_curve") or []]
    context = {"lineage.cascade_id": extra.get("cascade_id", ""), **context}
    experiment = experiment_id(client, workspace, version.model)
    existing = find_step_run(client, experiment, version, DERIVE)
    if existing is not None:
        add_context_tags(client, existing, context)
        logged = ensure_logged_model(client, workspace, version)
        return str(existing.info.run_id), str(logged.model_id)
    parents = workspace.versions_by_id([link.version_id for link in version.derivation_parents])
    parent_models = [ensure_logged_model(client, workspace, parent) for parent in parents]
    run = client.create_run(
        experiment,
        run_name=f"derive {version.ref}",
        tags=_step_tags(version, DERIVE, context),
    )
    run_id = run.info.run_id
    try:
        now_ms = int(time.time() * 1000)
        client.log_batch(
            run_id,
            metrics=[
                Metric(key="loss", value=float(loss), timestamp=now_ms, step=int(step))
                for step, loss in loss_curve
                if _finite(loss)
            ],
            params=[Param(key, value) for key, value in _params(version).items()],
        )
        data = _dataset_input(version, dataset)
        if data is not None or parent_models:
            client.log_inputs(
                run_id,
                datasets=[data] if data is not None else None,
                models=[LoggedModelInput(model_id=m.model_id) for m in parent_models] or None,
            )
        logged = ensure_logged_model(client, workspace, version, run_id)
        # The recipe's final metrics, on the run and on the model it made.
        client.log_batch(
            run_id,
            metrics=[
                Metric(_metric_key(name), float(value), now_ms, 0, model_id=logged.model_id)
                for name, value in metrics.items()
                if _finite(value)
            ],
        )
    except BaseException:
        client.set_terminated(run_id, "FAILED")
        raise
    client.set_terminated(run_id, "FINISHED")
    return str(run_id), str(logged.model_id)


# ---------------------------------------------------------------------- tests
def _outcome_dict(outcome: Any) -> dict[str, Any]:
    """Accept test outcomes as dicts or objects (the testing API's records)."""
    if isinstance(outcome, Mapping):
        data = dict(outcome)
    else:
        data = {
            key: getattr(outcome, key)
            for key in ("test_name", "name", "metric", "value", "threshold", "passed", "kind")
            if hasattr(outcome, key)
        }
    data.setdefault("test_name", data.get("name", "test"))
    return data


def outcome_records(outcomes: Sequence[Any]) -> list[dict[str, Any]]:
    """Test outcomes as plain JSON-able dicts (what a queued tests job carries)."""
    records = []
    for outcome in outcomes:
        data = _outcome_dict(outcome)
        records.append(
            {
                "test_name": str(data["test_name"]),
                "metric": str(data.get("metric") or "value"),
                "value": float(data["value"]) if _finite(data.get("value")) else None,
                "threshold": None if data.get("threshold") is None else float(data["threshold"]),
                "passed": bool(data.get("passed")),
                "kind": str(data.get("kind") or ""),
            }
        )
    return records


def _fingerprint(results: Sequence[Mapping[str, Any]]) -> str:
    return tag_value(
        ",".join(f"{r['test_name']}={r.get('value')}:{bool(r.get('passed'))}" for r in results)
    )


def has_test_run(
    client: MlflowClient, workspace: Workspace, version: VersionInfo, outcomes: Sequence[Any]
) -> bool:
    """Whether the newest finished test run of `version` records exactly `outcomes`."""
    experiment = experiment_id(client, workspace, version.model)
    existing = find_step_run(client, experiment, version, TEST)
    fingerprint = _fingerprint(outcome_records(outcomes))
    return existing is not None and existing.data.tags.get("lineage.test_outcomes") == fingerprint


def test_run_in(
    client: MlflowClient,
    workspace: Workspace,
    version: VersionInfo,
    outcomes: Sequence[Any],
    *,
    context: Mapping[str, str],
) -> str | None:
    """Find or write the test run of `outcomes` on `version` (None when there are no
    outcomes); its metrics also go on the version's LoggedModel."""
    from mlflow.entities import LoggedModelInput, Metric, Param

    results = outcome_records(outcomes)
    if not results:
        return None
    fingerprint = _fingerprint(results)
    experiment = experiment_id(client, workspace, version.model)
    existing = find_step_run(client, experiment, version, TEST)
    if existing is not None and existing.data.tags.get("lineage.test_outcomes") == fingerprint:
        add_context_tags(client, existing, context)
        return str(existing.info.run_id)
    logged = ensure_logged_model(client, workspace, version)
    tags = _step_tags(version, TEST, context)
    tags["lineage.test_outcomes"] = fingerprint
    all_passed = all(r["passed"] for r in results)
    tags["lineage.tests_passed"] = str(all_passed).lower()
    run = client.create_run(experiment, run_name=f"test {version.ref}", tags=tags)
    run_id = run.info.run_id
    try:
        now_ms = int(time.time() * 1000)
        model_id = logged.model_id
        metrics = [Metric("tests.passed", 1.0 if all_passed else 0.0, now_ms, 0, model_id)]
        params = []
        for result in results:
            name = _metric_key(result["test_name"])
            metric = _metric_key(result["metric"])
            if result["value"] is not None:
                metrics.append(
                    Metric(f"test.{name}.{metric}", result["value"], now_ms, 0, model_id)
                )
            passed = 1.0 if result["passed"] else 0.0
            metrics.append(Metric(f"test.{name}.passed", passed, now_ms, 0, model_id))
            if result["threshold"] is not None:
                params.append(Param(f"test.{name}.threshold", str(result["threshold"])))
            if result["kind"]:
                params.append(Param(f"test.{name}.kind", result["kind"]))
        client.log_batch(run_id, metrics=metrics, params=params)
        client.log_inputs(run_id, models=[LoggedModelInput(model_id=model_id)])
    except BaseException:
        client.set_terminated(run_id, "FAILED")
        raise
    client.set_terminated(run_id, "FINISHED")
    return str(run_id)


__all__ = [
    "CONTEXT_TAGS",
    "DERIVE",
    "TEST",
    "derive_run_in",
    "find_step_run",
    "has_test_run",
    "outcome_records",
    "prefect_context",
    "step_context",
    "test_run_in",
]
