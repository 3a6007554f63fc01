"""The MLflow model registry as a mirror of the lineage graph.

One registered model per lineage model (same name), one model version per lineage
version (tagged `lineage.version`, `lineage.ref`, `lineage.parents`...), each backed
by a pointer LoggedModel (see `pointer.py`: code + config, no weights), and the
registry aliases (`champion`, `candidate`, `previous`, any other) kept in step with
the lineage aliases. Every alias change recorded in the lineage DB (`alias_events`)
is mirrored as a registered-model tag `lineage.alias_event.<id>` holding
who/when/why/from→to as JSON.

Every function here is idempotent: it looks for what it would create (by lineage
tags, never by MLflow version numbers, which may differ from lineage's) and only
adds what is missing, so `lineage sync mlflow` can re-run it to repair a registry
that fell behind (e.g. when the server was down during a cascade).

MLflow facts handled here: `ModelVersion.version` is an int on SQLite and a str
over REST (always compared as `str`); `search_model_versions` returns no aliases
(aliases are read from `get_registered_model(...).aliases`).

>>> from lineage.tracking import register_version, sync_aliases    # doctest: +SKIP
>>> register_version(ws, ws.resolve("sentiment@2"))                 # doctest: +SKIP
'2'
>>> sync_aliases(ws, "sentiment")                                   # doctest: +SKIP
{'champion': '2', 'previous': '1'}
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from lineage.tracking.backend import experiment_id, mlflow_session, tag_value

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import LoggedModel
    from mlflow.entities.model_registry import ModelVersion

    from lineage.records import AliasEvent, VersionInfo
    from lineage.workspace import Workspace

EVENT_TAG_PREFIX = "lineage.alias_event."


def logged_model_name(version: VersionInfo) -> str:
    return f"{version.model}-v{version.number}"


def version_tags(version: VersionInfo) -> dict[str, str]:
    """Tags describing a lineage version, on its LoggedModel and model version."""
    parents = [link.ref for link in version.derivation_parents]
    tags = {
        "lineage.model": version.model,
        "lineage.version": str(version.number),
        "lineage.ref": version.ref,
        "lineage.manifest_id": version.manifest_id,
        "lineage.parents": ",".join(parents),
        "lineage.kind": version.kind or "",
        "lineage.recipe_id": version.recipe_id or "",
    }
    for position, ref in enumerate(parents):
        tags[f"lineage.parent.{position}"] = ref
    if version.previous_version is not None:
        tags["lineage.previous_version"] = version.previous_version.ref
    if version.image_digest:
        tags["lineage.image_digest"] = version.image_digest
    return {key: tag_value(value) for key, value in tags.items()}


# ---------------------------------------------------------------------- logged models
def find_logged_model(
    client: MlflowClient, workspace: Workspace, version: VersionInfo
) -> LoggedModel | None:
    """The pointer LoggedModel of `version`, if one was logged (newest first)."""
    exp = experiment_id(client, workspace, version.model)
    found = client.search_logged_models(
        experiment_ids=[exp],
        filter_string=f"tags.`lineage.ref` = '{version.ref}'",
        max_results=50,
    )
    for model in found:
        # A model logged by a run that crashed mid-upload is left PENDING/FAILED.
        ready = str(getattr(model.status, "name", model.status)).upper().endswith("READY")
        if ready and model.tags.get("lineage.manifest_id") == version.manifest_id:
            return model
    return None


def log_pointer_model(
    client: MlflowClient, workspace: Workspace, version: VersionInfo, run_id: str | None = None
) -> LoggedModel:
    """Find or log `version`'s pointer LoggedModel.

    Logged inside `run_id` (the derive run) when given, so MLflow links the model to
    the run that made it; else inside a small `register` run of the model's
    experiment.
    """
    import mlflow

    from lineage.tracking.pointer import log_pointer_model_in_run

    existing = find_logged_model(client, workspace, version)
    if existing is not None:
        return existing
    exp = experiment_id(client, workspace, version.model)
    tags = version_tags(version)
    if run_id is None:
        run = client.create_run(
            exp,
            run_name=f"register {version.ref}",
            tags={**tags, "lineage.step": "register"},
        )
        run_id = run.info.run_id
        own_run = True
    else:
        own_run = False
    # nested: a caller's own active run, if any, stays active and untouched.
    with mlflow.start_run(run_id=run_id, nested=True):
        info = log_pointer_model_in_run(workspace, version, logged_model_name(version), tags)
    if own_run:
        client.set_terminated(run_id, "FINISHED")
    return client.get_logged_model(info.model_id)


# ---------------------------------------------------------------------- registry
def ensure_registered_model(client: MlflowClient, name: str) -> None:
    from mlflow.exceptions import MlflowException

    try:
        client.get_registered_model(name)
    except MlflowException as exc:
        if "RESOURCE_DOES_NOT_EXIST" not in str(exc.error_code):
            raise
        try:
            client.create_registered_model(
                name,
                tags={"lineage.model": name},
                description=f"Mirror of the lineage model {name!r}; weights stay in lineage.",
            )
        except MlflowException as again:
            if "RESOURCE_ALREADY_EXISTS" not in str(again.error_code):
                raise


def model_versions_by_number(client: MlflowClient, name: str) -> dict[int, ModelVersion]:
    """Registered versions of `name` keyed by *lineage* version number."""
    found: dict[int, ModelVersion] = {}
    for mv in client.search_model_versions(f"name = '{name}'"):
        number = (mv.tags or {}).get("lineage.version")
        if number is not None and number.isdigit():
            # Duplicates can only come from concurrent first registrations: keep the oldest.
            current = found.get(int(number))
            if current is None or int(str(mv.version)) < int(str(current.version)):
                found[int(number)] = mv
    return found


def register_in(
    client: MlflowClient, workspace: Workspace, version: VersionInfo, run_id: str | None = None
) -> str:
    """`register_version` on an open client; returns the MLflow version (as str)."""
    ensure_registered_model(client, version.model)
    existing = model_versions_by_number(client, version.model).get(version.number)
    if existing is not None:
        return str(existing.version)
    logged = log_pointer_model(client, workspace, version, run_id)
    # create_model_version, not mlflow.register_model: only the former records the
    # LoggedModel id on the version (register_model leaves model_id empty on SQLite).
    mv = client.create_model_version(
        version.model,
        source=f"models:/{logged.model_id}",
        run_id=logged.source_run_id,
        tags=version_tags(version),
        description=version.message or None,
        model_id=logged.model_id,
    )
    return str(mv.version)


def register_version(workspace: Workspace, version: VersionInfo, run_id: str | None = None) -> str:
    """Make `version` an MLflow model version of the registered model of its lineage
    model, backed by a pointer LoggedModel; idempotent. Returns the MLflow version.

    Raises `TrackingError` when MLflow is unreachable or refuses the write.
    """
    with mlflow_session(workspace) as client:
        return register_in(client, workspace, version, run_id)


def mlflow_aliases(client: MlflowClient, name: str) -> dict[str, str]:
    """Alias -> MLflow version of a registered model ({} if it does not exist)."""
    from mlflow.exceptions import MlflowException

    try:
        model = client.get_registered_model(name)
    except MlflowException as exc:
        if "RESOURCE_DOES_NOT_EXIST" in str(exc.error_code):
            return {}
        raise
    return {alias: str(version) for alias, version in (model.aliases or {}).items()}


def apply_aliases(client: MlflowClient, name: str, wanted: dict[str, str]) -> dict[str, str]:
    """Make the registered model's aliases exactly `wanted` (alias -> MLflow version).

    Moves first, deletions last, so `champion` is never briefly missing.
    """
    current = mlflow_aliases(client, name)
    for alias, version in wanted.items():
        if current.get(alias) != version:
            client.set_registered_model_alias(name, alias, version)
    for alias in current:
        if alias not in wanted:
            client.delete_registered_model_alias(name, alias)
    return current


def lineage_aliases(workspace: Workspace, name: str) -> dict[str, int]:
    """Alias -> lineage version number, from the lineage DB."""
    return dict(workspace.model(name).aliases)


def sync_aliases_in(client: MlflowClient, workspace: Workspace, name: str) -> dict[str, str]:
    """`sync_aliases` on an open client."""
    numbers = lineage_aliases(workspace, name)
    ensure_registered_model(client, name)
    by_number = model_versions_by_number(client, name)
    wanted: dict[str, str] = {}
    for alias, number in numbers.items():
        mv = by_number.get(number)
        if mv is None:
            mv_version = register_in(client, workspace, workspace.resolve(f"{name}@{number}"))
        else:
            mv_version = str(mv.version)
        wanted[alias] = mv_version
    apply_aliases(client, name, wanted)
    record_alias_events_in(client, workspace, name)
    return wanted


def sync_aliases(workspace: Workspace, model_name: str) -> dict[str, str]:
    """Make the MLflow aliases of `model_name` match the lineage aliases (registering
    aliased versions that are missing, deleting aliases lineage does not have) and
    mirror its alias history as tags. Idempotent. Returns alias -> MLflow version."""
    with mlflow_session(workspace) as client:
        return sync_aliases_in(client, workspace, model_name)


# ---------------------------------------------------------------------- alias history
def event_tag(event: AliasEvent) -> tuple[str, str]:
    """The registered-model tag mirroring one recorded alias event."""
    value = json.dumps(
        {
            "alias": event.alias,
            "action": event.action,
            "from": event.from_version,
            "to": event.to_version,
            "actor": event.actor,
            "reason": event.reason,
            "at": event.at.isoformat(),
        },
        sort_keys=True,
    )
    return f"{EVENT_TAG_PREFIX}{event.id or 0:08d}", tag_value(value)


def record_alias_events_in(client: MlflowClient, workspace: Workspace, name: str) -> int:
    """Mirror the model's alias events as tags; returns how many tags were written
    (existing identical ones are skipped)."""
    events = workspace.graph.alias_history(name)
    if not events:
        return 0
    existing = client.get_registered_model(name).tags or {}
    written = 0
    for event in events:
        key, value = event_tag(event)
        if existing.get(key) != value:
            client.set_registered_model_tag(name, key, value)
            written += 1
    return written
