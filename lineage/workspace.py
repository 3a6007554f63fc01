"""The workspace: one object whose methods are lineage's verbs.

The CLI is a thin layer over this class (parse arguments, call one method, print).
Every method validates its input before it writes anything, so a bad request leaves
the graph DB and the object store as they were.

>>> ws = Workspace.init("/tmp/ws")                                   # doctest: +SKIP
>>> ws.add("base", source=Path("minilm/"))                           # doctest: +SKIP
>>> ws.add("sentiment", source=Path("ft/"), parents=["base@1"], kind="finetune")  # doctest: +SKIP
>>> [v.ref for v in ws.descendants("base@1")]                        # doctest: +SKIP
['sentiment@1']
"""

from __future__ import annotations

import getpass
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Engine, and_, func, select
from sqlalchemy.exc import IntegrityError

from lineage import graph
from lineage.config import CONFIG_FILE, LINEAGE_DIR, WorkspaceConfig, find_workspace_root
from lineage.db import schema as t
from lineage.db.engine import is_sqlite, make_engine
from lineage.errors import (
    CycleError,
    LineageError,
    ModelExistsError,
    ModelNotFoundError,
    UsageError,
    VersionNotFoundError,
    WorkspaceExistsError,
)
from lineage.records import AliasEvent, ModelInfo, ParentLink, Provenance, VersionInfo
from lineage.refs import Ref, parse_ref, validate_alias, validate_name

if TYPE_CHECKING:
    from lineage.store import LossyOptions, Manifest, ObjectStore

ProgressCallback = Callable[[int, int], None]


def _now() -> datetime:
    return datetime.now(UTC)


def default_author() -> str:
    if os.environ.get("LINEAGE_AUTHOR"):
        return os.environ["LINEAGE_AUTHOR"]
    try:
        return getpass.getuser()
    except Exception:  # no passwd entry in some containers
        return "unknown"


def library_versions() -> dict[str, str]:
    """Versions of the libraries that shape weights, recorded as provenance."""
    from importlib.metadata import PackageNotFoundError, version

    found: dict[str, str] = {}
    for package in ("lineage", "torch", "transformers", "peft", "safetensors", "numpy"):
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            continue
    return found


