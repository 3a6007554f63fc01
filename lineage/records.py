"""Plain records returned by the workspace API (JSON-ready through `to_dict`)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {key: _jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(item) for item in value]
    return value


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
        return [link for link in self.parents if link.edge_type == "derivation"]

    @property
    def previous_version(self) -> ParentLink | None:
        return next((link for link in self.parents if link.edge_type == "versioning"), None)

    def to_dict(self) -> dict[str, Any]:
        data = _jsonable(asdict(self))
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
    latest: int | None = None
    aliases: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return _jsonable(asdict(self))


@dataclass
class AliasEvent:
    model: str
    alias: str
    action: str
    from_version: int | None
    to_version: int | None
    actor: str
    reason: str
    at: datetime

    def to_dict(self) -> dict[str, Any]:
        return _jsonable(asdict(self))


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
