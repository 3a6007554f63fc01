"""Announce new versions to Prefect as events (`lineage.model.committed`).

Prefect is imported lazily: lineage works without a Prefect API, and emits only
when one is configured (workspace config, or PREFECT_API_URL).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from lineage.errors import OrchestrationError

if TYPE_CHECKING:
    from lineage.records import VersionInfo
    from lineage.workspace import Workspace

COMMITTED_EVENT = "lineage.model.committed"
#: A cascade node failed (its derive, tests or gate); its subtree is blocked.
NODE_FAILED_EVENT = "lineage.cascade.node.failed"


def prefect_api_url(workspace: Workspace) -> str | None:
    return workspace.config.prefect_api_url or os.environ.get("PREFECT_API_URL") or None


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


def emit_committed(workspace: Workspace, version: VersionInfo) -> str:
    """Emit the event now; returns the event id. Raises OrchestrationError on failure."""
    from prefect.events import emit_event

    api_url = prefect_api_url(workspace)
    resource = {
        "prefect.resource.id": f"lineage.model.{version.model}",
        "prefect.resource.name": version.model,
        "lineage.version": str(version.number),
    }
    try:
        if api_url:
            from prefect.settings import PREFECT_API_URL, temporary_settings

            with temporary_settings({PREFECT_API_URL: api_url}):
                event = emit_event(
                    COMMITTED_EVENT, resource=resource, payload=event_payload(workspace, version)
                )
                _flush_events()
        else:
            event = emit_event(
                COMMITTED_EVENT, resource=resource, payload=event_payload(workspace, version)
            )
            _flush_events()
    except Exception as exc:
        raise OrchestrationError(f"could not emit {COMMITTED_EVENT} to Prefect: {exc}") from exc
    if event is None:
        raise OrchestrationError(f"Prefect did not accept the {COMMITTED_EVENT} event")
    return str(event.id)


def _flush_events(timeout_s: float = 30.0) -> None:
    """Wait until queued events are sent: `emit_event` only queues, and a CLI process
    that exits at once must not depend on the interpreter's exit hooks to deliver."""
    from prefect.events.worker import EventsWorker

    EventsWorker.drain_all(timeout=timeout_s, at_exit=False)


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
            _flush_events()
    except Exception as exc:
        return f"could not emit {event} to Prefect: {exc}"
    return "" if sent is not None else f"Prefect did not accept the {event} event"


def emit_if_configured(workspace: Workspace, version: VersionInfo) -> bool:
    """Emit when a Prefect API is configured; a no-op (False) on a laptop without one."""
    if not prefect_api_url(workspace):
        return False
    emit_committed(workspace, version)
    return True
