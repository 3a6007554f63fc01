"""`lineage sync mlflow`: bring MLflow back in step with the lineage DB.

The lineage DB is the source of truth. When MLflow was unreachable during a cascade
step (or a promotion's compensation could not reach it), MLflow is left behind; this
replays, idempotently, everything MLflow should hold:

1. every version registered (pointer LoggedModel + model version with parent tags);
2. a derive run for each version made by a recipe, from the metrics and loss curve
   the cascade kept in the version's provenance (`extra["metrics"]`,
   `extra["loss_curve"]`, `extra["cascade_id"]`), when no derive run exists;
3. a test run for each version with results in `test_results`, when missing;
4. the registry aliases and the alias-history tags.

Running it twice changes nothing the second time.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from lineage.tracking.backend import experiment_id, mlflow_session, tracking_uri
from lineage.tracking.registry import (
    mlflow_aliases,
    model_versions_by_number,
    register_in,
    sync_aliases_in,
)
from lineage.tracking.runs import DERIVE, TEST, find_step_run, latest_test_results

if TYPE_CHECKING:
    from lineage.workspace import Workspace


@dataclass
class SyncReport:
    """What `sync_workspace` had to add or change (empty lists: MLflow was in step)."""

    tracking_uri: str
    models: list[str] = field(default_factory=list)
    registered: list[str] = field(default_factory=list)
    derive_runs: list[str] = field(default_factory=list)
    test_runs: list[str] = field(default_factory=list)
    aliases_changed: dict[str, dict[str, str]] = field(default_factory=dict)

    @property
    def changed(self) -> bool:
        return bool(self.registered or self.derive_runs or self.test_runs or self.aliases_changed)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["changed"] = self.changed
        return data


def sync_workspace(workspace: Workspace, names: Sequence[str] | None = None) -> SyncReport:
    """Repair MLflow from the lineage DB for `names` (default: every model)."""
    from lineage.tracking.runs import record_derive, record_tests

    report = SyncReport(tracking_uri=tracking_uri(workspace))
    models = [workspace.model(name) for name in names] if names else workspace.models()
    for model in models:
        report.models.append(model.name)
        versions = list(reversed(workspace.log(model.name)))  # oldest first
        with mlflow_session(workspace) as client:
            registered = model_versions_by_number(client, model.name)
            experiment = experiment_id(client, workspace, model.name)
            missing_derive = [
                v
                for v in versions
                if v.recipe_id and find_step_run(client, experiment, v, DERIVE) is None
            ]
            missing_tests = [
                v
                for v in versions
                if find_step_run(client, experiment, v, TEST) is None
                and latest_test_results(workspace, v.id)
            ]
            for version in versions:
                if version.number not in registered and version not in missing_derive:
                    register_in(client, workspace, version)
                    report.registered.append(version.ref)
        # Parents first (versions of other models may be parents): derive runs log
        # the parents' pointer models as inputs, which registers nothing new.
        for version in missing_derive:
            # Metrics, loss curve and cascade id come from the version's provenance.
            record_derive(
                workspace,
                version,
                flow_run_id=(version.extra or {}).get("flow_run_id"),
                image_digest=version.image_digest,
            )
            report.derive_runs.append(version.ref)
            if version.number not in registered:
                report.registered.append(version.ref)
        for version in missing_tests:
            record_tests(workspace, version)
            report.test_runs.append(version.ref)
        with mlflow_session(workspace) as client:
            before = mlflow_aliases(client, model.name)
            after = sync_aliases_in(client, workspace, model.name)
        if before != after:
            report.aliases_changed[model.name] = after
    return report
