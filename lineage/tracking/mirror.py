"""Mirror the lineage into MLflow: what to write, and in which order.

Two doors:

- **queued** (`queue_version`, `queue_derive`, `queue_tests`, `queue_aliases`): what
  `lineage.ops` calls after it changed the lineage DB. Each appends a job to the
  durable queue (`queue.py`) and wakes the background writer (`writer.py`); no MLflow
  import, no network: the command returns at once.
- **synchronous** (`register_version`, `record_derive`, `record_tests`,
  `sync_aliases`, and the `*_in` functions on an open client that the writer, the sync
  and promotion use): write now, under the workspace's mirror lock.

The order rules live here, once:

- a version is registered only after every earlier version of its model, so MLflow
  version N is lineage version N (`sentiment@3` is `models:/sentiment/3`);
- a version's parents are mirrored before it, so its derive run can name their
  LoggedModels as inputs;
- a version made by a recipe is registered through its derive run (its LoggedModel is
  that run's output);
- the registry aliases are set from the lineage DB's aliases, never from a job's
  memory, so replaying jobs in any order converges to what lineage holds.

For example (both need the MLflow store; `register_version` returns the MLflow
version, which is the lineage version)::

    queue_version(ws, ws.resolve("sentiment@2"))     # the background writer registers it
    register_version(ws, ws.resolve("sentiment@2"))  # or now: returns "2"
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from lineage.tracking import queue
from lineage.tracking.backend import mlflow_session
from lineage.tracking.registry import (
    apply_aliases,
    create_model_version,
    ensure_logged_model,
    ensure_registered_model,
    record_alias_history_in,
    refresh_version_tags,
    registered_versions,
)
from lineage.tracking.runs import derive_run_in, outcome_records, step_context, test_run_in

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from lineage.records import VersionInfo
    from lineage.workspace import Workspace


# ---------------------------------------------------------------------- queued
def queue_version(workspace: Workspace, version: VersionInfo) -> None:
    """A version was added, committed, derived or linked: register it (through a
    derive run when a recipe made it) and bring its tags up to date."""
    if version.recipe_id:
        # Made inside a flow run (a cascade), the run says which one.
        queue.enqueue(workspace, queue.derive_job(version.model, version.id, step_context()))
    else:
        queue.enqueue(workspace, queue.version_job(version.model, version.id))
    _wake(workspace)


def queue_derive(workspace: Workspace, version: VersionInfo, context: Mapping[str, str]) -> None:
    """The derive run of `version`, tagged with the step's context (`step_context`)."""
    queue.enqueue(workspace, queue.derive_job(version.model, version.id, context))
    _wake(workspace)


def queue_tests(
    workspace: Workspace,
    version: VersionInfo,
    outcomes: Sequence[Any],
    context: Mapping[str, str] | None = None,
) -> None:
    """A test run of `outcomes` on `version` (records or dicts with test_name, metric,
    value, threshold, passed, kind), captured now: a later run must not change it."""
    records = outcome_records(outcomes)
    if not records:
        return
    context = step_context() if context is None else context
    queue.enqueue(workspace, queue.tests_job(version.model, version.id, records, context))
    _wake(workspace)


def queue_aliases(workspace: Workspace, names: Iterable[str]) -> None:
    """The aliases of these models moved: mirror them and their history."""
    for name in dict.fromkeys(names):
        queue.enqueue(workspace, queue.aliases_job(name))
    _wake(workspace)


def _wake(workspace: Workspace) -> None:
    from lineage.tracking.writer import wake

    wake(workspace)


