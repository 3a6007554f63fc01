"""MLflow runs for derive and test steps.

A derive step becomes one run in the experiment `lineage/<model>`:

- params: `recipe_id`, each recipe parameter as `recipe.<key>`, `parents`
  (and `parent.<i>`), `kind`, `data_fingerprint`;
- metrics: every final metric of the recipe, and the training loss curve as the
  metric `loss` logged at each step;
- tags: `lineage.model`, `lineage.version`, `lineage.ref`, `lineage.step=derive`,
  `lineage.cascade_id`, `prefect.flow_run_id`, `prefect.flow_run_url`,
  `lineage.image_digest`;
- inputs: the data set (`mlflow.log_input`, by name and fingerprint) and each
  parent's pointer LoggedModel;
- output: the version's own pointer LoggedModel, registered as a model version.

A test step becomes a run with `lineage.step=test`, one metric per test
(`test.<name>.<metric>`), `test.<name>.passed` (1/0), `tests.passed` overall, and
the tested version's LoggedModel as input.

Both functions are idempotent: a finished run of the same step for the same version
(same tags) is reused rather than duplicated, so a resumed cascade or
`lineage sync mlflow` can call them again. They raise `TrackingError` with one line
when MLflow is unreachable.

Called by the cascade (after the host commits a derived version, and after its tests
ran)::

    from lineage.tracking import record_derive, record_tests
    run_id = record_derive(ws, version, metrics=result.metrics,
                           loss_curve=result.loss_curve, cascade_id=cid,
                           flow_run_id=str(flow_run.id), image_digest=digest,
                           dataset=data)
    record_tests(ws, version)            # reads the `test_results` table
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from lineage.tracking.backend import experiment_id, mlflow_session, tag_value
from lineage.tracking.registry import log_pointer_model, register_in

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from lineage.records import VersionInfo
    from lineage.workspace import Workspace

DERIVE = "derive"
TEST = "test"


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


def _step_tags(
    version: VersionInfo,
    step: str,
    *,
    cascade_id: str | None,
    flow_run_id: str | None,
    flow_run_url: str | None,
    image_digest: str | None,
) -> dict[str, str]:
    tags = {
        "lineage.model": version.model,
        "lineage.version": str(version.number),
        "lineage.ref": version.ref,
        "lineage.step": step,
        "lineage.manifest_id": version.manifest_id,
    }
    if cascade_id:
        tags["lineage.cascade_id"] = cascade_id
    digest = image_digest or version.image_digest
    if digest:
        tags["lineage.image_digest"] = digest
    tags.update(prefect_context(flow_run_id, flow_run_url))
    return {key: tag_value(value) for key, value in tags.items()}


def find_step_run(
    client: MlflowClient, experiment: str, version: VersionInfo, step: str
) -> Any | None:
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


def _metric_batch(
    metrics: Mapping[str, float], loss_curve: Sequence[tuple[int, float]], now_ms: int
) -> list[Any]:
    from mlflow.entities import Metric

    batch = [
        Metric(key=_metric_key(name), value=float(value), timestamp=now_ms, step=0)
        for name, value in metrics.items()
        if _finite(value)
    ]
    batch += [
        Metric(key="loss", value=float(loss), timestamp=now_ms, step=int(step))
        for step, loss in loss_curve
        if _finite(loss)
    ]
    return batch


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
    from mlflow.data.http_dataset_source import HTTPDatasetSource
    from mlflow.data.meta_dataset import MetaDataset

    name = getattr(dataset, "name", None) if dataset is not None else None
    if name is None:
        name = (version.recipe_params or {}).get("data") or (
            dataset if isinstance(dataset, str) else None
        )
    digest = getattr(dataset, "fingerprint", None) or version.data_fingerprint
    if not name and not digest:
        return None
    where = getattr(dataset, "source", "") or str(name or "unnamed")
    source = HTTPDatasetSource(url=f"lineage-data://{where}")
    return MetaDataset(source=source, name=str(name or "data"), digest=(digest or "")[:36])


def record_derive(
    workspace: Workspace,
    version: VersionInfo,
    *,
    metrics: Mapping[str, float] | None = None,
    loss_curve: Sequence[tuple[int, float]] | None = None,
    cascade_id: str | None = None,
    flow_run_id: str | None = None,
    flow_run_url: str | None = None,
    image_digest: str | None = None,
    dataset: Any = None,
) -> str:
    """Record the derive step that made `version` as an MLflow run; register the
    version (pointer LoggedModel + model version). Returns the run id. Idempotent.

    `metrics` / `loss_curve` / `cascade_id` default to what the derive API keeps in
    the version's provenance (`extra["metrics"]`, `extra["loss_curve"]` as
    `[[step, loss], ...]`, `extra["cascade_id"]`).
    `dataset`: a `lineage.datasets.TextDataset` (name, fingerprint), a data-set name,
    or None (the version's data fingerprint and `data` recipe parameter are used).
    """
    import mlflow

    extra = version.extra or {}
    if metrics is None:
        metrics = extra.get("metrics") or {}
    if not loss_curve:
        loss_curve = [(int(step), float(loss)) for step, loss in extra.get("loss_curve") or []]
    cascade_id = cascade_id or extra.get("cascade_id")

    with mlflow_session(workspace) as client:
        experiment = experiment_id(client, workspace, version.model)
        existing = find_step_run(client, experiment, version, DERIVE)
        if existing is not None:
            register_in(client, workspace, version, existing.info.run_id)
            return str(existing.info.run_id)
        parents = workspace.versions_by_id([link.version_id for link in version.derivation_parents])
        parent_models = [log_pointer_model(client, workspace, parent) for parent in parents]
        tags = _step_tags(
            version,
            DERIVE,
            cascade_id=cascade_id,
            flow_run_id=flow_run_id,
            flow_run_url=flow_run_url,
            image_digest=image_digest,
        )
        run = client.create_run(experiment, run_name=f"derive {version.ref}", tags=tags)
        run_id = run.info.run_id
        try:
            from mlflow.entities import Param

            now_ms = int(time.time() * 1000)
            client.log_batch(
                run_id,
                metrics=_metric_batch(metrics, loss_curve, now_ms),
                params=[Param(key, value) for key, value in _params(version).items()],
            )
            from mlflow.entities import LoggedModelInput

            # nested: a caller's own active run, if any, stays active and untouched.
            with mlflow.start_run(run_id=run_id, nested=True):
                data = _dataset_input(version, dataset)
                if data is not None:
                    mlflow.log_input(data, context="training")
                for parent_model in parent_models:
                    mlflow.log_input(model=LoggedModelInput(model_id=parent_model.model_id))
            register_in(client, workspace, version, run_id)
        except BaseException:
            client.set_terminated(run_id, "FAILED")
            raise
        client.set_terminated(run_id, "FINISHED")
        return str(run_id)


# ---------------------------------------------------------------------- tests
def latest_test_results(workspace: Workspace, version_id: int) -> list[dict[str, Any]]:
    """The newest result of each test of a version (the graph's one rule), by name."""
    return [r.to_dict() for r in workspace.graph.latest_results(version_id).values()]


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


def record_tests(
    workspace: Workspace,
    version: VersionInfo,
    outcomes: Iterable[Any] | None = None,
    *,
    cascade_id: str | None = None,
    flow_run_id: str | None = None,
    flow_run_url: str | None = None,
    image_digest: str | None = None,
) -> str | None:
    """Record the test step of `version` as an MLflow run; returns its id (None when
    the version has no results to record). Idempotent: an identical finished test run
    is reused.

    `outcomes`: results (dicts or records with `test_name`/`name`, `metric`, `value`,
    `threshold`, `passed`); default: the newest result of each test in `test_results`.
    """
    results = [
        _outcome_dict(o)
        for o in (latest_test_results(workspace, version.id) if outcomes is None else outcomes)
    ]
    if not results:
        return None
    from mlflow.entities import LoggedModelInput, Metric, Param

    fingerprint = ",".join(
        f"{r['test_name']}={r.get('value')}:{bool(r.get('passed'))}" for r in results
    )
    with mlflow_session(workspace) as client:
        experiment = experiment_id(client, workspace, version.model)
        existing = find_step_run(client, experiment, version, TEST)
        if existing is not None and existing.data.tags.get("lineage.test_outcomes") == tag_value(
            fingerprint
        ):
            return str(existing.info.run_id)
        logged = log_pointer_model(client, workspace, version)
        tags = _step_tags(
            version,
            TEST,
            cascade_id=cascade_id,
            flow_run_id=flow_run_id,
            flow_run_url=flow_run_url,
            image_digest=image_digest,
        )
        tags["lineage.test_outcomes"] = tag_value(fingerprint)
        all_passed = all(bool(r.get("passed")) for r in results)
        tags["lineage.tests_passed"] = str(all_passed).lower()
        run = client.create_run(experiment, run_name=f"test {version.ref}", tags=tags)
        run_id = run.info.run_id
        try:
            now_ms = int(time.time() * 1000)
            metrics = [Metric("tests.passed", 1.0 if all_passed else 0.0, now_ms, 0)]
            params = []
            for result in results:
                name = _metric_key(str(result["test_name"]))
                metric = _metric_key(str(result.get("metric") or "value"))
                if _finite(result.get("value")):
                    metrics.append(
                        Metric(f"test.{name}.{metric}", float(result["value"]), now_ms, 0)
                    )
                metrics.append(
                    Metric(f"test.{name}.passed", 1.0 if result.get("passed") else 0.0, now_ms, 0)
                )
                if result.get("threshold") is not None:
                    params.append(Param(f"test.{name}.threshold", str(result["threshold"])))
                if result.get("kind"):
                    params.append(Param(f"test.{name}.kind", str(result["kind"])))
            client.log_batch(run_id, metrics=metrics, params=params)
            client.log_inputs(run_id, models=[LoggedModelInput(model_id=logged.model_id)])
        except BaseException:
            client.set_terminated(run_id, "FAILED")
            raise
        client.set_terminated(run_id, "FINISHED")
        return str(run_id)


__all__ = [
    "find_step_run",
    "latest_test_results",
    "prefect_context",
    "record_derive",
    "record_tests",
]
