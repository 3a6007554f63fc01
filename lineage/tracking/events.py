"""Announce what happens in the lineage to Prefect, as events automations can match.

- `lineage.model.committed`: a new version of a model (`lineage commit`, `lineage emit`);
  the `cascade` deployment is triggered by it;
- `lineage.model.promoted`: a version became champion (`lineage promote`, the promotion
  flow, a cascade's automatic promotion);
- `lineage.model.rolled_back`: a champion was moved back (`lineage rollback`), one
  event per model the rollback moved.

Every event's resource is `lineage.model.<name>` (so `match: {prefect.resource.id:
"lineage.model.*"}` selects them all) with the version as `lineage.version`; the
payload carries the workspace path and the refs.

Prefect is imported lazily and only when an API is configured (the workspace config,
or `PREFECT_API_URL`): lineage works without one, and emits nothing then.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from lineage.errors import OrchestrationError

if TYPE_CHECKING:
    from lineage.records import VersionInfo
    from lineage.workspace import Workspace

COMMITTED_EVENT = "lineage.model.committed"
PROMOTED_EVENT = "lineage.model.promoted"
ROLLED_BACK_EVENT = "lineage.model.rolled_back"
#: A cascade node failed (its derive, tests or gate); its subtree is blocked.
NODE_FAILED_EVENT = "lineage.cascade.node.failed"


def prefect_api_url(workspace: Workspace) -> str | None:
    return workspace.config.prefect_api_url or os.environ.get("PREFECT_API_URL") or None


def model_resource(model: str, version: int | None) -> dict[str, str]:
    """The Prefect resource of a lineage model (at a version)."""
    resource = {"prefect.resource.id": f"lineage.model.{model}", "prefect.resource.name": model}
    if version is not None:
        resource["lineage.version"] = str(version)
    return resource


def event_payload(workspace: Workspace, version: VersionInfo) -> dict[str, Any]:
    previous = version.previous_version
    return {
        "workspace": str(workspace.root),
        "model": version.model,
        "version": version.number,
        "ref": version.ref,
        "previous": previous.ref if previous else None,
        "parents": [link.ref for link in version.derivation_parents],
    }


def emit_lineage_event(
    workspace: Workspace,
    event_name: str,
    *,
    model: str,
    version: int | None,
    payload: Mapping[str, Any],
) -> str:
    """Emit one event about `model` now; returns its id. Raises `OrchestrationError`."""
    from prefect.events import emit_event

    api_url = prefect_api_url(workspace)
    resource = model_resource(model, version)
    try:
        if api_url:
            from prefect.settings import PREFECT_API_URL, temporary_settings

            with temporary_settings({PREFECT_API_URL: api_url}):
                event = emit_event(event_name, resource=resource, payload=dict(payload))
                _flush_events(event_name)
        else:
            event = emit_event(event_name, resource=resource, payload=dict(payload))
            _flush_events(event_name)
    except OrchestrationError:
        raise
    except Exception as exc:
        raise OrchestrationError(f"could not emit {event_name} to Prefect: {exc}") from exc
    if event is None:
        raise OrchestrationError(f"Prefect did not accept the {event_name} event")
    return str(event.id)


def emit_committed(workspace: Workspace, version: VersionInfo) -> str:
    """Emit `lineage.model.committed` for `version` now; returns the event id."""
    return emit_lineage_event(
        workspace,
        COMMITTED_EVENT,
        model=version.model,
        version=version.number,
        payload=event_payload(workspace, version),
    )


def _flush_events(event_name: str, timeout_s: float = 30.0) -> None:
    """Wait until queued events are sent: `emit_event` only queues, and a CLI process
    that exits at once must not depend on the interpreter's exit hooks to deliver.

    Inside a flow or task run nothing is drained: the run's own events go through the
    same worker, which the run flushes when it ends (draining it here would stop it).
    """
    from prefect.context import FlowRunContext, TaskRunContext
    from prefect.events.worker import EventsWorker

    if FlowRunContext.get() is not None or TaskRunContext.get() is not None:
        return
    outcome = EventsWorker.drain_all(timeout=timeout_s, at_exit=False)
    if isinstance(outcome, tuple) and outcome[1]:
        raise OrchestrationError(
            f"the {event_name} event was not delivered to Prefect within {timeout_s:.0f} s"
        )


def emit(
    event: str, resource: dict[str, str], payload: dict[str, Any], *, flush: bool = False
) -> str:
    """Emit `event` to the Prefect API this process uses.

    Prefect sends events in the background (and at exit); `flush` waits until they are
    sent, for a process about to exit. Returns "" or a one-line warning: an
    announcement that cannot be sent must not fail the work it announces (a cascade
    goes on without its event)."""
    try:
        from prefect.events import emit_event

        sent = emit_event(event, resource=resource, payload=payload)
        if flush:
            _flush_events(event)
    except Exception as exc:
        return f"could not emit {event} to Prefect: {exc}"
    return "" if sent is not None else f"Prefect did not accept the {event} event"


def emit_if_configured(workspace: Workspace, version: VersionInfo) -> bool:
    """Emit `committed` when a Prefect API is configured; a no-op (False) without one."""
    if not prefect_api_url(workspace):
        return False
    emit_committed(workspace, version)
    return True


def emit_alias_change_if_configured(
    workspace: Workspace,
    event_name: str,
    *,
    model: str,
    from_version: int | None,
    to_version: int,
    actor: str,
    reason: str,
    extra: Mapping[str, Any] | None = None,
) -> bool:
    """Emit `promoted` or `rolled_back` for one model whose champion moved, when a
    Prefect API is configured (False without one). Raises `OrchestrationError`."""
    if event_name not in (PROMOTED_EVENT, ROLLED_BACK_EVENT):
        raise ValueError(f"not an alias-change event: {event_name}")
    if not prefect_api_url(workspace):
        return False
    payload = {
        "workspace": str(workspace.root),
        "model": model,
        "ref": f"{model}@{to_version}",
        "version": to_version,
        "from_version": from_version,
        "from_ref": None if from_version is None else f"{model}@{from_version}",
        "actor": actor,
        "reason": reason,
        **(extra or {}),
    }
    emit_lineage_event(workspace, event_name, model=model, version=to_version, payload=payload)
    return True
