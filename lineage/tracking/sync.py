"""`lineage sync mlflow`: drain the queue, then make sure MLflow holds the lineage.

The lineage DB is the source of truth. Sync first writes every queued record (waiting
for a background writer to finish), then checks, model by model, idempotently:

1. every version registered, under its own number (earlier versions first);
2. a derive run for each version made by a recipe, from the metrics and loss curve
   kept in its provenance (`extra["metrics"]`, `extra["loss_curve"]`);
3. a test run for each version's newest results, when MLflow lacks it;
4. the registry aliases equal to lineage's, and a run per alias-history event.

It reports what it had to add, registered models whose numbers lineage did not assign
(versions registered by hand shift the numbers), and queued jobs MLflow refused.
Running it twice changes nothing the second time.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from lineage.errors import TrackingError
from lineage.redact import redact_url
from lineage.tracking import queue
from lineage.tracking.backend import experiment_id, mlflow_session, tracking_uri
from lineage.tracking.mirror import mirror_in
from lineage.tracking.registry import (
    foreign_versions,
    mirrored_alias_event_ids,
    mlflow_aliases,
    registered_versions,
)
from lineage.tracking.runs import DERIVE, find_step_run, has_test_run
from lineage.tracking.writer import drain_locked

if TYPE_CHECKING:
    from lineage.workspace import Workspace


@dataclass
class SyncReport:
    """What `sync_workspace` wrote (empty lists: MLflow was in step)."""

    tracking_uri: str
    queued_written: int = 0
    models: list[str] = field(default_factory=list)
    registered: list[str] = field(default_factory=list)
    derive_runs: list[str] = field(default_factory=list)
    test_runs: list[str] = field(default_factory=list)
    aliases_changed: dict[str, dict[str, str]] = field(default_factory=dict)
    alias_history_runs: int = 0
    foreign_versions: dict[str, list[str]] = field(default_factory=dict)
    failed_jobs: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(
            self.queued_written
            or self.registered
            or self.derive_runs
            or self.test_runs
            or self.aliases_changed
            or self.alias_history_runs
        )

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["changed"] = self.changed
        return data


def sync_workspace(workspace: Workspace, names: Sequence[str] | None = None) -> SyncReport:
    """Drain the queue, then repair MLflow from the lineage DB for `names` (default:
    every model). Raises `TrackingError` when MLflow cannot be reached."""
    report = SyncReport(tracking_uri=redact_url(tracking_uri(workspace)))
    with queue.writer_lock(workspace, blocking=True):
        models = [workspace.model(name) for name in names] if names else workspace.models()
        try:
            before = _registry_state(workspace, [m.name for m in models])
        except TrackingError as exc:
            queued = len(queue.pending(workspace))
            raise TrackingError(f"{exc} ({queued} MLflow record(s) still queued)") from exc
        drained = drain_locked(workspace)
        report.queued_written = drained.written
        if drained.error:
            raise TrackingError(
                f"{drained.error} ({drained.remaining} MLflow record(s) still queued)"
            )
        # Oldest model first: parents are usually older, and are mirrored first anyway.
        versions = {model.name: list(reversed(workspace.log(model.name))) for model in models}
        order = sorted(models, key=lambda m: versions[m.name][0].id if versions[m.name] else 0)
        for model in order:
            report.models.append(model.name)
            _sync_model(workspace, model.name, versions[model.name], report)
        after = _registry_state(workspace, report.models)
    for name in report.models:
        old_numbers, old_aliases = before.get(name, (set(), {}))
        new_numbers, new_aliases = after[name]
        report.registered += [f"{name}@{n}" for n in sorted(new_numbers - old_numbers)]
        if new_aliases != old_aliases:
            report.aliases_changed[name] = new_aliases
    report.failed_jobs = [job.name for job in queue.failed_jobs(workspace)]
    return report


def _registry_state(
    workspace: Workspace, names: Sequence[str]
) -> dict[str, tuple[set[int], dict[str, str]]]:
    """Per model: the lineage numbers registered in MLflow, and the registry aliases."""
    with mlflow_session(workspace) as client:
        return {
            name: (set(registered_versions(client, name)), mlflow_aliases(client, name))
            for name in names
        }


def _sync_model(workspace: Workspace, name: str, versions: list[Any], report: SyncReport) -> None:
    with queue.mirror_lock(workspace), mlflow_session(workspace) as client:
        mirror = mirror_in(client, workspace)
        experiment = experiment_id(client, workspace, name)
        for version in versions:
            needs_run = bool(version.recipe_id) and (
                find_step_run(client, experiment, version, DERIVE) is None
            )
            if needs_run or version.number not in mirror.registered(name):
                mirror.version(version, write_run=needs_run)
                if needs_run:
                    report.derive_runs.append(version.ref)
            results = list(workspace.graph.latest_results(version.id).values())
            if results and not has_test_run(client, workspace, version, results):
                mirror.tests(version, results, {})
                report.test_runs.append(version.ref)
        history_before = len(mirrored_alias_event_ids(client, experiment))
        mirror.aliases(name)
        report.alias_history_runs += (
            len(mirrored_alias_event_ids(client, experiment)) - history_before
        )
        foreign = foreign_versions(client, name)
        shifted = [
            f"{name}@{number}=v{mv.version}"
            for number, mv in mirror.registered(name).items()
            if str(mv.version) != str(number)
        ]
        if foreign or shifted:
            report.foreign_versions[name] = foreign + shifted
