"""`GraphRepo`: the one place that speaks SQL to the lineage graph DB.

Everything above it (the workspace handle, the verbs in `lineage.ops`, the cascade,
the MLflow mirror) reads and writes the graph through these methods and gets typed
records back (`lineage.records`), never rows.

Each method runs in its own short transaction, unless the repo was handed out by
`transaction()`, in which case every call joins that one transaction (promotion moves
several aliases atomically this way):

>>> repo = ws.graph                      # a workspace's repo (or GraphRepo.connect(url))
>>> with repo.transaction() as tx:
...     moved = tx.set_alias("ft@1", "staging", action="set", actor="ci", reason="canary")
...     gone = tx.remove_alias("ft", "staging", action="remove", actor="ci", reason="done")
>>> [(e.action, e.from_version, e.to_version) for e in repo.alias_history("ft")]
[('set', None, 1), ('remove', 1, None)]

Ancestor and descendant queries are recursive CTEs over the indexed `edges` table that
return ids; ordering happens in Python (`lineage.graph.walk`) on the small result.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, CursorResult, Engine, and_, bindparam, func, select, text
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from lineage.errors import (
    CycleError,
    ModelExistsError,
    ModelNotFoundError,
    ModelTestError,
    UsageError,
    VersionNotFoundError,
)
from lineage.graph import schema as t
from lineage.graph import walk
from lineage.graph.engine import is_sqlite, make_engine
from lineage.records import (
    DERIVATION,
    DERIVATION_KINDS,
    VERSIONING,
    AliasEvent,
    CascadeRecord,
    ModelInfo,
    ParentLink,
    Provenance,
    StoredTestResult,
    TestDeclarationRow,
    VersionInfo,
    as_utc,
    utc_now,
)
from lineage.refs import Ref, parse_ref, validate_alias, validate_name

#: SQLite caps bound parameters per statement: IN lists are sent in chunks of this.
_CHUNK = 5000

_DESCENDANTS_SQL = """
WITH RECURSIVE reach(id) AS (
    SELECT child_id FROM edges WHERE parent_id IN :roots AND edge_type IN :types
    UNION
    SELECT e.child_id FROM edges e JOIN reach r ON e.parent_id = r.id
    WHERE e.edge_type IN :types
)
SELECT id FROM reach
"""

_ANCESTORS_SQL = """
WITH RECURSIVE reach(id) AS (
    SELECT parent_id FROM edges WHERE child_id IN :roots AND edge_type IN :types
    UNION
    SELECT e.parent_id FROM edges e JOIN reach r ON e.child_id = r.id
    WHERE e.edge_type IN :types
)
SELECT id FROM reach
"""

_EDGES_INTO_SQL = (
    "SELECT parent_id, child_id FROM edges WHERE child_id IN :ids AND edge_type IN :types"
)


def check_kind(kind: str) -> str:
    """`kind` if it is a derivation kind, else a one-line `UsageError`."""
    if kind not in DERIVATION_KINDS:
        raise UsageError(
            f"unknown derivation kind {kind!r}; use one of {', '.join(DERIVATION_KINDS)}"
        )
    return kind


@dataclass(frozen=True)
class NewVersion:
    """What `create_version` writes: the version row and its parent edges."""

    name: str
    manifest_id: str
    kind: str | None
    provenance: Provenance
    author: str
    message: str
    tags: Sequence[str]
    parent_ids: Sequence[int]
    new_model: bool


class GraphRepo:
    """Typed reads and writes of the lineage graph (see the module docstring)."""

    def __init__(self, engine: Engine, url: str, conn: Connection | None = None) -> None:
        self.engine = engine
        self.url = url
        self._conn = conn
        # A repo handed out by `transaction()` comes from one that was checked already.
        self._schema_checked = conn is not None

    @classmethod
    def connect(cls, url: str) -> GraphRepo:
        return cls(make_engine(url), url)

    def close(self) -> None:
        self.engine.dispose()

    # ------------------------------------------------------------------ transactions
    @contextmanager
    def transaction(self) -> Iterator[GraphRepo]:
        """A repo whose every call joins one transaction, committed on a clean exit."""
        if self._conn is not None:
            yield self
            return
        self._check_schema()
        with self.engine.begin() as conn:
            yield GraphRepo(self.engine, self.url, conn)

    @contextmanager
    def _reading(self) -> Iterator[Connection]:
        if self._conn is not None:
            yield self._conn
            return
        self._check_schema()
        with self.engine.connect() as conn:
            yield conn

    @contextmanager
    def _writing(self) -> Iterator[Connection]:
        if self._conn is not None:
            yield self._conn
            return
        self._check_schema()
        with self.engine.begin() as conn:
            yield conn

    def migrate(self) -> None:
        """Bring the schema up to date (alembic is slow to import: only here)."""
        from lineage.graph.migrate import upgrade

        upgrade(self.engine)
        self._schema_checked = True

    def _check_schema(self) -> None:
        """Upgrade a graph DB made by an older lineage when it is first used (one cheap
        query; alembic is imported only when a migration is due)."""
        if self._schema_checked:
            return
        self._schema_checked = True
        try:
            with self.engine.connect() as conn:
                found = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
        except SQLAlchemyError:
            return  # not a lineage graph DB yet: `init` migrates it
        if found != t.SCHEMA_REVISION:
            self.migrate()

    # ------------------------------------------------------------------ resolving
    def _model_id(self, conn: Connection, name: str) -> int:
        model_id = conn.execute(select(t.models.c.id).where(t.models.c.name == name)).scalar()
        if model_id is None:
            raise ModelNotFoundError(f"unknown model {name!r}")
        return int(model_id)

    def _resolve_id(self, conn: Connection, ref: str | Ref) -> int:
        parsed = parse_ref(ref) if isinstance(ref, str) else ref
        model_id = self._model_id(conn, parsed.name)
        versions = t.versions.c
        if parsed.version is not None:
            query = select(versions.id).where(
                and_(versions.model_id == model_id, versions.number == parsed.version)
            )
            missing = f"model {parsed.name!r} has no version {parsed.version}"
        elif parsed.is_latest:
            query = (
                select(versions.id)
                .where(versions.model_id == model_id)
                .order_by(versions.number.desc())
                .limit(1)
            )
            missing = f"model {parsed.name!r} has no versions"
        else:
            query = select(t.aliases.c.version_id).where(
                and_(t.aliases.c.model_id == model_id, t.aliases.c.alias == parsed.alias)
            )
            missing = f"model {parsed.name!r} has no alias {parsed.alias!r}"
        version_id = conn.execute(query).scalar()
        if version_id is None:
            raise VersionNotFoundError(missing)
        return int(version_id)

    def resolve_id(self, ref: str | Ref) -> int:
        with self._reading() as conn:
            return self._resolve_id(conn, ref)

    def resolve(self, ref: str | Ref) -> VersionInfo:
        """The version a reference points to (`name`, `name@3`, `name@champion`)."""
        with self._reading() as conn:
            return self._load_versions(conn, [self._resolve_id(conn, ref)])[0]

    def versions(self, ids: Sequence[int]) -> list[VersionInfo]:
        """Versions by id, in the order given (unknown ids are left out)."""
        with self._reading() as conn:
            return self._load_versions(conn, list(ids))

    def version(self, version_id: int) -> VersionInfo:
        found = self.versions([version_id])
        if not found:
            raise VersionNotFoundError(f"no version with id {version_id}")
        return found[0]

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
        for start in range(0, len(wanted), _CHUNK):
            chunk = wanted[start : start + _CHUNK]
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
        return [_version_info(rows[i], parents[i], sorted(aliases[i])) for i in wanted if i in rows]

    # ------------------------------------------------------------------ models
    def model_exists(self, name: str) -> bool:
        with self._reading() as conn:
            found = conn.execute(select(t.models.c.id).where(t.models.c.name == name)).first()
            return found is not None

    def models(self, name: str | None = None) -> list[ModelInfo]:
        """Every model (or the one named), by name, with latest version and aliases."""
        with self._reading() as conn:
            if name is not None:
                self._model_id(conn, name)
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
                    created_at=as_utc(row.created_at),
                    allow_untested=bool(row.allow_untested),
                    latest=latest.get(row.id),
                    aliases=dict(sorted(alias_map.get(row.id, {}).items())),
                )
                for row in conn.execute(query)
            ]

    def model(self, name: str) -> ModelInfo:
        validate_name(name)
        return self.models(name)[0]

    def set_model_policy(self, name: str, values: dict[str, Any]) -> None:
        """Update a model's promotion policy / description columns."""
        with self._writing() as conn:
            model_id = self._model_id(conn, name)
            if values:
                conn.execute(t.models.update().where(t.models.c.id == model_id).values(**values))

    # ------------------------------------------------------------------ writing versions
    def create_version(self, new: NewVersion) -> int:
        """Insert the version (the next number of its model, or 1 for a new model),
        its derivation edges and the versioning edge from the previous version, in
        one transaction. Returns the new version's id."""
        provenance = new.provenance
        now = utc_now()
        try:
            with self._writing() as conn:
                if new.new_model:
                    model_id = _inserted_id(
                        conn.execute(
                            t.models.insert().values(
                                name=new.name,
                                description="",
                                tags=[],
                                auto_promote=True,
                                require_approval=False,
                                allow_untested=False,
                                created_at=now,
                            )
                        )
                    )
                else:
                    model_id = self._lock_model(conn, new.name)
                previous = conn.execute(
                    select(t.versions.c.id, t.versions.c.number)
                    .where(t.versions.c.model_id == model_id)
                    .order_by(t.versions.c.number.desc())
                    .limit(1)
                ).first()
                version_id = _inserted_id(
                    conn.execute(
                        t.versions.insert().values(
                            model_id=model_id,
                            number=1 if previous is None else previous.number + 1,
                            manifest_id=new.manifest_id,
                            kind=new.kind,
                            recipe_id=provenance.recipe_id,
                            recipe_params=provenance.recipe_params,
                            data_fingerprint=provenance.data_fingerprint,
                            code_version=provenance.code_version,
                            image_digest=provenance.image_digest,
                            library_versions=provenance.library_versions,
                            author=new.author,
                            message=new.message,
                            tags=list(new.tags),
                            extra=provenance.extra,
                            created_at=now,
                        )
                    )
                )
                for position, parent_id in enumerate(new.parent_ids):
                    conn.execute(
                        t.edges.insert().values(
                            child_id=version_id,
                            parent_id=parent_id,
                            edge_type=DERIVATION,
                            kind=new.kind,
                            position=position,
                        )
                    )
                if previous is not None:
                    conn.execute(
                        t.edges.insert().values(
                            child_id=version_id,
                            parent_id=previous.id,
                            edge_type=VERSIONING,
                            kind=None,
                            position=0,
                        )
                    )
        except IntegrityError:
            if new.new_model:
                raise ModelExistsError(f"model {new.name!r} already exists") from None
            raise
        return int(version_id)

    def _lock_model(self, conn: Connection, name: str) -> int:
        """Serialise version numbering of one model across writers."""
        query = select(t.models.c.id).where(t.models.c.name == name)
        if not is_sqlite(self.url):
            query = query.with_for_update()  # SQLite already holds the write lock
        model_id = conn.execute(query).scalar()
        if model_id is None:
            raise ModelNotFoundError(f"unknown model {name!r}")
        return int(model_id)

    def link(self, child: str, parent: str, kind: str) -> int:
        """Add a derivation edge between existing versions (refuses cycles); the
        child's id."""
        check_kind(kind)
        with self._writing() as conn:
            child_id = self._resolve_id(conn, child)
            parent_id = self._resolve_id(conn, parent)
            if child_id == parent_id or parent_id in self._reach(
                conn, _DESCENDANTS_SQL, [child_id], (DERIVATION, VERSIONING)
            ):
                raise CycleError(f"an edge {parent} -> {child} would make the lineage cyclic")
            derivation = and_(t.edges.c.child_id == child_id, t.edges.c.edge_type == DERIVATION)
            exists = conn.execute(
                select(t.edges.c.id).where(and_(derivation, t.edges.c.parent_id == parent_id))
            ).first()
            if exists:
                raise UsageError(f"{child} is already derived from {parent}")
            position = conn.execute(select(func.count()).where(derivation)).scalar()
            conn.execute(
                t.edges.insert().values(
                    child_id=child_id,
                    parent_id=parent_id,
                    edge_type=DERIVATION,
                    kind=kind,
                    position=int(position or 0),
                )
            )
        return child_id

    # ------------------------------------------------------------------ walking the graph
    def _reach(
        self, conn: Connection, sql: str, roots: Sequence[int], types: Sequence[str]
    ) -> list[int]:
        statement = text(sql).bindparams(
            bindparam("roots", expanding=True), bindparam("types", expanding=True)
        )
        rows = conn.execute(statement, {"roots": list(roots), "types": list(types)})
        return [int(row[0]) for row in rows]

    def _edges_into(
        self, conn: Connection, ids: Iterable[int], types: Sequence[str]
    ) -> list[tuple[int, int]]:
        id_list = sorted(set(ids))
        statement = text(_EDGES_INTO_SQL).bindparams(
            bindparam("ids", expanding=True), bindparam("types", expanding=True)
        )
        pairs: list[tuple[int, int]] = []
        for start in range(0, len(id_list), _CHUNK):
            chunk = id_list[start : start + _CHUNK]
            rows = conn.execute(statement, {"ids": chunk, "types": list(types)})
            pairs.extend((int(p), int(c)) for p, c in rows)
        return pairs

    def _ordered(self, conn: Connection, ids: list[int], types: Sequence[str]) -> list[int]:
        wanted = set(ids)
        edges = [(p, c) for p, c in self._edges_into(conn, ids, types) if p in wanted]
        return walk.topological_order(ids, edges)

    @staticmethod
    def _types(include_versions: bool) -> tuple[str, ...]:
        return (DERIVATION, VERSIONING) if include_versions else (DERIVATION,)

    def descendant_ids(self, roots: Sequence[int], *, include_versions: bool = False) -> list[int]:
        """Everything below `roots`, in topological order (parents first)."""
        types = self._types(include_versions)
        with self._reading() as conn:
            return self._ordered(conn, self._reach(conn, _DESCENDANTS_SQL, roots, types), types)

    def ancestor_ids(
        self,
        roots: Sequence[int],
        *,
        include_versions: bool = False,
        include_roots: bool = False,
    ) -> list[int]:
        """Everything above `roots` (and the roots, if asked), oldest first: every
        parent before its children."""
        types = self._types(include_versions)
        with self._reading() as conn:
            found = self._reach(conn, _ANCESTORS_SQL, roots, types)
            if include_roots:
                found = list(dict.fromkeys([*found, *roots]))
            return self._ordered(conn, found, types)

    def children(self, version_id: int) -> list[VersionInfo]:
        """Versions derived directly from `version_id`."""
        with self._reading() as conn:
            ids = conn.execute(
                select(t.edges.c.child_id)
                .where(and_(t.edges.c.parent_id == version_id, t.edges.c.edge_type == DERIVATION))
                .order_by(t.edges.c.child_id)
            ).scalars()
            return self._load_versions(conn, list(ids))

    def path_ids(self, source_id: int, target_id: int) -> list[int] | None:
        """The shortest chain of edges (either type) from source down to target."""
        types = (DERIVATION, VERSIONING)
        with self._reading() as conn:
            above = set(self._reach(conn, _ANCESTORS_SQL, [target_id], types))
            if source_id != target_id and source_id not in above:
                return None
            nodes = above | {target_id}
            edges = [(p, c) for p, c in self._edges_into(conn, nodes, types) if p in nodes]
        return walk.shortest_path(source_id, target_id, edges)

    def log_ids(self, name: str) -> list[int]:
        """Every version of a model, newest first."""
        with self._reading() as conn:
            model_id = self._model_id(conn, name)
            return [
                int(i)
                for i in conn.execute(
                    select(t.versions.c.id)
                    .where(t.versions.c.model_id == model_id)
                    .order_by(t.versions.c.number.desc())
                ).scalars()
            ]

    def search_ids(
        self,
        *,
        kind: str | None = None,
        tag: str | None = None,
        recipe: str | None = None,
        latest_only: bool = False,
    ) -> list[int]:
        """Versions filtered by derivation kind, tag (version or model tag) or recipe."""
        with self._reading() as conn:
            query = select(t.versions.c.id, t.versions.c.tags, t.models.c.tags).join(
                t.models, t.models.c.id == t.versions.c.model_id
            )
            if kind is not None:
                query = query.where(t.versions.c.kind == kind)
            if recipe is not None:
                query = query.where(t.versions.c.recipe_id == recipe)
            if latest_only:
                newest = self._newest_numbers()
                query = query.join(
                    newest,
                    and_(
                        newest.c.model_id == t.versions.c.model_id,
                        newest.c.n == t.versions.c.number,
                    ),
                )
            return [
                int(row[0])
                for row in conn.execute(query.order_by(t.versions.c.id))
                if tag is None or tag in (row[1] or []) or tag in (row[2] or [])
            ]

    @staticmethod
    def _newest_numbers() -> Any:
        return (
            select(t.versions.c.model_id, func.max(t.versions.c.number).label("n"))
            .group_by(t.versions.c.model_id)
            .subquery()
        )

    def family_ids(self, names: Sequence[str] | None, *, all_versions: bool) -> list[int]:
        """Which versions a graph view shows.

        By default each model's latest version plus the (possibly older) versions it
        was derived from; `all_versions` shows every version. With `names`, only those
        models' families: their versions and everything joined to them by derivation.
        """
        with self._reading() as conn:
            newest = select(func.max(t.versions.c.id)).group_by(t.versions.c.model_id)
            latest = {int(i) for i in conn.execute(newest).scalars()}
            if names:
                model_ids = [self._model_id(conn, name) for name in names]
                if all_versions:
                    seed_query = select(t.versions.c.id).where(t.versions.c.model_id.in_(model_ids))
                else:
                    seed_query = newest.where(t.versions.c.model_id.in_(model_ids))
                seeds = {int(i) for i in conn.execute(seed_query).scalars()}
                ids = set(seeds)
                for seed in seeds:
                    ids.update(self._reach(conn, _ANCESTORS_SQL, [seed], (DERIVATION,)))
                    ids.update(self._reach(conn, _DESCENDANTS_SQL, [seed], (DERIVATION,)))
            elif all_versions:
                ids = {int(i) for i in conn.execute(select(t.versions.c.id)).scalars()}
            else:
                ids = set(latest)
            if not all_versions:
                # Keep the (possibly older) versions the shown ones were derived from.
                ids.update(p for p, _ in self._edges_into(conn, ids, (DERIVATION,)))
                if names:
                    ids = {i for i in ids if i in seeds or i in latest} | {
                        p for p, _ in self._edges_into(conn, seeds, (DERIVATION,))
                    }
        return sorted(ids)

    def version_manifests(self) -> dict[str, str]:
        """`model@N` -> manifest id of every version."""
        with self._reading() as conn:
            rows = conn.execute(
                select(t.models.c.name, t.versions.c.number, t.versions.c.manifest_id)
                .join(t.models, t.models.c.id == t.versions.c.model_id)
                .order_by(t.models.c.name, t.versions.c.number)
            )
            return {f"{name}@{number}": manifest for name, number, manifest in rows}

    # ------------------------------------------------------------------ aliases
    def set_alias(
        self, ref: str, alias: str, *, action: str, actor: str, reason: str
    ) -> AliasEvent:
        """Point `alias` of ref's model at ref's version and record the change."""
        validate_alias(alias)
        with self._writing() as conn:
            version_id = self._resolve_id(conn, ref)
            version = conn.execute(
                select(t.versions.c.model_id, t.versions.c.number, t.models.c.name)
                .join(t.models, t.models.c.id == t.versions.c.model_id)
                .where(t.versions.c.id == version_id)
            ).one()
            current = conn.execute(
                select(t.aliases.c.id, t.aliases.c.version_id, t.versions.c.number)
                .join(t.versions, t.versions.c.id == t.aliases.c.version_id)
                .where(and_(t.aliases.c.model_id == version.model_id, t.aliases.c.alias == alias))
            ).first()
            now = utc_now()
            if current is None:
                conn.execute(
                    t.aliases.insert().values(
                        model_id=version.model_id,
                        alias=alias,
                        version_id=version_id,
                        updated_at=now,
                    )
                )
            else:
                conn.execute(
                    t.aliases.update()
                    .where(t.aliases.c.id == current.id)
                    .values(version_id=version_id, updated_at=now)
                )
            event = AliasEvent(
                version.name,
                alias,
                action,
                None if current is None else current.number,
                version.number,
                actor,
                reason,
                now,
            )
            from_id = None if current is None else current.version_id
            event.id = self._record_event(conn, version.model_id, event, from_id, version_id)
            return event

    def remove_alias(
        self, name: str, alias: str, *, action: str, actor: str, reason: str
    ) -> AliasEvent | None:
        """Remove `alias` from model `name` and record it; None if it was not set."""
        validate_alias(alias)
        with self._writing() as conn:
            model_id = self._model_id(conn, name)
            current = conn.execute(
                select(t.aliases.c.id, t.aliases.c.version_id, t.versions.c.number)
                .join(t.versions, t.versions.c.id == t.aliases.c.version_id)
                .where(and_(t.aliases.c.model_id == model_id, t.aliases.c.alias == alias))
            ).first()
            if current is None:
                return None
            conn.execute(t.aliases.delete().where(t.aliases.c.id == current.id))
            event = AliasEvent(name, alias, action, current.number, None, actor, reason, utc_now())
            event.id = self._record_event(conn, model_id, event, current.version_id, None)
            return event

    def _record_event(
        self,
        conn: Connection,
        model_id: int,
        event: AliasEvent,
        from_version_id: int | None,
        to_version_id: int | None,
    ) -> int:
        return _inserted_id(
            conn.execute(
                t.alias_events.insert().values(
                    model_id=model_id,
                    alias=event.alias,
                    action=event.action,
                    from_version_id=from_version_id,
                    to_version_id=to_version_id,
                    actor=event.actor,
                    reason=event.reason,
                    at=event.at,
                )
            )
        )

    def record_alias_decision(
        self, ref: str, alias: str, *, action: str, actor: str, reason: str
    ) -> AliasEvent:
        """Record an event about an alias that moves nothing (an approval or a
        rejection of `ref` for `alias`), so the history says who decided what."""
        with self._writing() as conn:
            version_id = self._resolve_id(conn, ref)
            row = conn.execute(
                select(t.versions.c.model_id, t.versions.c.number, t.models.c.name)
                .join(t.models, t.models.c.id == t.versions.c.model_id)
                .where(t.versions.c.id == version_id)
            ).one()
            event = AliasEvent(row.name, alias, action, None, row.number, actor, reason, utc_now())
            event.id = self._record_event(conn, row.model_id, event, None, version_id)
            return event

    def aliases(self, name: str) -> dict[str, int]:
        """Alias -> version number of one model."""
        with self._reading() as conn:
            rows = conn.execute(
                select(t.aliases.c.alias, t.versions.c.number)
                .join(t.versions, t.versions.c.id == t.aliases.c.version_id)
                .join(t.models, t.models.c.id == t.aliases.c.model_id)
                .where(t.models.c.name == name)
            ).all()
            return {alias: int(number) for alias, number in rows}

    def alias_history(
        self, name: str, alias: str | None = None, *, after_id: int = 0
    ) -> list[AliasEvent]:
        """Every recorded alias change of a model (newer than `after_id`), oldest first."""
        validate_name(name)
        from_version = t.versions.alias("fv")
        to_version = t.versions.alias("tv")
        with self._reading() as conn:
            model_id = self._model_id(conn, name)
            query = (
                select(
                    t.alias_events,
                    from_version.c.number.label("from_number"),
                    to_version.c.number.label("to_number"),
                )
                .outerjoin(from_version, from_version.c.id == t.alias_events.c.from_version_id)
                .outerjoin(to_version, to_version.c.id == t.alias_events.c.to_version_id)
                .where(t.alias_events.c.model_id == model_id, t.alias_events.c.id > after_id)
                .order_by(t.alias_events.c.id)
            )
            if alias is not None:
                query = query.where(t.alias_events.c.alias == alias)
            return [
                AliasEvent(
                    name,
                    row.alias,
                    row.action,
                    row.from_number,
                    row.to_number,
                    row.actor,
                    row.reason,
                    as_utc(row.at),
                    id=int(row.id),
                )
                for row in conn.execute(query)
            ]

    def last_alias_event_id(self) -> int:
        with self._reading() as conn:
            return int(conn.execute(select(func.max(t.alias_events.c.id))).scalar() or 0)

    # ------------------------------------------------------------------ tests
    def upsert_test(
        self, model: str, name: str, kind: str, params: dict[str, Any], disabled: bool
    ) -> None:
        """Declare (or redeclare, or opt out of) test `name` on `model`."""
        with self._writing() as conn:
            model_id = self._model_id(conn, model)
            where = and_(t.model_tests.c.model_id == model_id, t.model_tests.c.name == name)
            values = {"kind": kind, "params": params, "disabled": disabled}
            if conn.execute(select(t.model_tests.c.id).where(where)).first():
                conn.execute(t.model_tests.update().where(where).values(**values))
            else:
                conn.execute(
                    t.model_tests.insert().values(
                        model_id=model_id, name=name, created_at=utc_now(), **values
                    )
                )

    def delete_test(self, model: str, name: str) -> None:
        """Delete `model`'s own declaration or opt-out of `name`."""
        with self._writing() as conn:
            model_id = self._model_id(conn, model)
            deleted = conn.execute(
                t.model_tests.delete().where(
                    and_(t.model_tests.c.model_id == model_id, t.model_tests.c.name == name)
                )
            ).rowcount
        if not deleted:
            raise ModelTestError(f"model {model!r} declares no test {name!r}")

    def test_declarations(self, models: Sequence[str]) -> list[TestDeclarationRow]:
        """Every declaration and opt-out on the given models."""
        with self._reading() as conn:
            rows = conn.execute(
                select(
                    t.models.c.name.label("model"),
                    t.model_tests.c.name,
                    t.model_tests.c.kind,
                    t.model_tests.c.params,
                    t.model_tests.c.disabled,
                )
                .join(t.models, t.models.c.id == t.model_tests.c.model_id)
                .where(t.models.c.name.in_(list(models)))
            ).all()
        return [
            TestDeclarationRow(r.model, r.name, r.kind, dict(r.params or {}), bool(r.disabled))
            for r in rows
        ]

    def record_test_result(self, version_id: int, result: StoredTestResult) -> None:
        with self._writing() as conn:
            conn.execute(
                t.test_results.insert().values(
                    version_id=version_id,
                    test_name=result.test_name,
                    kind=result.kind,
                    declared_on=result.declared_on,
                    metric=result.metric,
                    value=result.value,
                    threshold=result.threshold,
                    passed=result.passed,
                    details=result.details,
                    duration_s=result.duration_s,
                    ran_at=result.ran_at,
                )
            )

    def latest_results(self, version_id: int) -> dict[str, StoredTestResult]:
        """The newest stored result of each test of a version, by test name (the one
        rule for "latest": by run time, then by insertion order)."""
        with self._reading() as conn:
            rows = conn.execute(
                select(t.test_results)
                .where(t.test_results.c.version_id == version_id)
                .order_by(t.test_results.c.ran_at, t.test_results.c.id)
            ).all()
        newest = {
            row.test_name: StoredTestResult(
                test_name=row.test_name,
                kind=row.kind,
                declared_on=row.declared_on,
                metric=row.metric,
                value=row.value,
                threshold=row.threshold,
                passed=bool(row.passed),
                details=dict(row.details or {}),
                duration_s=float(row.duration_s or 0.0),
                ran_at=as_utc(row.ran_at),
            )
            for row in rows
        }
        return dict(sorted(newest.items()))

    # ------------------------------------------------------------------ cascade runs
    def record_cascade_run(self, record: CascadeRecord) -> int:
        """Store a finished cascade (its nodes, levels and counts); the record id."""
        with self._writing() as conn:
            result = conn.execute(
                t.cascade_runs.insert().values(
                    upstream=record.upstream,
                    replaces=record.replaces,
                    started_at=record.started_at,
                    finished_at=record.finished_at,
                    status=record.status,
                    flow_run_id=record.flow_run_id,
                    summary={
                        "nodes": record.nodes,
                        "levels": record.levels,
                        "counts": record.counts,
                    },
                )
            )
            return _inserted_id(result)

    def cascade_runs(self, limit: int = 200) -> list[CascadeRecord]:
        """The most recent cascade runs, newest first."""
        query = (
            select(t.cascade_runs)
            .order_by(t.cascade_runs.c.started_at.desc(), t.cascade_runs.c.id.desc())
            .limit(limit)
        )
        with self._reading() as conn:
            return [_cascade_record(row) for row in conn.execute(query)]

    # ------------------------------------------------------------------ derive cache
    def cached_version_id(self, key: str) -> int | None:
        with self._reading() as conn:
            found = conn.execute(
                select(t.derive_cache.c.version_id).where(t.derive_cache.c.key == key)
            ).scalar()
        return None if found is None else int(found)

    def remember_derivation(self, key: str, version_id: int) -> None:
        """Record `key -> version_id`; a concurrent writer of the same key is fine."""
        try:
            with self._writing() as conn:
                exists = conn.execute(
                    select(t.derive_cache.c.key).where(t.derive_cache.c.key == key)
                ).first()
                if exists is None:
                    conn.execute(
                        t.derive_cache.insert().values(
                            key=key, version_id=version_id, created_at=utc_now()
                        )
                    )
        except IntegrityError:
            pass  # another worker recorded the same derivation first


def _inserted_id(result: CursorResult[Any]) -> int:
    """The id the database gave the row a single-row INSERT just wrote."""
    key = result.inserted_primary_key
    if key is None:  # SQLAlchemy's type allows it; a single-row insert of ours always has one
        raise RuntimeError("the database reported no id for the row just inserted")
    return int(key[0])


def _cascade_record(row: Any) -> CascadeRecord:
    summary = row.summary or {}
    return CascadeRecord(
        id=int(row.id),
        upstream=row.upstream,
        replaces=row.replaces,
        started_at=as_utc(row.started_at),
        finished_at=as_utc(row.finished_at) if row.finished_at else None,
        status=row.status,
        flow_run_id=row.flow_run_id,
        nodes=list(summary.get("nodes") or []),
        levels=list(summary.get("levels") or []),
        counts=dict(summary.get("counts") or {}),
    )


def _version_info(row: Any, parents: list[ParentLink], aliases: list[str]) -> VersionInfo:
    return VersionInfo(
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
        created_at=as_utc(row.created_at),
        parents=parents,
        aliases=aliases,
    )
