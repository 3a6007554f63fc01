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
from typing import TYPE_CHECKING, Any

from lineage.errors import (
    CycleError,
    ModelExistsError,
    ModelNotFoundError,
    ModelTestError,
    UsageError,
    VersionNotFoundError,
)
from lineage.graph import walk
from lineage.graph.db import (
    Database,
    GraphDBError,
    IntegrityViolation,
    Row,
    Session,
    from_datetime,
    from_json,
)
from lineage.graph.revision import SCHEMA_REVISION
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
    utc_now,
)
from lineage.refs import Ref, parse_ref, validate_alias, validate_name

if TYPE_CHECKING:
    from sqlalchemy import Engine

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


_VERSION_COLUMNS = (
    "v.id, v.model_id, v.number, v.manifest_id, v.kind, v.recipe_id, v.recipe_params, "
    "v.data_fingerprint, v.code_version, v.image_digest, v.library_versions, v.author, "
    "v.message, v.tags, v.extra, v.created_at"
)

_ALIAS_OF_MODEL_SQL = (
    "SELECT a.id, a.version_id, v.number FROM aliases a JOIN versions v ON v.id = a.version_id "
    "WHERE a.model_id = :model_id AND a.alias = :alias"
)

_VERSION_OWNER_SQL = (
    "SELECT v.model_id, v.number, m.name FROM versions v JOIN models m ON m.id = v.model_id "
    "WHERE v.id = :id"
)


