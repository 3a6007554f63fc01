"""Connections to the graph DB on the drivers themselves: the standard library's
`sqlite3` for the embedded default, psycopg 3 for PostgreSQL.

Why not SQLAlchemy on this path: importing it costs about 0.17 s, more than half of
what a read command like `lineage log` may take in all. SQLAlchemy and alembic still
define and migrate the schema (`lineage.graph.schema`, `lineage.graph.migrate`); they
are imported only when a migration is due, and `GraphRepo.engine` gives tests and
migrations a SQLAlchemy engine on the same URL.

SQL is written once, in SQLite's named style (`:name`); a list or tuple parameter
expands into an `IN (...)` list; for PostgreSQL the placeholders are rewritten to
psycopg's `%(name)s`. Values are stored as SQLAlchemy's column types stored them, so
graph DBs written by either stay readable by both: JSON columns hold `json.dumps`
text (PostgreSQL casts it to `json`), and SQLite datetimes are naive UTC strings.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sqlite3
import threading
import weakref
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, Protocol
from urllib.parse import quote, unquote

from lineage.errors import UsageError

Row = dict[str, Any]

# Several lineage processes (CLI calls, cascade workers) write the same SQLite file.
# WAL lets readers run during a write; busy_timeout makes writers queue instead of
# failing; BEGIN IMMEDIATE takes the write lock up front so two writers never
# deadlock while upgrading a read lock.
SQLITE_BUSY_TIMEOUT_MS = 60_000
SQLITE_PRAGMAS = (
    "PRAGMA journal_mode=WAL",
    f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}",
    "PRAGMA foreign_keys=ON",
    "PRAGMA synchronous=NORMAL",
)

_PLACEHOLDER = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")


class GraphDBError(Exception):
    """A statement the graph DB refused (the driver's own error is the cause)."""


class IntegrityViolation(GraphDBError):
    """A unique or foreign-key constraint refused a write."""


def is_sqlite(url: str) -> bool:
    return url.startswith("sqlite")


def is_postgresql(url: str) -> bool:
    return url.startswith("postgresql")


def sqlite_url(path: str | os.PathLike[str]) -> str:
    """The SQLite URL of a file, whatever its name: URL parsers (ours, SQLAlchemy's,
    MLflow's) read `?` as a query, `#` as a fragment and `%xx` as an escape, so a
    workspace in `/data/a?b` would otherwise put its DB somewhere else.

    >>> sqlite_url("/data/odd dir%20?#/graph.db")
    'sqlite:////data/odd%20dir%2520%3F%23/graph.db'
    >>> sqlite_path(sqlite_url("/data/odd dir%20?#/graph.db"))
    '/data/odd dir%20?#/graph.db'
    """
    return "sqlite:///" + quote(os.fspath(path))


def sqlite_path(url: str) -> str:
    """The file of a `sqlite:///relative` or `sqlite:////absolute` URL (SQLAlchemy's
    spelling, which the config keeps), or `:memory:`."""
    scheme, _, rest = url.partition("://")
    if scheme not in ("sqlite", "sqlite+pysqlite"):
        raise UsageError(f"unsupported SQLite URL {scheme}://…; use sqlite:///PATH")
    path = rest[1:] if rest.startswith("/") else rest
    return unquote(path.split("?", 1)[0]) or ":memory:"


def postgresql_conninfo(url: str) -> str:
    """A libpq URI for psycopg: the SQLAlchemy driver suffix (`+psycopg`) dropped."""
    scheme, _, rest = url.partition("://")
    if scheme not in ("postgresql", "postgresql+psycopg"):
        raise UsageError(
            f"unsupported PostgreSQL URL {scheme}://…; use postgresql://USER@HOST:PORT/DB"
        )
    return "postgresql://" + rest


def to_db(value: Any, *, sqlite: bool) -> Any:
    """A Python value as the graph DB stores it (see the module docstring)."""
    if isinstance(value, dict | list):
        return json.dumps(value)
    if isinstance(value, datetime) and sqlite:
        utc = value.astimezone(UTC) if value.tzinfo is not None else value
        return utc.strftime("%Y-%m-%d %H:%M:%S.%f")
    return value


def from_json(value: Any) -> Any:
    """A JSON column's value: SQLite returns the text, psycopg the decoded value."""
    return json.loads(value) if isinstance(value, str | bytes) else value


def from_datetime(value: Any) -> datetime:
    """A datetime column's value, always timezone-aware UTC."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if not isinstance(value, datetime):
        raise GraphDBError(f"expected a datetime in the graph DB, found {value!r}")
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


class _Cursor(Protocol):
    rowcount: int

    def fetchall(self) -> list[Any]: ...


class Session:
    """One connection: statements with named parameters, rows as dicts."""

    def __init__(self, raw: Any, *, sqlite: bool) -> None:
        self.raw = raw
        self.sqlite = sqlite

    def _stored(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """Column values as stored: a list here is a JSON value, not an IN list."""
        return {name: to_db(value, sqlite=self.sqlite) for name, value in values.items()}

    def _run(self, sql: str, params: Mapping[str, Any] | None) -> _Cursor:
        statement, values = _expand(sql, params or {}, sqlite=self.sqlite)
        if not self.sqlite:
            statement = _PLACEHOLDER.sub(r"%(\1)s", statement)
        try:
            return self.raw.execute(statement, values)  # type: ignore[no-any-return]
        except Exception as exc:
            raise _translated(exc) from exc

    def rows(self, sql: str, params: Mapping[str, Any] | None = None) -> list[Row]:
        return self._run(sql, params).fetchall()

    def first(self, sql: str, params: Mapping[str, Any] | None = None) -> Row | None:
        found = self.rows(sql, params)
        return found[0] if found else None

    def scalars(self, sql: str, params: Mapping[str, Any] | None = None) -> list[Any]:
        return [next(iter(row.values())) for row in self.rows(sql, params)]

    def scalar(self, sql: str, params: Mapping[str, Any] | None = None) -> Any:
        found = self.first(sql, params)
        return None if found is None else next(iter(found.values()))

    def execute(self, sql: str, params: Mapping[str, Any] | None = None) -> int:
        """Run a write; the number of rows it touched."""
        return self._run(sql, params).rowcount

    def insert(self, table: str, values: Mapping[str, Any], *, returning: str = "id") -> Any:
        """Insert one row; the value of its `returning` column."""
        columns = ", ".join(values)
        names = ", ".join(f":{name}" for name in values)
        sql = f"INSERT INTO {table} ({columns}) VALUES ({names}) RETURNING {returning}"
        return self.scalar(sql, self._stored(values))

    def update(self, table: str, values: Mapping[str, Any], where: str, **params: Any) -> int:
        """`UPDATE table SET values WHERE where`; the number of rows changed."""
        assignments = ", ".join(f"{name} = :set_{name}" for name in values)
        bound = {f"set_{name}": value for name, value in self._stored(values).items()} | params
        return self.execute(f"UPDATE {table} SET {assignments} WHERE {where}", bound)


def _expand(sql: str, params: Mapping[str, Any], *, sqlite: bool) -> tuple[str, dict[str, Any]]:
    """Expand sequence parameters into `(:p_0, :p_1, ...)` and adapt every value."""
    values: dict[str, Any] = {}
    for name, value in params.items():
        if isinstance(value, list | tuple):
            keys = [f"{name}_{i}" for i in range(len(value))]
            for key, item in zip(keys, value, strict=True):
                values[key] = to_db(item, sqlite=sqlite)
            # An empty IN list matches nothing (and `IN ()` is not valid SQL everywhere).
            listed = ", ".join(f":{key}" for key in keys) or "NULL"
            sql = re.sub(rf"(?<![:\w]):{name}\b", f"({listed})", sql)
        else:
            values[name] = to_db(value, sqlite=sqlite)
    return sql, values


def _translated(exc: Exception) -> GraphDBError:
    kind = type(exc).__name__
    if kind in ("IntegrityError", "UniqueViolation", "ForeignKeyViolation"):
        return IntegrityViolation(str(exc))
    return GraphDBError(str(exc))


class _Held:
    """A thread's connection, closed when the thread's reference to it goes (the thread
    ended, or `Database.close`), by the process that opened it only."""

    __slots__ = ("__weakref__", "file", "pid", "raw")

    def __init__(self, raw: Any, file: tuple[int, int] | None = None) -> None:
        self.raw = raw
        self.pid = os.getpid()
        self.file = file  # the SQLite file it opened (device, inode)

    def close(self) -> None:
        if self.pid == os.getpid():
            with contextlib.suppress(Exception):  # closing twice, or a dead server
                self.raw.close()

    def __del__(self) -> None:
        self.close()


class Database:
    """Connections to one graph DB URL (`sqlite:///...` or `postgresql://...`).

    Each thread keeps one connection (opening one costs more than most statements:
    a cascade's bookkeeping opened hundreds), reopened after a fork for SQLite (a
    connection must not cross into a child process) and, for PostgreSQL, when the
    server dropped it.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self.sqlite = is_sqlite(url)
        if self.sqlite:
            self._path = sqlite_path(url)
        elif is_postgresql(url):
            from lineage.extras import require_extra

            require_extra("postgres", "a PostgreSQL graph DB")
            self._conninfo = postgresql_conninfo(url)
        else:
            scheme = url.split(":", 1)[0]
            raise UsageError(
                f"unsupported graph DB URL scheme {scheme!r}: use sqlite:///PATH or "
                "postgresql://USER@HOST:PORT/DB"
            )
        self._local = threading.local()
        self._open: weakref.WeakSet[_Held] = weakref.WeakSet()
        self._lock = threading.Lock()

    @contextmanager
    def reading(self) -> Iterator[Session]:
        """A session in autocommit mode: each statement sees the latest commit."""
        with self._connection() as raw:
            yield Session(raw, sqlite=self.sqlite)

    @contextmanager
    def writing(self) -> Iterator[Session]:
        """A session inside one transaction: committed on a clean exit, else rolled back."""
        with self._connection() as raw:
            if self.sqlite:
                raw.execute("BEGIN IMMEDIATE")
                try:
                    yield Session(raw, sqlite=True)
                except BaseException:
                    raw.execute("ROLLBACK")
                    raise
                raw.execute("COMMIT")
            else:
                with raw.transaction():
                    yield Session(raw, sqlite=False)

    @contextmanager
    def _connection(self) -> Iterator[Any]:
        held: _Held | None = getattr(self._local, "connection", None)
        stale = held is None or held.pid != os.getpid()
        if held is not None and not stale:
            if self.sqlite:  # the file was replaced (a workspace deleted and made anew)
                stale = held.file != self._sqlite_file()
            else:
                stale = held.raw.closed or held.raw.broken  # the server dropped it
        if held is None or stale:
            if self.sqlite:
                raw = self._connect_sqlite()
                held = _Held(raw, self._sqlite_file())
            else:
                held = _Held(self._connect_postgresql())
            self._local.connection = held
            with self._lock:
                self._open.add(held)
        yield held.raw

    def _sqlite_file(self) -> tuple[int, int] | None:
        try:
            found = os.stat(self._path)
        except OSError:
            return None
        return found.st_dev, found.st_ino

    def _connect_sqlite(self) -> sqlite3.Connection:
        try:
            raw = sqlite3.connect(
                self._path,
                timeout=SQLITE_BUSY_TIMEOUT_MS / 1000,
                isolation_level=None,
                check_same_thread=False,
            )
            raw.row_factory = _dict_row
            for pragma in SQLITE_PRAGMAS:
                raw.execute(pragma)
        except sqlite3.Error as exc:
            raise GraphDBError(str(exc)) from exc
        return raw

    def _connect_postgresql(self) -> Any:
        import psycopg
        from psycopg.rows import dict_row

        try:
            raw = psycopg.connect(self._conninfo, autocommit=True, row_factory=dict_row)
        except psycopg.Error as exc:
            raise GraphDBError(str(exc)) from exc
        return raw

    def close(self) -> None:
        """Close every connection this process opened through this object (one that a
        forked child inherited is the parent's: left alone)."""
        with self._lock:
            opened = list(self._open)
            self._open.clear()
        for held in opened:
            held.close()
        self._local = threading.local()


def _dict_row(cursor: sqlite3.Cursor, row: Sequence[Any]) -> Row:
    return {column[0]: value for column, value in zip(cursor.description, row, strict=True)}