# ---------------------------------------------------------------------- in order
class _Mirror:
    """One unit of MLflow writes on an open client (a job, a promotion, a sync step),
    with the registry state it read, so each model's versions are listed once."""

    def __init__(self, client: MlflowClient, workspace: Workspace) -> None:
        self.client = client
        self.workspace = workspace
        self._registered: dict[str, dict[int, Any]] = {}

    def registered(self, model: str) -> dict[int, Any]:
        if model not in self._registered:
            self._registered[model] = registered_versions(self.client, model)
        return self._registered[model]

    def version(
        self,
        version: VersionInfo,
        *,
        write_run: bool = False,
        context: Mapping[str, str] | None = None,
        metrics: Mapping[str, float] | None = None,
        loss_curve: Sequence[tuple[int, float]] | None = None,
        dataset: Any = None,
    ) -> str:
        """Register `version` (and, first, every earlier version of its model and
        every parent); returns its MLflow version number. With `write_run`, also make
        sure a recipe-made version has its derive run (tagged with `context`) even when
        it is registered already."""
        registered = self.registered(version.model)
        if version.number not in registered:
            for earlier in reversed(self.workspace.log(version.model)):
                if earlier.number >= version.number:
                    break
                if earlier.number not in registered:
                    self._one(earlier, write_run=True)
        return self._one(
            version,
            write_run=write_run,
            context=context or {},
            metrics=metrics,
            loss_curve=loss_curve,
            dataset=dataset,
        )

    def _one(
        self,
        version: VersionInfo,
        *,
        write_run: bool,
        context: Mapping[str, str] | None = None,
        metrics: Mapping[str, float] | None = None,
        loss_curve: Sequence[tuple[int, float]] | None = None,
        dataset: Any = None,
    ) -> str:
        registered = self.registered(version.model)
        existing = registered.get(version.number)
        if existing is not None and not write_run:
            refresh_version_tags(self.client, self.workspace, version, existing)
            return str(existing.version)
        for parent in self.workspace.versions_by_id(
            [link.version_id for link in version.derivation_parents]
        ):
            if parent.number not in self.registered(parent.model):
                self.version(parent)
        model_id = None
        if version.recipe_id:
            # The LoggedModel is that run's output.
            _, model_id = derive_run_in(
                self.client,
                self.workspace,
                version,
                context=context or {},
                metrics=metrics,
                loss_curve=loss_curve,
                dataset=dataset,
            )
        if existing is not None:
            refresh_version_tags(self.client, self.workspace, version, existing)
            return str(existing.version)
        if model_id is not None:
            logged = self.client.get_logged_model(model_id)
        else:
            logged = ensure_logged_model(self.client, self.workspace, version)
        ensure_registered_model(self.client, version.model)
        number = create_model_version(self.client, self.workspace, version, logged)
        registered[version.number] = self.client.get_model_version(version.model, number)
        return number

    def aliases(self, name: str) -> dict[str, str]:
        """Make the registry aliases of `name` those of the lineage DB (registering
        aliased versions first) and mirror its alias history; returns alias -> MLflow
        version."""
        wanted = {
            alias: self.version(self.workspace.resolve(f"{name}@{number}"))
            for alias, number in self.workspace.graph.aliases(name).items()
        }
        ensure_registered_model(self.client, name)
        apply_aliases(self.client, name, wanted)
        record_alias_history_in(self.client, self.workspace, name)
        return wanted

    def tests(
        self, version: VersionInfo, outcomes: Sequence[Any], context: Mapping[str, str]
    ) -> str | None:
        self.version(version)
        return test_run_in(self.client, self.workspace, version, outcomes, context=context)


def mirror_in(client: MlflowClient, workspace: Workspace) -> _Mirror:
    """The in-order mirror on an open client (the caller holds the mirror lock)."""
    return _Mirror(client, workspace)


def apply_job(client: MlflowClient, workspace: Workspace, job: queue.Job) -> None:
    """Write one queued job (idempotent; the caller holds the mirror lock)."""
    mirror = _Mirror(client, workspace)
    if job.kind == "aliases":
        if workspace.graph.model_exists(job.model):
            mirror.aliases(job.model)
        return
    assert job.version_id is not None
    version = workspace.version_by_id(job.version_id)
    if job.kind == "tests":
        mirror.tests(version, job.outcomes, job.context)
    else:  # version, derive
        mirror.version(version, write_run=True, context=job.context)


# ---------------------------------------------------------------------- synchronous
def register_version(workspace: Workspace, version: VersionInfo) -> str:
    """Register `version` now (and the earlier versions of its model, and its parents);
    returns its MLflow version, which equals `version.number`. Idempotent.

    Raises `TrackingError` when MLflow is unreachable or refuses the write.
    """
    with queue.mirror_lock(workspace), mlflow_session(workspace) as client:
        return _Mirror(client, workspace).version(version)


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
    """Write the derive run of `version` now and register the version; returns the run
    id. Idempotent (an existing run is reused and given the tags it lacks).

    `metrics` / `loss_curve` default to the version's provenance; `dataset`: a
    `lineage.datasets.TextDataset`, a data-set name, or None (the version's own).
    """
    context = step_context(
        cascade_id=cascade_id,
        flow_run_id=flow_run_id,
        flow_run_url=flow_run_url,
        image_digest=image_digest,
    )
    with queue.mirror_lock(workspace), mlflow_session(workspace) as client:
        mirror = _Mirror(client, workspace)
        for parent in workspace.versions_by_id(
            [link.version_id for link in version.derivation_parents]
        ):
            mirror.version(parent)
        run_id, _ = derive_run_in(
            client,
            workspace,
            version,
            context=context,
            metrics=metrics,
            loss_curve=loss_curve,
            dataset=dataset,
        )
        mirror.version(version)
        return run_id


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
    """Write a test run of `version` now; returns its id (None without results).

    `outcomes` default to the newest stored result of each test (the graph's one rule
    for "latest"). Idempotent: an identical finished test run is reused.
    """
    results = (
        list(workspace.graph.latest_results(version.id).values())
        if outcomes is None
        else list(outcomes)
    )
    if not results:
        return None
    context = step_context(
        cascade_id=cascade_id,
        flow_run_id=flow_run_id,
        flow_run_url=flow_run_url,
        image_digest=image_digest,
    )
    with queue.mirror_lock(workspace), mlflow_session(workspace) as client:
        return _Mirror(client, workspace).tests(version, results, context)


def sync_aliases(workspace: Workspace, model_name: str) -> dict[str, str]:
    """Make the MLflow aliases of `model_name` match the lineage aliases now (registering
    aliased versions that are missing, deleting aliases lineage does not have) and
    mirror its alias history. Idempotent. Returns alias -> MLflow version."""
    with queue.mirror_lock(workspace), mlflow_session(workspace) as client:
        return _Mirror(client, workspace).aliases(model_name)
