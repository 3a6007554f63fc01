"""Plain records returned by the workspace API (JSON-ready through `to_dict`)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal, TypeGuard, get_args

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

#: How a version was derived from its parents (the kind of a derivation edge).
Kind = Literal["finetune", "adapter", "distill", "quantize", "prune", "merge", "other"]
DERIVATION_KINDS: tuple[str, ...] = get_args(Kind)


def is_kind(value: object) -> TypeGuard[Kind]:
    """Whether `value` is one of the derivation kinds."""
    return value in DERIVATION_KINDS


#: The two edge types: `child@v` derived from `parent@w`, and `m@v+1` next after `m@v`.
DERIVATION = "derivation"
VERSIONING = "versioning"
EDGE_TYPES = (DERIVATION, VERSIONING)


def utc_now() -> datetime:
    """Every time lineage stores is timezone-aware UTC."""
    return datetime.now(UTC)


def as_utc(value: datetime) -> datetime:
    """SQLite hands back naive datetimes; every time lineage stores is UTC."""
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {key: _jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(item) for item in value]
    return value


def _record_dict(record: DataclassInstance) -> dict[str, Any]:
    """A dataclass record as a JSON-ready dict (times as ISO strings, tuples as lists)."""
    return {key: _jsonable(item) for key, item in asdict(record).items()}


@dataclass(frozen=True)
class ParentLink:
    """One incoming edge of a version: which version it came from, and how."""

    ref: str
    version_id: int
    edge_type: str  # derivation | versioning
    kind: str | None  # finetune, adapter, ... for derivation edges


@dataclass
class VersionInfo:
    """An immutable model version with its provenance, parents and current aliases."""

    id: int
    model: str
    number: int
    manifest_id: str
    kind: str | None
    recipe_id: str | None
    recipe_params: dict[str, Any]
    data_fingerprint: str | None
    code_version: str | None
    image_digest: str | None
    library_versions: dict[str, str]
    author: str
    message: str
    tags: list[str]
    extra: dict[str, Any]
    created_at: datetime
    parents: list[ParentLink] = field(default_factory=list)
    aliases: list[str] = field(default_factory=list)

    @property
    def ref(self) -> str:
        return f"{self.model}@{self.number}"

    @property
    def derivation_parents(self) -> list[ParentLink]:
        return [link for link in self.parents if link.edge_type == DERIVATION]

    @property
    def previous_version(self) -> ParentLink | None:
        return next((link for link in self.parents if link.edge_type == VERSIONING), None)

    def to_dict(self) -> dict[str, Any]:
        data = _record_dict(self)
        data["ref"] = self.ref
        return data


@dataclass
class ModelInfo:
    id: int
    name: str
    description: str
    tags: list[str]
    auto_promote: bool
    require_approval: bool
    created_at: datetime
    allow_untested: bool = False
    latest: int | None = None
    aliases: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return _record_dict(self)


@dataclass
class AliasEvent:
    """One recorded alias change: who moved which alias of a model, from → to, why."""

    model: str
    alias: str
    action: str  # set | promote | rollback | remove | approve | reject
    from_version: int | None
    to_version: int | None
    actor: str
    reason: str
    at: datetime
    id: int | None = None  # position in the model's history (None before it is stored)

    def to_dict(self) -> dict[str, Any]:
        return _record_dict(self)


@dataclass
class Provenance:
    """How a version was made; stored on the version row."""

    recipe_id: str | None = None
    recipe_params: dict[str, Any] = field(default_factory=dict)
    data_fingerprint: str | None = None
    code_version: str | None = None
    image_digest: str | None = None
    library_versions: dict[str, str] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class StoredTestResult:
    """One stored run of one test on one version (a row of the graph's test results)."""

    __test__ = False  # not a pytest class

    test_name: str
    kind: str
    declared_on: str
    metric: str
    value: float | None
    threshold: float | None
    passed: bool
    details: dict[str, Any]
    duration_s: float
    ran_at: datetime

    def to_dict(self) -> dict[str, Any]:
        return _record_dict(self)


@dataclass(frozen=True)
class TestDeclarationRow:
    """A test declared on (or disabled for) one model, as stored."""

    __test__ = False

    model: str
    name: str
    kind: str
    params: dict[str, Any]
    disabled: bool


@dataclass
class CascadeRecord:
    """One recorded cascade run: its upstream change, when it ran, each node's outcome."""

    id: int
    upstream: str
    replaces: str
    started_at: datetime
    finished_at: datetime | None
    status: str  # passed | failed
    flow_run_id: str | None
    nodes: list[dict[str, Any]] = field(default_factory=list)
    levels: list[list[str]] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return _record_dict(self)