class Workspace:
    """A lineage workspace: graph DB + object store (+ MLflow and Prefect settings)."""

    def __init__(self, root: Path, config: WorkspaceConfig) -> None:
        self.root = root
        self.config = config
        self._engine: Engine | None = None
        self._store: ObjectStore | None = None

    # ------------------------------------------------------------------ lifecycle
    @classmethod
    def init(cls, path: str | Path = ".", *, graph_url: str = "", store_url: str = "") -> Workspace:
        """Create a workspace in `path` (created if missing) and migrate its DB."""
        root = Path(path).expanduser().resolve()
        lineage_dir = root / LINEAGE_DIR
        if (lineage_dir / CONFIG_FILE).exists():
            raise WorkspaceExistsError(f"a lineage workspace already exists at {root}")
        config = WorkspaceConfig(graph_url=graph_url, store_url=store_url)
        workspace = cls(root, config)
        # Migrate before the config file exists, so a failed init leaves no workspace.
        lineage_dir.mkdir(parents=True, exist_ok=True)
        (lineage_dir / "objects").mkdir(exist_ok=True)
        from lineage.db.migrate import upgrade  # alembic is slow to import: only here

        try:
            upgrade(workspace.engine)
        except Exception as exc:
            raise LineageError(
                f"cannot create the graph DB at {workspace.graph_url}: {exc}"
            ) from exc
        tmp = lineage_dir / (CONFIG_FILE + ".tmp")
        tmp.write_text(config.to_toml())
        os.replace(tmp, lineage_dir / CONFIG_FILE)
        return workspace

    @classmethod
    def open(cls, path: str | Path | None = None) -> Workspace:
        """Open the workspace at `path`, `$LINEAGE_WORKSPACE`, or above the cwd."""
        root = find_workspace_root(path)
        config = WorkspaceConfig.from_toml((root / LINEAGE_DIR / CONFIG_FILE).read_text())
        return cls(root, config)

    @property
    def lineage_dir(self) -> Path:
        return self.root / LINEAGE_DIR

    @property
    def graph_url(self) -> str:
        return self.config.graph_url or f"sqlite:///{self.lineage_dir / 'graph.db'}"

    @property
    def store_url(self) -> str:
        return self.config.store_url or str(self.lineage_dir / "objects")

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            self._engine = make_engine(self.graph_url)
        return self._engine

    @property
    def store(self) -> ObjectStore:
        if self._store is None:
            from lineage.store import ObjectStore

            self._store = ObjectStore.open(
                self.store_url, max_chain_depth=self.config.delta_chain_depth
            )
        return self._store

    def close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        with self.engine.connect() as conn:
            yield conn

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        with self.engine.begin() as conn:
            yield conn

    # ------------------------------------------------------------------ resolving
    def _model_row(self, conn: Connection, name: str) -> Any:
        row = conn.execute(select(t.models).where(t.models.c.name == name)).first()
        if row is None:
            raise ModelNotFoundError(f"unknown model {name!r}")
        return row

    def _resolve_id(self, conn: Connection, ref: str | Ref) -> int:
        parsed = parse_ref(ref) if isinstance(ref, str) else ref
        model = self._model_row(conn, parsed.name)
        if parsed.version is not None:
            version_id = conn.execute(
                select(t.versions.c.id).where(
                    and_(t.versions.c.model_id == model.id, t.versions.c.number == parsed.version)
                )
            ).scalar()
            if version_id is None:
                raise VersionNotFoundError(f"model {parsed.name!r} has no version {parsed.version}")
            return int(version_id)
        if parsed.is_latest:
            version_id = conn.execute(
                select(t.versions.c.id)
                .where(t.versions.c.model_id == model.id)
                .order_by(t.versions.c.number.desc())
                .limit(1)
            ).scalar()
            if version_id is None:
                raise VersionNotFoundError(f"model {parsed.name!r} has no versions")
            return int(version_id)
        version_id = conn.execute(
            select(t.aliases.c.version_id).where(
                and_(t.aliases.c.model_id == model.id, t.aliases.c.alias == parsed.alias)
            )
        ).scalar()
        if version_id is None:
            raise VersionNotFoundError(f"model {parsed.name!r} has no alias {parsed.alias!r}")
        return int(version_id)

    def resolve(self, ref: str | Ref) -> VersionInfo:
        """The version a reference points to (`name`, `name@3`, `name@champion`)."""
        with self._read() as conn:
            return self._load_versions(conn, [self._resolve_id(conn, ref)])[0]

    def version_by_id(self, version_id: int) -> VersionInfo:
        with self._read() as conn:
            found = self._load_versions(conn, [version_id])
        if not found:
            raise VersionNotFoundError(f"no version with id {version_id}")
        return found[0]

    def versions_by_id(self, ids: Sequence[int]) -> list[VersionInfo]:
        with self._read() as conn:
            return self._load_versions(conn, list(ids))

    def _load_versions(self, conn: Connection, ids: Sequence[int]) -> list[VersionInfo]:
        """Load versions with parents and aliases, in the order of `ids` (batched)."""
        if not ids:
            return []
        wanted = list(dict.fromkeys(ids))
        rows: dict[int, Any] = {}
        parents: dict[int, list[ParentLink]] = {i: [] for i in wanted}
        aliases: dict[int, list[str]] = {i: [] for i in wanted}
        parent_version = t.versions.alias("pv")
        parent_model = t.models.alias("pm")
        for start in range(0, len(wanted), 5000):
            chunk = wanted[start : start + 5000]
            query = (
                select(t.versions, t.models.c.name.label("model_name"))
                .join(t.models, t.models.c.id == t.versions.c.model_id)
                .where(t.versions.c.id.in_(chunk))
            )
            for row in conn.execute(query):
                rows[row.id] = row
            edge_query = (
                select(
                    t.edges.c.child_id,
                    t.edges.c.parent_id,
                    t.edges.c.edge_type,
                    t.edges.c.kind,
                    parent_version.c.number,
                    parent_model.c.name,
                )
                .join(parent_version, parent_version.c.id == t.edges.c.parent_id)
                .join(parent_model, parent_model.c.id == parent_version.c.model_id)
                .where(t.edges.c.child_id.in_(chunk))
                .order_by(t.edges.c.child_id, t.edges.c.edge_type, t.edges.c.position)
            )
            for child_id, parent_id, edge_type, kind, number, name in conn.execute(edge_query):
                parents[child_id].append(ParentLink(f"{name}@{number}", parent_id, edge_type, kind))
            alias_query = select(t.aliases.c.version_id, t.aliases.c.alias).where(
                t.aliases.c.version_id.in_(chunk)
            )
            for version_id, alias in conn.execute(alias_query):
                aliases[version_id].append(alias)
        result = []
        for version_id in wanted:
            row = rows.get(version_id)
            if row is None:
                continue
            result.append(
                VersionInfo(
                    id=row.id,
                    model=row.model_name,
                    number=row.number,
                    manifest_id=row.manifest_id,
                    kind=row.kind,
                    recipe_id=row.recipe_id,
                    recipe_params=row.recipe_params or {},
                    data_fingerprint=row.data_fingerprint,
                    code_version=row.code_version,
                    image_digest=row.image_digest,
                    library_versions=row.library_versions or {},
                    author=row.author,
                    message=row.message,
                    tags=list(row.tags or []),
                    extra=row.extra or {},
                    created_at=_aware(row.created_at),
                    parents=parents[version_id],
                    aliases=sorted(aliases[version_id]),
                )
            )
        return result

    # ------------------------------------------------------------------ models
    def models(self) -> list[ModelInfo]:
        """Every model, by name, with its latest version number and aliases."""
        with self._read() as conn:
            return self._model_infos(conn)

    def model(self, name: str) -> ModelInfo:
        validate_name(name)
        with self._read() as conn:
            self._model_row(conn, name)
            return self._model_infos(conn, name)[0]

    def _model_infos(self, conn: Connection, name: str | None = None) -> list[ModelInfo]:
        query = select(t.models).order_by(t.models.c.name)
        if name is not None:
            query = query.where(t.models.c.name == name)
        latest = dict(
            conn.execute(
                select(t.versions.c.model_id, func.max(t.versions.c.number)).group_by(
                    t.versions.c.model_id
                )
            ).all()
        )
        alias_rows = conn.execute(
            select(t.aliases.c.model_id, t.aliases.c.alias, t.versions.c.number).join(
                t.versions, t.versions.c.id == t.aliases.c.version_id
            )
        ).all()
        alias_map: dict[int, dict[str, int]] = {}
        for model_id, alias, number in alias_rows:
            alias_map.setdefault(model_id, {})[alias] = number
        return [
            ModelInfo(
                id=row.id,
                name=row.name,
                description=row.description,
                tags=list(row.tags or []),
                auto_promote=bool(row.auto_promote),
                require_approval=bool(row.require_approval),
                created_at=_aware(row.created_at),
                latest=latest.get(row.id),
                aliases=dict(sorted(alias_map.get(row.id, {}).items())),
            )
            for row in conn.execute(query)
        ]

    def set_model_policy(
        self,
        name: str,
        *,
        auto_promote: bool | None = None,
        require_approval: bool | None = None,
        description: str | None = None,
    ) -> ModelInfo:
        """Change how a model is promoted (automatic, or gated by a human)."""
        values: dict[str, Any] = {}
        if auto_promote is not None:
            values["auto_promote"] = auto_promote
        if require_approval is not None:
            values["require_approval"] = require_approval
        if description is not None:
            values["description"] = description
        with self._write() as conn:
            model = self._model_row(conn, name)
            if values:
                conn.execute(t.models.update().where(t.models.c.id == model.id).values(**values))
        return self.model(name)

    # ------------------------------------------------------------------ writing versions
    def add(
        self,
        name: str,
        *,
        source: str | Path,
        parents: Sequence[str] = (),
        kind: str | None = None,
        message: str = "",
        author: str | None = None,
        provenance: Provenance | None = None,
        tags: Sequence[str] = (),
        progress: ProgressCallback | None = None,
        rematerialize: Callable[[Path], None] | None = None,
        derivation_spec: dict[str, Any] | None = None,
        lossy: LossyOptions | None = None,
        lossy_tolerance: float = 0.01,
    ) -> VersionInfo:
        """Register a new model from existing weights; it becomes `name@1`.

        `parents` are references (`base@2`, `base@champion`); `kind` says how this
        model was derived from them (finetune, adapter, distill, ...). With `lossy`,
        the weights are stored approximately only if every test inherited from the
        parents still passes on them within `lossy_tolerance` (see `lineage.api.lossy`).
        """
        validate_name(name)
        with self._read() as conn:
            if conn.execute(select(t.models.c.id).where(t.models.c.name == name)).first():
                raise ModelExistsError(f"model {name!r} already exists (use `lineage commit`)")
        return self._create_version(
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
            lossy_tolerance=lossy_tolerance,
        )

    def commit(
        self,
        name: str,
        *,
        source: str | Path,
        message: str = "",
        parents: Sequence[str] | None = None,
        kind: str | None = None,
        author: str | None = None,
        provenance: Provenance | None = None,
        tags: Sequence[str] = (),
        progress: ProgressCallback | None = None,
        rematerialize: Callable[[Path], None] | None = None,
        derivation_spec: dict[str, Any] | None = None,
        lossy: LossyOptions | None = None,
        lossy_tolerance: float = 0.01,
    ) -> VersionInfo:
        """Record the next version of an existing model.

        Without `parents`, the new version keeps the derivation parents (and kind)
        of the current latest version; a versioning edge links latest -> new. With
        `lossy`, as in `add`, guarded by the model's own and inherited tests.
        """
        validate_name(name)
        latest = self.resolve(Ref(name=name, alias="latest"))
        if parents is None:
            parents = [link.ref for link in latest.derivation_parents]
            kind = kind or latest.kind
        return self._create_version(
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
            lossy_tolerance=lossy_tolerance,
        )

    def _create_version(
        self,
        name: str,
        *,
        source: Path,
        parents: Sequence[str],
        kind: str | None,
        message: str,
        author: str | None,
        provenance: Provenance | None,
        tags: Sequence[str],
        progress: ProgressCallback | None,
        new_model: bool,
        rematerialize: Callable[[Path], None] | None,
        derivation_spec: dict[str, Any] | None,
        lossy: LossyOptions | None = None,
        lossy_tolerance: float = 0.01,
    ) -> VersionInfo:
        if lossy is not None:
            from lineage.api.lossy import check_lossy_request

            check_lossy_request(lossy, lossy_tolerance)
        if kind is not None and kind not in t.DERIVATION_KINDS:
            raise UsageError(
                f"unknown derivation kind {kind!r}; use one of {', '.join(t.DERIVATION_KINDS)}"
            )
        parent_refs = list(parents)
        if len(set(parent_refs)) != len(parent_refs):
            raise UsageError("the same parent is named twice")
        for ref in parent_refs:
            if parse_ref(ref).name == name and new_model:
                raise CycleError(f"model {name!r} cannot be its own parent")
        if parent_refs and kind is None:
            kind = "merge" if len(parent_refs) > 1 else "other"
        from lineage.store.sources import check_weights_source  # (numpy: not at import)

        check_weights_source(source)
        parent_versions = [self.resolve(ref) for ref in parent_refs]
        for parent in parent_versions:
            if parent.model == name:
                raise CycleError(
                    f"{parent.ref} cannot be a derivation parent of a version of its own model "
                    "(versions of one model are linked by versioning edges)"
                )
        provenance = provenance or Provenance()

        if lossy is None:
            manifest = self._ingest(
                name, source, parent_versions, progress, rematerialize, derivation_spec
            )
        else:
            from lineage.api.lossy import guarded_ingest

            manifest, decision = guarded_ingest(
                self,
                name,
                source,
                parent_versions,
                lossy,
                lossy_tolerance,
                data=provenance.extra.get("data"),
                progress=progress,
                rematerialize=rematerialize,
                derivation_spec=derivation_spec,
            )
            provenance = replace(
                provenance, extra={**provenance.extra, "lossy": decision.to_dict()}
            )
        manifest_id = self.store.put_manifest(manifest)

        now = _now()
        try:
            with self._write() as conn:
                if new_model:
                    model_id = conn.execute(
                        t.models.insert().values(
                            name=name,
                            description="",
                            tags=[],
                            auto_promote=True,
                            require_approval=False,
                            created_at=now,
                        )
                    ).inserted_primary_key[0]
                else:
                    model_id = self._lock_model(conn, name)
                previous_id = conn.execute(
                    select(t.versions.c.id, t.versions.c.number)
                    .where(t.versions.c.model_id == model_id)
                    .order_by(t.versions.c.number.desc())
                    .limit(1)
                ).first()
                number = 1 if previous_id is None else previous_id.number + 1
                version_id = conn.execute(
                    t.versions.insert().values(
                        model_id=model_id,
                        number=number,
                        manifest_id=manifest_id,
                        kind=kind,
                        recipe_id=provenance.recipe_id,
                        recipe_params=provenance.recipe_params,
                        data_fingerprint=provenance.data_fingerprint,
                        code_version=provenance.code_version,
                        image_digest=provenance.image_digest,
                        library_versions=provenance.library_versions or library_versions(),
                        author=author or default_author(),
                        message=message,
                        tags=list(tags),
                        extra=provenance.extra,
                        created_at=now,
                    )
                ).inserted_primary_key[0]
                for position, parent in enumerate(parent_versions):
                    conn.execute(
                        t.edges.insert().values(
                            child_id=version_id,
                            parent_id=parent.id,
                            edge_type=t.DERIVATION,
                            kind=kind,
                            position=position,
                        )
                    )
                if previous_id is not None:
                    conn.execute(
                        t.edges.insert().values(
                            child_id=version_id,
                            parent_id=previous_id.id,
                            edge_type=t.VERSIONING,
                            kind=None,
                            position=0,
                        )
                    )
        except IntegrityError:
            if new_model:
                raise ModelExistsError(f"model {name!r} already exists") from None
            raise
        return self.version_by_id(int(version_id))

    def _lock_model(self, conn: Connection, name: str) -> int:
        """Serialise version numbering of one model across writers."""
        query = select(t.models.c.id).where(t.models.c.name == name)
        if not is_sqlite(self.graph_url):
            query = query.with_for_update()  # SQLite already holds the write lock
        model_id = conn.execute(query).scalar()
        if model_id is None:
            raise ModelNotFoundError(f"unknown model {name!r}")
        return int(model_id)

    def _ingest(
        self,
        name: str,
        source: Path,
        parents: Sequence[VersionInfo],
        progress: ProgressCallback | None,
        rematerialize: Callable[[Path], None] | None,
        derivation_spec: dict[str, Any] | None,
    ) -> Manifest:
        from lineage.store import ingest

        kwargs: dict[str, Any] = {
            "parents": self.delta_bases(name, parents, source),
            "progress": progress,
        }
        if rematerialize is not None:
            kwargs["rematerialize"] = rematerialize
            kwargs["derivation_spec"] = derivation_spec
        return ingest(self.store, source, **kwargs)

    def delta_bases(
        self, name: str, parents: Sequence[VersionInfo], source: Path
    ) -> list[Manifest]:
        """What a new version of `name` may be delta-coded against (the rule is the
        store's `delta_bases`): its previous version, its parents, similar versions."""
        from lineage.store.bases import delta_bases

        with self._read() as conn:
            previous = conn.execute(
                select(t.versions.c.manifest_id)
                .join(t.models, t.models.c.id == t.versions.c.model_id)
                .where(t.models.c.name == name)
                .order_by(t.versions.c.number.desc())
                .limit(1)
            ).scalar()
        others = {v.ref: v.manifest_id for v in self.search(latest_only=True)}
        return delta_bases(
            self.store,
            source,
            previous=previous,
            parents=[p.manifest_id for p in parents],
            others=others,
        )

    def link(self, child: str, parent: str, *, kind: str = "other") -> VersionInfo:
        """Add a derivation edge between two existing versions (refuses cycles)."""
        if kind not in t.DERIVATION_KINDS:
            raise UsageError(
                f"unknown derivation kind {kind!r}; use one of {', '.join(t.DERIVATION_KINDS)}"
            )
        with self._write() as conn:
            child_id = self._resolve_id(conn, child)
            parent_id = self._resolve_id(conn, parent)
            if graph.would_create_cycle(conn, child_id, parent_id):
                raise CycleError(f"an edge {parent} -> {child} would make the lineage cyclic")
            exists = conn.execute(
                select(t.edges.c.id).where(
                    and_(
                        t.edges.c.child_id == child_id,
                        t.edges.c.parent_id == parent_id,
                        t.edges.c.edge_type == t.DERIVATION,
                    )
                )
            ).first()
            if exists:
                raise UsageError(f"{child} is already derived from {parent}")
            position = conn.execute(
                select(func.count()).where(
                    and_(t.edges.c.child_id == child_id, t.edges.c.edge_type == t.DERIVATION)
                )
            ).scalar()
            conn.execute(
                t.edges.insert().values(
                    child_id=child_id,
                    parent_id=parent_id,
                    edge_type=t.DERIVATION,
                    kind=kind,
                    position=int(position or 0),
                )
            )
        return self.resolve(child)

    # ------------------------------------------------------------------ reading the graph
    def log(self, name: str) -> list[VersionInfo]:
        """Every version of a model, newest first."""
        validate_name(name)
        with self._read() as conn:
            model = self._model_row(conn, name)
            ids = conn.execute(
                select(t.versions.c.id)
                .where(t.versions.c.model_id == model.id)
                .order_by(t.versions.c.number.desc())
            ).scalars()
            return self._load_versions(conn, list(ids))

    def children(self, ref: str) -> list[VersionInfo]:
        """Versions derived directly from `ref`."""
        with self._read() as conn:
            version_id = self._resolve_id(conn, ref)
            ids = conn.execute(
                select(t.edges.c.child_id)
                .where(and_(t.edges.c.parent_id == version_id, t.edges.c.edge_type == t.DERIVATION))
                .order_by(t.edges.c.child_id)
            ).scalars()
            return self._load_versions(conn, list(ids))

    def descendants(self, ref: str, *, include_versions: bool = False) -> list[VersionInfo]:
        """Everything derived from `ref`, in topological order (parents first).

        With `include_versions`, later versions of descendants count too.
        """
        types = (t.DERIVATION, t.VERSIONING) if include_versions else (t.DERIVATION,)
        with self._read() as conn:
            version_id = self._resolve_id(conn, ref)
            return self._load_versions(conn, graph.descendants_in_order(conn, version_id, types))

    def ancestors(self, ref: str, *, include_versions: bool = False) -> list[VersionInfo]:
        """Everything `ref` was derived from, oldest first."""
        types = (t.DERIVATION, t.VERSIONING) if include_versions else (t.DERIVATION,)
        with self._read() as conn:
            version_id = self._resolve_id(conn, ref)
            return self._load_versions(conn, graph.ancestors_in_order(conn, version_id, types))

    def path(self, source: str, target: str) -> list[VersionInfo] | None:
        """The shortest chain of edges from `source` down to `target`, or None."""
        with self._read() as conn:
            source_id = self._resolve_id(conn, source)
            target_id = self._resolve_id(conn, target)
            ids = graph.shortest_path(conn, source_id, target_id, (t.DERIVATION, t.VERSIONING))
            return None if ids is None else self._load_versions(conn, ids)

    def search(
        self,
        *,
        kind: str | None = None,
        tag: str | None = None,
        recipe: str | None = None,
        latest_only: bool = False,
    ) -> list[VersionInfo]:
        """Versions filtered by derivation kind, tag (version or model tag) or recipe."""
        with self._read() as conn:
            query = select(t.versions.c.id, t.versions.c.tags, t.models.c.tags).join(
                t.models, t.models.c.id == t.versions.c.model_id
            )
            if kind is not None:
                query = query.where(t.versions.c.kind == kind)
            if recipe is not None:
                query = query.where(t.versions.c.recipe_id == recipe)
            if latest_only:
                newest = (
                    select(t.versions.c.model_id, func.max(t.versions.c.number).label("n"))
                    .group_by(t.versions.c.model_id)
                    .subquery()
                )
                query = query.join(
                    newest,
                    and_(
                        newest.c.model_id == t.versions.c.model_id,
                        newest.c.n == t.versions.c.number,
                    ),
                )
            ids = [
                row[0]
                for row in conn.execute(query.order_by(t.versions.c.id))
                if tag is None or tag in (row[1] or []) or tag in (row[2] or [])
            ]
            return self._load_versions(conn, ids)

    def graph_data(
        self, names: Sequence[str] | None = None, *, all_versions: bool = False
    ) -> dict[str, Any]:
        """Nodes (versions) and edges of the whole graph, or of some models' families
        (their versions plus everything connected to them by derivation edges).

        By default only the current family is shown: each model's latest version and
        the versions it was derived from; `all_versions` shows every version and the
        versioning edges between them.
        """
        from lineage.render import GraphView

        with self._read() as conn:
            if all_versions:
                wanted = select(t.versions.c.id)
            else:
                newest = (
                    select(func.max(t.versions.c.id).label("id"))
                    .group_by(t.versions.c.model_id)
                    .subquery()
                )
                wanted = select(newest.c.id)
            if names:
                model_ids = [self._model_row(conn, name).id for name in names]
                seeds = set(
                    conn.execute(
                        wanted.where(t.versions.c.model_id.in_(model_ids))
                        if all_versions
                        else select(func.max(t.versions.c.id))
                        .where(t.versions.c.model_id.in_(model_ids))
                        .group_by(t.versions.c.model_id)
                    ).scalars()
                )
                ids = set(seeds)
                for seed in seeds:
                    ids.update(graph.ancestor_ids(conn, seed))
                    ids.update(graph.descendant_ids(conn, seed))
            else:
                ids = set(conn.execute(wanted).scalars())
            if not all_versions:
                # Keep the (possibly older) versions the shown ones were derived from.
                ids.update(parent for parent, _ in graph.edges_into(conn, ids))
                if names:
                    ids = {i for i in ids if i in seeds or self._is_latest(conn, i)} | {
                        parent for parent, _ in graph.edges_into(conn, seeds)
                    }
            versions = self._load_versions(conn, sorted(ids))
        view = GraphView.from_versions(versions)
        if not all_versions:
            view.edges = [edge for edge in view.edges if edge.edge_type != t.VERSIONING]
        return view.to_dict()

    def _is_latest(self, conn: Connection, version_id: int) -> bool:
        row = conn.execute(
            select(t.versions.c.model_id, t.versions.c.number).where(t.versions.c.id == version_id)
        ).one()
        newest = conn.execute(
            select(func.max(t.versions.c.number)).where(t.versions.c.model_id == row.model_id)
        ).scalar()
        return bool(row.number == newest)

    # ------------------------------------------------------------------ aliases
    def set_alias(
        self,
        ref: str,
        alias: str,
        *,
        action: str = "set",
        actor: str | None = None,
        reason: str = "",
    ) -> AliasEvent:
        """Point `alias` of ref's model at ref's version; the change is recorded."""
        validate_alias(alias)
        with self._write() as conn:
            return self._set_alias(conn, ref, alias, action=action, actor=actor, reason=reason)

    def _set_alias(
        self,
        conn: Connection,
        ref: str,
        alias: str,
        *,
        action: str,
        actor: str | None,
        reason: str,
    ) -> AliasEvent:
        version_id = self._resolve_id(conn, ref)
        version = conn.execute(select(t.versions).where(t.versions.c.id == version_id)).one()
        model_name = conn.execute(
            select(t.models.c.name).where(t.models.c.id == version.model_id)
        ).scalar_one()
        current = conn.execute(
            select(t.aliases.c.id, t.aliases.c.version_id).where(
                and_(t.aliases.c.model_id == version.model_id, t.aliases.c.alias == alias)
            )
        ).first()
        now = _now()
        if current is None:
            conn.execute(
                t.aliases.insert().values(
                    model_id=version.model_id, alias=alias, version_id=version_id, updated_at=now
                )
            )
            from_number = None
        else:
            conn.execute(
                t.aliases.update()
                .where(t.aliases.c.id == current.id)
                .values(version_id=version_id, updated_at=now)
            )
            from_number = conn.execute(
                select(t.versions.c.number).where(t.versions.c.id == current.version_id)
            ).scalar()
        actor = actor or default_author()
        conn.execute(
            t.alias_events.insert().values(
                model_id=version.model_id,
                alias=alias,
                action=action,
                from_version_id=None if current is None else current.version_id,
                to_version_id=version_id,
                actor=actor,
                reason=reason,
                at=now,
            )
        )
        return AliasEvent(
            model_name, alias, action, from_number, version.number, actor, reason, now
        )

    def remove_alias(
        self, name: str, alias: str, *, actor: str | None = None, reason: str = ""
    ) -> AliasEvent:
        validate_alias(alias)
        with self._write() as conn:
            model = self._model_row(conn, name)
            current = conn.execute(
                select(t.aliases.c.id, t.aliases.c.version_id, t.versions.c.number)
                .join(t.versions, t.versions.c.id == t.aliases.c.version_id)
                .where(and_(t.aliases.c.model_id == model.id, t.aliases.c.alias == alias))
            ).first()
            if current is None:
                raise VersionNotFoundError(f"model {name!r} has no alias {alias!r}")
            conn.execute(t.aliases.delete().where(t.aliases.c.id == current.id))
            now = _now()
            actor = actor or default_author()
            conn.execute(
                t.alias_events.insert().values(
                    model_id=model.id,
                    alias=alias,
                    action="remove",
                    from_version_id=current.version_id,
                    to_version_id=None,
                    actor=actor,
                    reason=reason,
                    at=now,
                )
            )
        return AliasEvent(name, alias, "remove", current.number, None, actor, reason, now)

    def alias_history(self, name: str, alias: str | None = None) -> list[AliasEvent]:
        """Every alias change of a model, oldest first: which version served when."""
        validate_name(name)
        from_version = t.versions.alias("fv")
        to_version = t.versions.alias("tv")
        with self._read() as conn:
            model = self._model_row(conn, name)
            query = (
                select(t.alias_events, from_version.c.number, to_version.c.number)
                .outerjoin(from_version, from_version.c.id == t.alias_events.c.from_version_id)
                .outerjoin(to_version, to_version.c.id == t.alias_events.c.to_version_id)
                .where(t.alias_events.c.model_id == model.id)
                .order_by(t.alias_events.c.id)
            )
            if alias is not None:
                query = query.where(t.alias_events.c.alias == alias)
            return [
                AliasEvent(
                    name,
                    row.alias,
                    row.action,
                    row[-2],
                    row[-1],
                    row.actor,
                    row.reason,
                    _aware(row.at),
                )
                for row in conn.execute(query)
            ]

    # ------------------------------------------------------------------ weights
    def manifest(self, ref: str) -> Manifest:
        return self.store.get_manifest(self.resolve(ref).manifest_id)

    def checkout(
        self,
        ref: str,
        out_dir: str | Path,
        *,
        progress: ProgressCallback | None = None,
        force: bool = False,
    ) -> Path:
        """Write the version's Hugging Face directory to `out_dir`, bit-exactly.

        The files appear only once complete: they are written to a sibling temp
        folder that is renamed into place.
        """
        from lineage.store import checkout

        version = self.resolve(ref)
        target = Path(out_dir).expanduser().resolve()
        if target.exists() and any(target.iterdir()) and not force:
            raise UsageError(f"checkout target {target} is not empty (pass --force to replace)")
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".lineage-checkout-", dir=target.parent))
        try:
            manifest = self.store.get_manifest(version.manifest_id)
            kwargs = self._checkout_kwargs(progress)
            kwargs["label"] = version.ref
            checkout(self.store, manifest, staging, **kwargs)
            if target.exists():
                shutil.rmtree(target)
            os.replace(staging, target)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return target

    def _checkout_kwargs(self, progress: ProgressCallback | None) -> dict[str, Any]:
        return {"progress": progress, "materialize": self.materialize, "label": None}

    def materialize(self, spec: dict[str, Any], out_dir: Path) -> None:
        """Re-make a derivable version (stored as its recipe) into `out_dir`."""
        from lineage.api.derive import materialize

        materialize(self, spec, out_dir)

    def __repr__(self) -> str:
        return f"Workspace({str(self.root)!r})"


def _aware(value: datetime) -> datetime:
    """SQLite hands back naive datetimes; every time lineage stores is UTC."""
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