class GraphRepo:
    """Typed reads and writes of the lineage graph (see the module docstring)."""

    def __init__(self, db: Database, session: Session | None = None) -> None:
        self.db = db
        self.url = db.url
        self._session = session
        self._engine: Engine | None = None
        # A repo handed out by `transaction()` comes from one that was checked already.
        self._schema_checked = session is not None

    @classmethod
    def connect(cls, url: str) -> GraphRepo:
        return cls(Database(url))

    @property
    def engine(self) -> Engine:
        """A SQLAlchemy engine on the same DB, for migrations and direct inspection
        (SQLAlchemy is imported only here)."""
        if self._engine is None:
            from lineage.graph.engine import make_engine

            self._engine = make_engine(self.url)
        return self._engine

    def close(self) -> None:
        if self._session is not None:
            return  # the transaction's owner closes the connections
        self.db.close()
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None

    # ------------------------------------------------------------------ transactions
    @contextmanager
    def transaction(self) -> Iterator[GraphRepo]:
        """A repo whose every call joins one transaction, committed on a clean exit."""
        if self._session is not None:
            yield self
            return
        self._check_schema()
        with self.db.writing() as session:
            yield GraphRepo(self.db, session)

    @contextmanager
    def _reading(self) -> Iterator[Session]:
        if self._session is not None:
            yield self._session
            return
        self._check_schema()
        with self.db.reading() as session:
            yield session

    @contextmanager
    def _writing(self) -> Iterator[Session]:
        if self._session is not None:
            yield self._session
            return
        self._check_schema()
        with self.db.writing() as session:
            yield session

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
            with self.db.reading() as session:
                found = session.scalar("SELECT version_num FROM alembic_version")
        except GraphDBError:
            return  # not a lineage graph DB yet: `init` migrates it
        if found != SCHEMA_REVISION:
            self.migrate()

    # ------------------------------------------------------------------ resolving
    def _model_id(self, session: Session, name: str) -> int:
        model_id = session.scalar("SELECT id FROM models WHERE name = :name", {"name": name})
        if model_id is None:
            raise ModelNotFoundError(f"unknown model {name!r}")
        return int(model_id)

    def _resolve_id(self, session: Session, ref: str | Ref) -> int:
        parsed = parse_ref(ref) if isinstance(ref, str) else ref
        model_id = self._model_id(session, parsed.name)
        if parsed.version is not None:
            version_id = session.scalar(
                "SELECT id FROM versions WHERE model_id = :model_id AND number = :number",
                {"model_id": model_id, "number": parsed.version},
            )
            missing = f"model {parsed.name!r} has no version {parsed.version}"
        elif parsed.is_latest:
            version_id = session.scalar(
                "SELECT id FROM versions WHERE model_id = :model_id ORDER BY number DESC LIMIT 1",
                {"model_id": model_id},
            )
            missing = f"model {parsed.name!r} has no versions"
        else:
            version_id = session.scalar(
                "SELECT version_id FROM aliases WHERE model_id = :model_id AND alias = :alias",
                {"model_id": model_id, "alias": parsed.alias},
            )
            missing = f"model {parsed.name!r} has no alias {parsed.alias!r}"
        if version_id is None:
            raise VersionNotFoundError(missing)
        return int(version_id)

    def resolve_id(self, ref: str | Ref) -> int:
        with self._reading() as session:
            return self._resolve_id(session, ref)

    def resolve(self, ref: str | Ref) -> VersionInfo:
        """The version a reference points to (`name`, `name@3`, `name@champion`)."""
        with self._reading() as session:
            return self._load_versions(session, [self._resolve_id(session, ref)])[0]

    def versions(self, ids: Sequence[int]) -> list[VersionInfo]:
        """Versions by id, in the order given (unknown ids are left out)."""
        with self._reading() as session:
            return self._load_versions(session, list(ids))

    def version(self, version_id: int) -> VersionInfo:
        found = self.versions([version_id])
        if not found:
            raise VersionNotFoundError(f"no version with id {version_id}")
        return found[0]

    def _load_versions(self, session: Session, ids: Sequence[int]) -> list[VersionInfo]:
        """Load versions with parents and aliases, in the order of `ids` (batched)."""
        if not ids:
            return []
        wanted = list(dict.fromkeys(ids))
        rows: dict[int, Row] = {}
        parents: dict[int, list[ParentLink]] = {i: [] for i in wanted}
        aliases: dict[int, list[str]] = {i: [] for i in wanted}
        for start in range(0, len(wanted), _CHUNK):
            chunk = {"ids": wanted[start : start + _CHUNK]}
            for row in session.rows(
                f"SELECT {_VERSION_COLUMNS}, m.name AS model_name FROM versions v "
                "JOIN models m ON m.id = v.model_id WHERE v.id IN :ids",
                chunk,
            ):
                rows[row["id"]] = row
            for edge in session.rows(
                "SELECT e.child_id, e.parent_id, e.edge_type, e.kind, pv.number, pm.name "
                "FROM edges e JOIN versions pv ON pv.id = e.parent_id "
                "JOIN models pm ON pm.id = pv.model_id WHERE e.child_id IN :ids "
                "ORDER BY e.child_id, e.edge_type, e.position",
                chunk,
            ):
                parents[edge["child_id"]].append(
                    ParentLink(
                        f"{edge['name']}@{edge['number']}",
                        edge["parent_id"],
                        edge["edge_type"],
                        edge["kind"],
                    )
                )
            for alias in session.rows(
                "SELECT version_id, alias FROM aliases WHERE version_id IN :ids", chunk
            ):
                aliases[alias["version_id"]].append(alias["alias"])
        return [_version_info(rows[i], parents[i], sorted(aliases[i])) for i in wanted if i in rows]

    # ------------------------------------------------------------------ models
    def model_exists(self, name: str) -> bool:
        with self._reading() as session:
            found = session.first("SELECT id FROM models WHERE name = :name", {"name": name})
            return found is not None

    def models(self, name: str | None = None) -> list[ModelInfo]:
        """Every model (or the one named), by name, with latest version and aliases."""
        with self._reading() as session:
            if name is not None:
                self._model_id(session, name)
            latest = {
                row["model_id"]: row["latest"]
                for row in session.rows(
                    "SELECT model_id, MAX(number) AS latest FROM versions GROUP BY model_id"
                )
            }
            alias_map: dict[int, dict[str, int]] = {}
            for row in session.rows(
                "SELECT a.model_id, a.alias, v.number FROM aliases a "
                "JOIN versions v ON v.id = a.version_id"
            ):
                alias_map.setdefault(row["model_id"], {})[row["alias"]] = row["number"]
            where = "" if name is None else "WHERE name = :name "
            return [
                ModelInfo(
                    id=row["id"],
                    name=row["name"],
                    description=row["description"],
                    tags=list(from_json(row["tags"]) or []),
                    auto_promote=bool(row["auto_promote"]),
                    require_approval=bool(row["require_approval"]),
                    created_at=from_datetime(row["created_at"]),
                    allow_untested=bool(row["allow_untested"]),
                    latest=latest.get(row["id"]),
                    aliases=dict(sorted(alias_map.get(row["id"], {}).items())),
                )
                for row in session.rows(
                    f"SELECT * FROM models {where}ORDER BY name", {"name": name}
                )
            ]

    def model(self, name: str) -> ModelInfo:
        validate_name(name)
        return self.models(name)[0]

    #: The columns of a model `set_model_policy` may change.
    POLICY_COLUMNS = frozenset(
        {"auto_promote", "require_approval", "allow_untested", "description"}
    )

    def set_model_policy(self, name: str, values: dict[str, Any]) -> None:
        """Update a model's promotion policy / description columns."""
        unknown = set(values) - self.POLICY_COLUMNS
        if unknown:
            raise UsageError(f"not a policy column: {', '.join(sorted(unknown))}")
        with self._writing() as session:
            model_id = self._model_id(session, name)
            if values:
                session.update("models", values, "id = :id", id=model_id)

    # ------------------------------------------------------------------ writing versions
    def create_version(self, new: NewVersion) -> int:
        """Insert the version (the next number of its model, or 1 for a new model),
        its derivation edges and the versioning edge from the previous version, in
        one transaction. Returns the new version's id."""
        provenance = new.provenance
        now = utc_now()
        try:
            with self._writing() as session:
                if new.new_model:
                    model_id = int(
                        session.insert(
                            "models",
                            {
                                "name": new.name,
                                "description": "",
                                "tags": [],
                                "auto_promote": True,
                                "require_approval": False,
                                "allow_untested": False,
                                "created_at": now,
                            },
                        )
                    )
                else:
                    model_id = self._lock_model(session, new.name)
                previous = session.first(
                    "SELECT id, number FROM versions WHERE model_id = :model_id "
                    "ORDER BY number DESC LIMIT 1",
                    {"model_id": model_id},
                )
                version_id = int(
                    session.insert(
                        "versions",
                        {
                            "model_id": model_id,
                            "number": 1 if previous is None else previous["number"] + 1,
                            "manifest_id": new.manifest_id,
                            "kind": new.kind,
                            "recipe_id": provenance.recipe_id,
                            "recipe_params": provenance.recipe_params,
                            "data_fingerprint": provenance.data_fingerprint,
                            "code_version": provenance.code_version,
                            "image_digest": provenance.image_digest,
                            "library_versions": provenance.library_versions,
                            "author": new.author,
                            "message": new.message,
                            "tags": list(new.tags),
                            "extra": provenance.extra,
                            "created_at": now,
                        },
                    )
                )
                for position, parent_id in enumerate(new.parent_ids):
                    self._insert_edge(
                        session, version_id, parent_id, DERIVATION, new.kind, position
                    )
                if previous is not None:
                    self._insert_edge(session, version_id, previous["id"], VERSIONING, None, 0)
        except IntegrityViolation:
            if new.new_model:
                raise ModelExistsError(f"model {new.name!r} already exists") from None
            raise
        return version_id

    @staticmethod
    def _insert_edge(
        session: Session,
        child_id: int,
        parent_id: int,
        edge_type: str,
        kind: str | None,
        position: int,
    ) -> None:
        session.insert(
            "edges",
            {
                "child_id": child_id,
                "parent_id": parent_id,
                "edge_type": edge_type,
                "kind": kind,
                "position": position,
            },
        )

    def _lock_model(self, session: Session, name: str) -> int:
        """Serialise version numbering of one model across writers."""
        # SQLite already holds the write lock (BEGIN IMMEDIATE).
        lock = "" if session.sqlite else " FOR UPDATE"
        model_id = session.scalar(f"SELECT id FROM models WHERE name = :name{lock}", {"name": name})
        if model_id is None:
            raise ModelNotFoundError(f"unknown model {name!r}")
        return int(model_id)

    def link(self, child: str, parent: str, kind: str) -> int:
        """Add a derivation edge between existing versions (refuses cycles); the
        child's id."""
        check_kind(kind)
        with self._writing() as session:
            child_id = self._resolve_id(session, child)
            parent_id = self._resolve_id(session, parent)
            if child_id == parent_id or parent_id in self._reach(
                session, _DESCENDANTS_SQL, [child_id], (DERIVATION, VERSIONING)
            ):
                raise CycleError(f"an edge {parent} -> {child} would make the lineage cyclic")
            derivation = "child_id = :child_id AND edge_type = :edge_type"
            params = {"child_id": child_id, "edge_type": DERIVATION, "parent_id": parent_id}
            exists = session.first(
                f"SELECT id FROM edges WHERE {derivation} AND parent_id = :parent_id", params
            )
            if exists:
                raise UsageError(f"{child} is already derived from {parent}")
            position = session.scalar(f"SELECT COUNT(*) FROM edges WHERE {derivation}", params)
            self._insert_edge(session, child_id, parent_id, DERIVATION, kind, int(position or 0))
        return child_id

    # ------------------------------------------------------------------ walking the graph
    def _reach(
        self, session: Session, sql: str, roots: Sequence[int], types: Sequence[str]
    ) -> list[int]:
        return [int(i) for i in session.scalars(sql, {"roots": list(roots), "types": list(types)})]

    def _edges_into(
        self, session: Session, ids: Iterable[int], types: Sequence[str]
    ) -> list[tuple[int, int]]:
        id_list = sorted(set(ids))
        pairs: list[tuple[int, int]] = []
        for start in range(0, len(id_list), _CHUNK):
            chunk = id_list[start : start + _CHUNK]
            rows = session.rows(_EDGES_INTO_SQL, {"ids": chunk, "types": list(types)})
            pairs.extend((int(row["parent_id"]), int(row["child_id"])) for row in rows)
        return pairs

    def _ordered(self, session: Session, ids: list[int], types: Sequence[str]) -> list[int]:
        wanted = set(ids)
        edges = [(p, c) for p, c in self._edges_into(session, ids, types) if p in wanted]
        return walk.topological_order(ids, edges)

    @staticmethod
    def _types(include_versions: bool) -> tuple[str, ...]:
        return (DERIVATION, VERSIONING) if include_versions else (DERIVATION,)

    def descendant_ids(self, roots: Sequence[int], *, include_versions: bool = False) -> list[int]:
        """Everything below `roots`, in topological order (parents first)."""
        types = self._types(include_versions)
        with self._reading() as session:
            found = self._reach(session, _DESCENDANTS_SQL, roots, types)
            return self._ordered(session, found, types)

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
        with self._reading() as session:
            found = self._reach(session, _ANCESTORS_SQL, roots, types)
            if include_roots:
                found = list(dict.fromkeys([*found, *roots]))
            return self._ordered(session, found, types)

    def children(self, version_id: int) -> list[VersionInfo]:
        """Versions derived directly from `version_id`."""
        with self._reading() as session:
            ids = session.scalars(
                "SELECT child_id FROM edges WHERE parent_id = :parent_id "
                "AND edge_type = :edge_type ORDER BY child_id",
                {"parent_id": version_id, "edge_type": DERIVATION},
            )
            return self._load_versions(session, ids)

    def path_ids(self, source_id: int, target_id: int) -> list[int] | None:
        """The shortest chain of edges (either type) from source down to target."""
        types = (DERIVATION, VERSIONING)
        with self._reading() as session:
            above = set(self._reach(session, _ANCESTORS_SQL, [target_id], types))
            if source_id != target_id and source_id not in above:
                return None
            nodes = above | {target_id}
            edges = [(p, c) for p, c in self._edges_into(session, nodes, types) if p in nodes]
        return walk.shortest_path(source_id, target_id, edges)

    def log_ids(self, name: str) -> list[int]:
        """Every version of a model, newest first."""
        with self._reading() as session:
            model_id = self._model_id(session, name)
            return [
                int(i)
                for i in session.scalars(
                    "SELECT id FROM versions WHERE model_id = :model_id ORDER BY number DESC",
                    {"model_id": model_id},
                )
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
        conditions = ["1 = 1"]
        if kind is not None:
            conditions.append("v.kind = :kind")
        if recipe is not None:
            conditions.append("v.recipe_id = :recipe")
        join = ""
        if latest_only:
            join = (
                f"JOIN ({_NEWEST_NUMBERS_SQL}) newest "
                "ON newest.model_id = v.model_id AND newest.n = v.number "
            )
        sql = (
            "SELECT v.id, v.tags AS version_tags, m.tags AS model_tags FROM versions v "
            f"JOIN models m ON m.id = v.model_id {join}"
            f"WHERE {' AND '.join(conditions)} ORDER BY v.id"
        )
        with self._reading() as session:
            rows = session.rows(sql, {"kind": kind, "recipe": recipe})
        return [
            int(row["id"])
            for row in rows
            if tag is None
            or tag in (from_json(row["version_tags"]) or [])
            or tag in (from_json(row["model_tags"]) or [])
        ]

    def family_ids(self, names: Sequence[str] | None, *, all_versions: bool) -> list[int]:
        """Which versions a graph view shows.

        By default each model's latest version plus the (possibly older) versions it
        was derived from; `all_versions` shows every version. With `names`, only those
        models' families: their versions and everything joined to them by derivation.
        """
        newest = "SELECT MAX(id) FROM versions"
        with self._reading() as session:
            latest = {int(i) for i in session.scalars(f"{newest} GROUP BY model_id")}
            if names:
                model_ids = {"model_ids": [self._model_id(session, name) for name in names]}
                if all_versions:
                    seed_sql = "SELECT id FROM versions WHERE model_id IN :model_ids"
                else:
                    seed_sql = f"{newest} WHERE model_id IN :model_ids GROUP BY model_id"
                seeds = {int(i) for i in session.scalars(seed_sql, model_ids)}
                ids = set(seeds)
                for seed in seeds:
                    ids.update(self._reach(session, _ANCESTORS_SQL, [seed], (DERIVATION,)))
                    ids.update(self._reach(session, _DESCENDANTS_SQL, [seed], (DERIVATION,)))
            elif all_versions:
                ids = {int(i) for i in session.scalars("SELECT id FROM versions")}
            else:
                ids = set(latest)
            if not all_versions:
                # Keep the (possibly older) versions the shown ones were derived from.
                ids.update(p for p, _ in self._edges_into(session, ids, (DERIVATION,)))
                if names:
                    ids = {i for i in ids if i in seeds or i in latest} | {
                        p for p, _ in self._edges_into(session, seeds, (DERIVATION,))
                    }
        return sorted(ids)

    def version_manifests(self) -> dict[str, str]:
        """`model@N` -> manifest id of every version."""
        with self._reading() as session:
            rows = session.rows(
                "SELECT m.name, v.number, v.manifest_id FROM versions v "
                "JOIN models m ON m.id = v.model_id ORDER BY m.name, v.number"
            )
            return {f"{row['name']}@{row['number']}": row["manifest_id"] for row in rows}

    # ------------------------------------------------------------------ aliases
    def set_alias(
        self, ref: str, alias: str, *, action: str, actor: str, reason: str
    ) -> AliasEvent:
        """Point `alias` of ref's model at ref's version and record the change."""
        validate_alias(alias)
        with self._writing() as session:
            version_id = self._resolve_id(session, ref)
            version = session.rows(_VERSION_OWNER_SQL, {"id": version_id})[0]
            model_id = version["model_id"]
            current = session.first(_ALIAS_OF_MODEL_SQL, {"model_id": model_id, "alias": alias})
            now = utc_now()
            if current is None:
                session.insert(
                    "aliases",
                    {
                        "model_id": model_id,
                        "alias": alias,
                        "version_id": version_id,
                        "updated_at": now,
                    },
                )
            else:
                session.update(
                    "aliases",
                    {"version_id": version_id, "updated_at": now},
                    "id = :id",
                    id=current["id"],
                )
            event = AliasEvent(
                version["name"],
                alias,
                action,
                None if current is None else current["number"],
                version["number"],
                actor,
                reason,
                now,
            )
            from_id = None if current is None else current["version_id"]
            event.id = self._record_event(session, model_id, event, from_id, version_id)
            return event

    def remove_alias(
        self, name: str, alias: str, *, action: str, actor: str, reason: str
    ) -> AliasEvent | None:
        """Remove `alias` from model `name` and record it; None if it was not set."""
        validate_alias(alias)
        with self._writing() as session:
            model_id = self._model_id(session, name)
            current = session.first(_ALIAS_OF_MODEL_SQL, {"model_id": model_id, "alias": alias})
            if current is None:
                return None
            session.execute("DELETE FROM aliases WHERE id = :id", {"id": current["id"]})
            event = AliasEvent(
                name, alias, action, current["number"], None, actor, reason, utc_now()
            )
            event.id = self._record_event(session, model_id, event, current["version_id"], None)
            return event

    def _record_event(
        self,
        session: Session,
        model_id: int,
        event: AliasEvent,
        from_version_id: int | None,
        to_version_id: int | None,
    ) -> int:
        return int(
            session.insert(
                "alias_events",
                {
                    "model_id": model_id,
                    "alias": event.alias,
                    "action": event.action,
                    "from_version_id": from_version_id,
                    "to_version_id": to_version_id,
                    "actor": event.actor,
                    "reason": event.reason,
                    "at": event.at,
                },
            )
        )

    def record_alias_decision(
        self, ref: str, alias: str, *, action: str, actor: str, reason: str
    ) -> AliasEvent:
        """Record an event about an alias that moves nothing (an approval or a
        rejection of `ref` for `alias`), so the history says who decided what."""
        with self._writing() as session:
            version_id = self._resolve_id(session, ref)
            row = session.rows(_VERSION_OWNER_SQL, {"id": version_id})[0]
            event = AliasEvent(
                row["name"], alias, action, None, row["number"], actor, reason, utc_now()
            )
            event.id = self._record_event(session, row["model_id"], event, None, version_id)
            return event

    def aliases(self, name: str) -> dict[str, int]:
        """Alias -> version number of one model."""
        with self._reading() as session:
            rows = session.rows(
                "SELECT a.alias, v.number FROM aliases a JOIN versions v ON v.id = a.version_id "
                "JOIN models m ON m.id = a.model_id WHERE m.name = :name",
                {"name": name},
            )
            return {row["alias"]: int(row["number"]) for row in rows}

    def alias_history(
        self, name: str, alias: str | None = None, *, after_id: int = 0
    ) -> list[AliasEvent]:
        """Every recorded alias change of a model (newer than `after_id`), oldest first."""
        validate_name(name)
        only_alias = "" if alias is None else "AND e.alias = :alias "
        with self._reading() as session:
            model_id = self._model_id(session, name)
            rows = session.rows(
                "SELECT e.id, e.alias, e.action, e.actor, e.reason, e.at, "
                "fv.number AS from_number, tv.number AS to_number FROM alias_events e "
                "LEFT JOIN versions fv ON fv.id = e.from_version_id "
                "LEFT JOIN versions tv ON tv.id = e.to_version_id "
                f"WHERE e.model_id = :model_id AND e.id > :after_id {only_alias}ORDER BY e.id",
                {"model_id": model_id, "after_id": after_id, "alias": alias},
            )
        return [
            AliasEvent(
                name,
                row["alias"],
                row["action"],
                row["from_number"],
                row["to_number"],
                row["actor"],
                row["reason"],
                from_datetime(row["at"]),
                id=int(row["id"]),
            )
            for row in rows
        ]

    def last_alias_event_id(self) -> int:
        with self._reading() as session:
            return int(session.scalar("SELECT MAX(id) FROM alias_events") or 0)

    # ------------------------------------------------------------------ tests
    def upsert_test(
        self, model: str, name: str, kind: str, params: dict[str, Any], disabled: bool
    ) -> None:
        """Declare (or redeclare, or opt out of) test `name` on `model`."""
        with self._writing() as session:
            model_id = self._model_id(session, model)
            where = "model_id = :model_id AND name = :name"
            key = {"model_id": model_id, "name": name}
            values = {"kind": kind, "params": params, "disabled": disabled}
            if session.first(f"SELECT id FROM model_tests WHERE {where}", key):
                session.update("model_tests", values, where, **key)
            else:
                session.insert("model_tests", {**key, "created_at": utc_now(), **values})

    def delete_test(self, model: str, name: str) -> None:
        """Delete `model`'s own declaration or opt-out of `name`."""
        with self._writing() as session:
            model_id = self._model_id(session, model)
            deleted = session.execute(
                "DELETE FROM model_tests WHERE model_id = :model_id AND name = :name",
                {"model_id": model_id, "name": name},
            )
        if not deleted:
            raise ModelTestError(f"model {model!r} declares no test {name!r}")

    def test_declarations(self, models: Sequence[str]) -> list[TestDeclarationRow]:
        """Every declaration and opt-out on the given models."""
        with self._reading() as session:
            rows = session.rows(
                "SELECT m.name AS model, t.name, t.kind, t.params, t.disabled "
                "FROM model_tests t JOIN models m ON m.id = t.model_id WHERE m.name IN :models",
                {"models": list(models)},
            )
        return [
            TestDeclarationRow(
                r["model"],
                r["name"],
                r["kind"],
                dict(from_json(r["params"]) or {}),
                bool(r["disabled"]),
            )
            for r in rows
        ]

    def record_test_result(self, version_id: int, result: StoredTestResult) -> None:
        with self._writing() as session:
            session.insert(
                "test_results",
                {
                    "version_id": version_id,
                    "test_name": result.test_name,
                    "kind": result.kind,
                    "declared_on": result.declared_on,
                    "metric": result.metric,
                    "value": result.value,
                    "threshold": result.threshold,
                    "passed": result.passed,
                    "details": result.details,
                    "duration_s": result.duration_s,
                    "ran_at": result.ran_at,
                },
            )

    def latest_results(self, version_id: int) -> dict[str, StoredTestResult]:
        """The newest stored result of each test of a version, by test name (the one
        rule for "latest": by run time, then by insertion order)."""
        with self._reading() as session:
            rows = session.rows(
                "SELECT * FROM test_results WHERE version_id = :version_id ORDER BY ran_at, id",
                {"version_id": version_id},
            )
        newest = {
            row["test_name"]: StoredTestResult(
                test_name=row["test_name"],
                kind=row["kind"],
                declared_on=row["declared_on"],
                metric=row["metric"],
                value=row["value"],
                threshold=row["threshold"],
                passed=bool(row["passed"]),
                details=dict(from_json(row["details"]) or {}),
                duration_s=float(row["duration_s"] or 0.0),
                ran_at=from_datetime(row["ran_at"]),
            )
            for row in rows
        }
        return dict(sorted(newest.items()))

    # ------------------------------------------------------------------ cascade runs
    def record_cascade_run(self, record: CascadeRecord) -> int:
        """Store a finished cascade (its nodes, levels and counts); the record id."""
        with self._writing() as session:
            return int(
                session.insert(
                    "cascade_runs",
                    {
                        "upstream": record.upstream,
                        "replaces": record.replaces,
                        "started_at": record.started_at,
                        "finished_at": record.finished_at,
                        "status": record.status,
                        "flow_run_id": record.flow_run_id,
                        "summary": {
                            "nodes": record.nodes,
                            "levels": record.levels,
                            "counts": record.counts,
                        },
                    },
                )
            )

    def cascade_runs(self, limit: int = 200) -> list[CascadeRecord]:
        """The most recent cascade runs, newest first."""
        with self._reading() as session:
            rows = session.rows(
                "SELECT * FROM cascade_runs ORDER BY started_at DESC, id DESC LIMIT :limit",
                {"limit": limit},
            )
        return [_cascade_record(row) for row in rows]

    # ------------------------------------------------------------------ derive cache
    def cached_version_id(self, key: str) -> int | None:
        with self._reading() as session:
            found = session.scalar(
                "SELECT version_id FROM derive_cache WHERE key = :key", {"key": key}
            )
        return None if found is None else int(found)

    def remember_derivation(self, key: str, version_id: int) -> None:
        """Record `key -> version_id`; a concurrent writer of the same key is fine."""
        try:
            with self._writing() as session:
                exists = session.first(
                    "SELECT key FROM derive_cache WHERE key = :key", {"key": key}
                )
                if exists is None:
                    session.insert(
                        "derive_cache",
                        {"key": key, "version_id": version_id, "created_at": utc_now()},
                        returning="key",
                    )
        except IntegrityViolation:
            pass  # another worker recorded the same derivation first


_NEWEST_NUMBERS_SQL = "SELECT model_id, MAX(number) AS n FROM versions GROUP BY model_id"


def _cascade_record(row: Row) -> CascadeRecord:
    summary = from_json(row["summary"]) or {}
    return CascadeRecord(
        id=int(row["id"]),
        upstream=row["upstream"],
        replaces=row["replaces"],
        started_at=from_datetime(row["started_at"]),
        finished_at=from_datetime(row["finished_at"]) if row["finished_at"] else None,
        status=row["status"],
        flow_run_id=row["flow_run_id"],
        nodes=list(summary.get("nodes") or []),
        levels=list(summary.get("levels") or []),
        counts=dict(summary.get("counts") or {}),
    )


def _version_info(row: Row, parents: list[ParentLink], aliases: list[str]) -> VersionInfo:
    return VersionInfo(
        id=row["id"],
        model=row["model_name"],
        number=row["number"],
        manifest_id=row["manifest_id"],
        kind=row["kind"],
        recipe_id=row["recipe_id"],
        recipe_params=from_json(row["recipe_params"]) or {},
        data_fingerprint=row["data_fingerprint"],
        code_version=row["code_version"],
        image_digest=row["image_digest"],
        library_versions=from_json(row["library_versions"]) or {},
        author=row["author"],
        message=row["message"],
        tags=list(from_json(row["tags"]) or []),
        extra=from_json(row["extra"]) or {},
        created_at=from_datetime(row["created_at"]),
        parents=parents,
        aliases=aliases,
    )
