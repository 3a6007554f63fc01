"""`add`, `commit` and `link`: record versions and the edges between them.

Every function validates its whole request before it writes anything, so bad input
leaves the graph DB and the object store as they were. Weights are stored first (the
store makes every object durable before it returns); the version row that names them
is written last, in one transaction, so a version is visible only once complete.

>>> fresh = Workspace.init(tmp / "fresh")
>>> base = add(fresh, "base", source=write_tiny_weights(tmp / "base"))
>>> ft = add(fresh, "ft", source=write_tiny_weights(tmp / "ft", seed=1), parents=["base@1"],
...          kind="finetune")
>>> ft.ref, [p.ref for p in ft.derivation_parents]
('ft@1', ['base@1'])
>>> commit(fresh, "base", source=write_tiny_weights(tmp / "base2", seed=2)).ref
'base@2'
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lineage.errors import CycleError, ModelExistsError, UsageError
from lineage.graph.repo import NewVersion, check_kind
from lineage.provenance import default_author, library_versions
from lineage.records import Provenance, VersionInfo
from lineage.refs import Ref, parse_ref, validate_name

if TYPE_CHECKING:
    from lineage.ops.lossy import LossyRequest
    from lineage.store import Manifest
    from lineage.workspace import Workspace

#: progress(done_bytes, total_bytes) while weights are stored.
ByteProgress = Callable[[int, int], None]
#: Re-make a derivable version's files into an empty folder (see `ops.derive`).
Rematerialize = Callable[[Path], None]


def add(
    workspace: Workspace,
    name: str,
    *,
    source: str | Path,
    parents: Sequence[str] = (),
    kind: str | None = None,
    message: str = "",
    author: str | None = None,
    provenance: Provenance | None = None,
    tags: Sequence[str] = (),
    progress: ByteProgress | None = None,
    rematerialize: Rematerialize | None = None,
    derivation_spec: dict[str, Any] | None = None,
    lossy: LossyRequest | None = None,
) -> VersionInfo:
    """Register a new model from existing weights; it becomes `name@1`.

    `parents` are references (`base@2`, `base@champion`); `kind` says how this model
    was derived from them (finetune, adapter, distill...). With `lossy` (a validated
    `ops.lossy.LossyRequest`), the weights are stored approximately only if every test
    inherited from the parents still passes on them (see `lineage.ops.lossy`).
    """
    validate_name(name)
    if workspace.graph.model_exists(name):
        raise ModelExistsError(f"model {name!r} already exists (use `lineage commit`)")
    return _create_version(
        workspace,
        name,
        source=Path(source),
        parents=parents,
        kind=kind,
        message=message,
        author=author,
        provenance=provenance,
        tags=tags,
        progress=progress,
        new_model=True,
        rematerialize=rematerialize,
        derivation_spec=derivation_spec,
        lossy=lossy,
    )


def commit(
    workspace: Workspace,
    name: str,
    *,
    source: str | Path,
    message: str = "",
    parents: Sequence[str] | None = None,
    kind: str | None = None,
    author: str | None = None,
    provenance: Provenance | None = None,
    tags: Sequence[str] = (),
    progress: ByteProgress | None = None,
    rematerialize: Rematerialize | None = None,
    derivation_spec: dict[str, Any] | None = None,
    lossy: LossyRequest | None = None,
) -> VersionInfo:
    """Record the next version of an existing model.

    Without `parents`, the new version keeps the derivation parents (and kind) of the
    current latest version; a versioning edge links latest -> new. The latest version
    is also a delta base, so an update of a model costs what changed.
    """
    validate_name(name)
    latest = workspace.resolve(Ref(name=name, alias="latest"))
    if parents is None:
        parents = [link.ref for link in latest.derivation_parents]
        kind = kind or latest.kind
    return _create_version(
        workspace,
        name,
        source=Path(source),
        parents=parents,
        kind=kind,
        message=message,
        author=author,
        provenance=provenance,
        tags=tags,
        progress=progress,
        new_model=False,
        rematerialize=rematerialize,
        derivation_spec=derivation_spec,
        lossy=lossy,
        previous=latest,
    )


def link(workspace: Workspace, child: str, parent: str, *, kind: str = "other") -> VersionInfo:
    """Add a derivation edge between two existing versions (refuses cycles)."""
    version = workspace.version_by_id(workspace.graph.link(child, parent, kind))
    from lineage.tracking.mirror import queue_version

    queue_version(workspace, version)  # its MLflow version gains the parent tag
    return version


def _create_version(
    workspace: Workspace,
    name: str,
    *,
    source: Path,
    parents: Sequence[str],
    kind: str | None,
    message: str,
    author: str | None,
    provenance: Provenance | None,
    tags: Sequence[str],
    progress: ByteProgress | None,
    new_model: bool,
    rematerialize: Rematerialize | None,
    derivation_spec: dict[str, Any] | None,
    lossy: LossyRequest | None,
    previous: VersionInfo | None = None,
) -> VersionInfo:
    from lineage.store.sources import check_weights_source

    if kind is not None:
        check_kind(kind)
    parent_refs = list(parents)
    if len(set(parent_refs)) != len(parent_refs):
        raise UsageError("the same parent is named twice")
    for ref in parent_refs:
        if parse_ref(ref).name == name and new_model:
            raise CycleError(f"model {name!r} cannot be its own parent")
    if parent_refs and kind is None:
        kind = "merge" if len(parent_refs) > 1 else "other"
    check_weights_source(source)  # no weights, pickles, links: refused before any write
    parent_versions = [workspace.resolve(ref) for ref in parent_refs]
    for parent in parent_versions:
        if parent.model == name:
            raise CycleError(
                f"{parent.ref} cannot be a derivation parent of a version of its own model "
                "(versions of one model are linked by versioning edges)"
            )
    provenance = provenance or Provenance()
    bases = delta_bases(workspace, source, parent_versions, previous)
    if lossy is None:
        manifest = _ingest(workspace, source, bases, progress, rematerialize, derivation_spec)
    else:
        from lineage.ops.lossy import guarded_ingest

        manifest, decision = guarded_ingest(
            workspace,
            name,
            source,
            parent_versions,
            bases,
            lossy,
            data=provenance.extra.get("data"),
            progress=progress,
            rematerialize=rematerialize,
            derivation_spec=derivation_spec,
        )
        provenance = replace(provenance, extra={**provenance.extra, "lossy": decision.to_dict()})
    manifest_id = workspace.store.put_manifest(manifest)
    version_id = workspace.graph.create_version(
        NewVersion(
            name=name,
            manifest_id=manifest_id,
            kind=kind,
            provenance=replace(
                provenance, library_versions=provenance.library_versions or library_versions()
            ),
            author=author or default_author(),
            message=message,
            tags=tags,
            parent_ids=[p.id for p in parent_versions],
            new_model=new_model,
        )
    )
    version = workspace.version_by_id(version_id)
    from lineage.tracking.mirror import queue_version

    queue_version(workspace, version)  # MLflow registers it, off this command's path
    return version


def delta_bases(
    workspace: Workspace,
    source: Path,
    parents: Sequence[VersionInfo],
    previous: VersionInfo | None,
) -> list[Manifest]:
    """The manifests a new version may be stored as deltas against (the rule is the
    store's, `lineage.store.bases`): the previous version of its model, its derivation
    parents, and the stored versions its weights most resemble (each model's latest,
    what `--parent auto` would suggest). Per tensor the smallest encoding wins."""
    from lineage.store.bases import delta_bases as store_delta_bases

    others = {v.ref: v.manifest_id for v in workspace.search(latest_only=True)}
    return store_delta_bases(
        workspace.store,
        source,
        previous=previous.manifest_id if previous is not None else None,
        parents=[p.manifest_id for p in parents],
        others=others,
    )


def _ingest(
    workspace: Workspace,
    source: Path,
    bases: list[Manifest],
    progress: ByteProgress | None,
    rematerialize: Rematerialize | None,
    derivation_spec: dict[str, Any] | None,
) -> Manifest:
    from lineage.store import ingest

    kwargs: dict[str, Any] = {"parents": bases, "progress": progress}
    if rematerialize is not None:
        kwargs["rematerialize"] = rematerialize
        kwargs["derivation_spec"] = derivation_spec
    return ingest(workspace.store, source, **kwargs)
