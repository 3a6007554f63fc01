"""The MLflow model registry as a mirror of the lineage graph: the primitives.

One registered model per lineage model (same name); one model version per lineage
version, **with the same number** (`sentiment@3` is version 3 of the registered model
`sentiment`), tagged with its lineage ref, its parents and a link back to lineage;
each backed by a pointer LoggedModel (see `pointer.py`: code + config, no weights);
the registry aliases (`champion`, `candidate`, `previous`, any other) kept equal to the
lineage aliases; and the alias history mirrored as one small run per recorded change
in the model's experiment (`lineage.step = alias`), never as tags on the registered
model.

MLflow numbers a new version max+1, so equal numbers need versions registered in
order: `lineage.tracking.mirror` registers the missing earlier versions of a model
first, under the workspace's mirror lock. Should a registered model hold versions lineage
did not make (registered by hand), numbers would shift: `registered_versions` maps by
the `lineage.version` tag, so a shifted mapping is still never crossed, and
`lineage sync mlflow` reports it.

Every function here is idempotent: it looks for what it would create (by lineage tags)
and only adds what is missing.

MLflow facts handled here: `ModelVersion.version` is an int on SQLite and a str over
REST (always compared as `str`); `search_model_versions` returns no aliases (aliases
are read from `get_registered_model(...).aliases`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

from lineage.tracking.backend import experiment_id, tag_value

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import LoggedModel
    from mlflow.entities.model_registry import ModelVersion

    from lineage.records import AliasEvent, VersionInfo
    from lineage.workspace import Workspace

#: `lineage.step` of the runs mirroring the alias history.
ALIAS_STEP = "alias"
#: Model-version tag naming its LoggedModel (MLflow's SQL registry keeps no model id).
LOGGED_MODEL_TAG = "lineage.logged_model_id"


def logged_model_name(version: VersionInfo) -> str:
    return f"{version.model}-v{version.number}"


def lineage_link(workspace: Workspace, version: VersionInfo) -> str:
    """Where the version lives in lineage: `lineage://<workspace>#<ref>` (a pointer for
    people and scripts; `lineage -w <workspace> show <ref>` opens it)."""
    return f"lineage://{workspace.root}#{version.ref}"


def version_tags(workspace: Workspace, version: VersionInfo) -> dict[str, str]:
    """Tags describing a lineage version, on its LoggedModel and model version."""
    parents = [link.ref for link in version.derivation_parents]
    tags = {
        "lineage.model": version.model,
        "lineage.version": str(version.number),
        "lineage.ref": version.ref,
        "lineage.link": lineage_link(workspace, version),
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
    """The pointer LoggedModel of `version`, if one was logged and finished."""
    exp = experiment_id(client, workspace, version.model)
    found = client.search_logged_models(
        experiment_ids=[exp],
        filter_string=f"tags.`lineage.ref` = '{version.ref}'",
        max_results=50,
    )
    for model in found:
        # A model whose upload crashed is left PENDING/FAILED: not this one.
        ready = str(getattr(model.status, "name", model.status)).upper().endswith("READY")
        if ready and model.tags.get("lineage.manifest_id") == version.manifest_id:
            return model
    return None


def ensure_logged_model(
    client: MlflowClient, workspace: Workspace, version: VersionInfo, run_id: str | None = None
) -> LoggedModel:
    """Find or log `version`'s pointer LoggedModel.

    With `run_id` (a derive run just created), the model is logged as that run's
    output, or an existing one linked to it as output, so MLflow shows the run that
    made it; else it is logged from a small `register` run of the model's experiment.
    """
    from lineage.tracking.pointer import log_pointer_model

    existing = find_logged_model(client, workspace, version)
    if existing is not None:
        if run_id is not None:
            from mlflow.entities import LoggedModelOutput

            client.log_outputs(run_id, [LoggedModelOutput(existing.model_id, step=0)])
        return existing
    exp = experiment_id(client, workspace, version.model)
    tags = version_tags(workspace, version)
    own_run = run_id is None
    if run_id is None:
        run = client.create_run(
            exp, run_name=f"register {version.ref}", tags={**tags, "lineage.step": "register"}
        )
        run_id = run.info.run_id
    try:
        logged = log_pointer_model(
            client,
            exp,
            workspace,
            version,
            name=logged_model_name(version),
            tags=tags,
            run_id=run_id,
        )
    except BaseException:
        if own_run:
            client.set_terminated(run_id, "FAILED")
        raise
    if own_run:
        client.set_terminated(run_id, "FINISHED")
    return cast("LoggedModel", logged)


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
                description=(
                    f"Mirror of the lineage model {name!r}: MLflow version N is {name}@N; "
                    "weights stay in lineage."
                ),
            )
        except MlflowException as again:
            if "RESOURCE_ALREADY_EXISTS" not in str(again.error_code):
                raise


def registered_versions(client: MlflowClient, name: str) -> dict[int, ModelVersion]:
    """Registered versions of `name` keyed by *lineage* version number (their tag)."""
    found: dict[int, ModelVersion] = {}
    for mv in client.search_model_versions(f"name = '{name}'"):
        number = (mv.tags or {}).get("lineage.version")
        if number is not None and number.isdigit():
            # Duplicates can only come from a foreign writer: keep the oldest.
            current = found.get(int(number))
            if current is None or int(str(mv.version)) < int(str(current.version)):
                found[int(number)] = mv
    return found


def foreign_versions(client: MlflowClient, name: str) -> list[str]:
    """MLflow versions of `name` that lineage did not register (no `lineage.version`)."""
    return [
        str(mv.version)
        for mv in client.search_model_versions(f"name = '{name}'")
        if not (mv.tags or {}).get("lineage.version")
    ]


def create_model_version(
    client: MlflowClient, workspace: Workspace, version: VersionInfo, logged: LoggedModel
) -> str:
    """Register `logged` as the next MLflow version of the version's registered model
    (the caller registers in lineage order, so its number is the lineage number)."""
    # create_model_version, not mlflow.register_model: only the former records the
    # LoggedModel id on the version. The source is the model's artifact location, not
    # `models:/<model_id>`: MLflow's SQL registry resolves the latter through the
    # process-wide tracking URI, not this client's.
    mv = client.create_model_version(
        version.model,
        source=logged.artifact_location,
        run_id=logged.source_run_id,
        tags={**version_tags(workspace, version), LOGGED_MODEL_TAG: logged.model_id},
        description=version.message or None,
        model_id=logged.model_id,
    )
    return str(mv.version)


def refresh_version_tags(
    client: MlflowClient, workspace: Workspace, version: VersionInfo, mv: ModelVersion
) -> bool:
    """Bring a registered version's tags up to date (a `lineage link` adds a parent);
    returns whether anything changed."""
    wanted = version_tags(workspace, version)
    current = mv.tags or {}
    changed = False
    for key, value in wanted.items():
        if current.get(key) != value:
            client.set_model_version_tag(version.model, str(mv.version), key, value)
            changed = True
    for key in current:
        if key.startswith("lineage.parent.") and key not in wanted:
            client.delete_model_version_tag(version.model, str(mv.version), key)
            changed = True
    return changed


# ---------------------------------------------------------------------- aliases
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
    """Make the registered model's aliases exactly `wanted` (alias -> MLflow version);
    returns what they were. Moves first, deletions last, so `champion` is never
    briefly missing."""
    current = mlflow_aliases(client, name)
    for alias, version in wanted.items():
        if current.get(alias) != version:
            client.set_registered_model_alias(name, alias, version)
    for alias in current:
        if alias not in wanted:
            client.delete_registered_model_alias(name, alias)
    return current


# ---------------------------------------------------------------------- alias history
def _alias_run_name(event: AliasEvent) -> str:
    target = "-" if event.to_version is None else f"{event.model}@{event.to_version}"
    return f"{event.action} {event.alias} → {target}"


def alias_event_tags(event: AliasEvent) -> dict[str, str]:
    """The tags of the run mirroring one recorded alias change."""
    tags = {
        "lineage.model": event.model,
        "lineage.step": ALIAS_STEP,
        "lineage.alias_event_id": str(event.id or 0),
        "lineage.alias": event.alias,
        "lineage.alias_action": event.action,
        "lineage.from_version": "" if event.from_version is None else str(event.from_version),
        "lineage.to_version": "" if event.to_version is None else str(event.to_version),
        "lineage.actor": event.actor,
        "mlflow.user": event.actor,
        # Shown as the run's description in the MLflow UI.
        "mlflow.note.content": event.reason,
    }
    return {key: tag_value(value) for key, value in tags.items()}


def mirrored_alias_event_ids(client: MlflowClient, experiment: str) -> set[int]:
    """Ids of the alias events that already have their run."""
    ids: set[int] = set()
    token = None
    while True:
        page = client.search_runs(
            [experiment],
            filter_string=f"tags.`lineage.step` = '{ALIAS_STEP}'",
            max_results=1000,
            page_token=token,
        )
        for run in page:
            value = run.data.tags.get("lineage.alias_event_id", "")
            if value.isdigit():
                ids.add(int(value))
        token = page.token
        if not token:
            return ids


def record_alias_history_in(client: MlflowClient, workspace: Workspace, name: str) -> int:
    """Mirror each alias event of `name` not yet in MLflow as a finished run, started
    at the event's time; returns how many runs were written."""
    events = workspace.graph.alias_history(name)
    if not events:
        return 0
    exp = experiment_id(client, workspace, name)
    done = mirrored_alias_event_ids(client, exp)
    written = 0
    for event in events:
        if event.id in done:
            continue
        at_ms = int(event.at.timestamp() * 1000)
        run = client.create_run(
            exp, start_time=at_ms, tags=alias_event_tags(event), run_name=_alias_run_name(event)
        )
        client.set_terminated(run.info.run_id, "FINISHED", end_time=at_ms)
        written += 1
    return written
