"""The workspace handle: where the graph DB and the object store of one project live.

A `Workspace` opens (or creates) `.lineage/` and hands out the graph (`.graph`, a
`GraphRepo`) and the object store (`.store`); the verbs that change a workspace are
functions in `lineage.ops`, each taking the workspace first (DVC's `dvc/repo/*.py`
style). The read methods below are short delegations to the graph, kept here because
nearly every caller needs them.

>>> from lineage.ops.add import add
>>> ws = Workspace.init(tmp / "ws")
>>> base = add(ws, "base", source=write_tiny_weights(tmp / "base"))
>>> child = add(ws, "ft", source=write_tiny_weights(tmp / "ft", seed=1),
...             parents=["base@1"], kind="finetune")
>>> [v.ref for v in ws.descendants("base@1")]
['ft@1']
>>> ws.resolve("ft").parents[0].ref
'base@1'
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from lineage.config import CONFIG_FILE, LINEAGE_DIR, WorkspaceConfig, find_workspace_root
from lineage.errors import LineageError, WorkspaceExistsError
from lineage.graph.db import sqlite_url
from lineage.graph.repo import GraphRepo
from lineage.records import AliasEvent, ModelInfo, VersionInfo
from lineage.redact import redact_url
from lineage.refs import Ref, validate_name

if TYPE_CHECKING:
    from lineage.store import Manifest, ObjectStore

#: Files that hold the workspace's settings and (embedded) graph: owner-only.
PRIVATE_MODE = 0o600


class Workspace:
    """A lineage workspace: graph DB + object store (+ MLflow and Prefect settings)."""

    def __init__(self, root: Path, config: WorkspaceConfig) -> None:
        self.root = root
        self.config = config
        self._graph: GraphRepo | None = None
        self._store: ObjectStore | None = None

    # ------------------------------------------------------------------ lifecycle
    @classmethod
    def init(
        cls,
        path: str | Path = ".",
        *,
        graph_url: str = "",
        store_url: str = "",
        prepare: Callable[[Workspace], object] | None = None,
    ) -> Workspace:
        """Create a workspace in `path` (created if missing) and migrate its graph DB;
        `prepare(workspace)` then readies anything else it needs (the MLflow store).

        A failed init (an unreachable DB or tracking server, a bad URL) leaves nothing
        behind: the config file, the marker of a workspace, is written last, and what
        this call created is removed on failure.
        """
        root = Path(path).expanduser().resolve()
        lineage_dir = root / LINEAGE_DIR
        if (lineage_dir / CONFIG_FILE).exists():
            raise WorkspaceExistsError(f"a lineage workspace already exists at {root}")
        # The outermost folder this call creates goes again if init fails.
        created = next((p for p in (root, lineage_dir) if not p.exists()), None)
        config = WorkspaceConfig(graph_url=graph_url, store_url=store_url)
        workspace = cls(root, config)
        try:
            lineage_dir.mkdir(parents=True, exist_ok=True)
            (lineage_dir / "objects").mkdir(exist_ok=True)
            try:
                workspace.graph.migrate()
            except Exception as exc:
                raise LineageError(
                    f"cannot create the graph DB at {redact_url(workspace.graph_url)}: "
                    f"{redact_url(_first_line(exc))}"
                ) from None
            if not config.graph_url:
                os.chmod(lineage_dir / "graph.db", PRIVATE_MODE)
            if prepare is not None:
                prepare(workspace)
            workspace.close()
            _write_private(lineage_dir / CONFIG_FILE, config.to_toml())
        except BaseException:
            workspace.close()
            if created is not None:
                shutil.rmtree(created, ignore_errors=True)
            raise
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
        return self.config.graph_url or sqlite_url(self.lineage_dir / "graph.db")

    @property
    def store_url(self) -> str:
        return self.config.store_url or str(self.lineage_dir / "objects")

    @property
    def graph(self) -> GraphRepo:
        """The lineage graph (models, versions, edges, aliases, tests)."""
        if self._graph is None:
            self._graph = GraphRepo.connect(self.graph_url)
        return self._graph

    @property
    def store(self) -> ObjectStore:
        """The object store holding every version's tensors and files."""
        if self._store is None:
            from lineage.store import ObjectStore  # numpy and zstandard: only when needed

            self._store = ObjectStore.open(
                self.store_url, max_chain_depth=self.config.delta_chain_depth
            )
        return self._store

    def save_config(self) -> None:
        """Write the config back to `.lineage/config.toml` (owner-only, atomically)."""
        _write_private(self.lineage_dir / CONFIG_FILE, self.config.to_toml())

    def close(self) -> None:
        if self._graph is not None:
            self._graph.close()
            self._graph = None

    # ------------------------------------------------------------------ reading the graph
    def resolve(self, ref: str | Ref) -> VersionInfo:
        """The version a reference points to (`name`, `name@3`, `name@champion`)."""
        return self.graph.resolve(ref)

    def version_by_id(self, version_id: int) -> VersionInfo:
        return self.graph.version(version_id)

    def versions_by_id(self, ids: Sequence[int]) -> list[VersionInfo]:
        return self.graph.versions(ids)

    def models(self) -> list[ModelInfo]:
        """Every model, by name, with its latest version number and aliases."""
        return self.graph.models()

    def model(self, name: str) -> ModelInfo:
        return self.graph.model(name)

    def log(self, name: str) -> list[VersionInfo]:
        """Every version of a model, newest first."""
        validate_name(name)
        return self.graph.versions(self.graph.log_ids(name))

    def children(self, ref: str) -> list[VersionInfo]:
        """Versions derived directly from `ref`."""
        return self.graph.children(self.graph.resolve_id(ref))

    def descendants(self, ref: str, *, include_versions: bool = False) -> list[VersionInfo]:
        """Everything derived from `ref`, in topological order (parents first).

        With `include_versions`, later versions of descendants count too.
        """
        root = self.graph.resolve_id(ref)
        return self.graph.versions(
            self.graph.descendant_ids([root], include_versions=include_versions)
        )

    def ancestors(self, ref: str, *, include_versions: bool = False) -> list[VersionInfo]:
        """Everything `ref` was derived from, oldest first."""
        root = self.graph.resolve_id(ref)
        return self.graph.versions(
            self.graph.ancestor_ids([root], include_versions=include_versions)
        )

    def path(self, source: str, target: str) -> list[VersionInfo] | None:
        """The shortest chain of edges from `source` down to `target`, or None."""
        ids = self.graph.path_ids(self.graph.resolve_id(source), self.graph.resolve_id(target))
        return None if ids is None else self.graph.versions(ids)

    def search(
        self,
        *,
        kind: str | None = None,
        tag: str | None = None,
        recipe: str | None = None,
        latest_only: bool = False,
    ) -> list[VersionInfo]:
        """Versions filtered by derivation kind, tag (version or model tag) or recipe."""
        ids = self.graph.search_ids(kind=kind, tag=tag, recipe=recipe, latest_only=latest_only)
        return self.graph.versions(ids)

    def alias_history(self, name: str, alias: str | None = None) -> list[AliasEvent]:
        """Every alias change of a model, oldest first: which version served when."""
        return self.graph.alias_history(name, alias)

    def manifest(self, ref: str) -> Manifest:
        """The store manifest of a version: its tensors, files and encodings."""
        return self.store.get_manifest(self.resolve(ref).manifest_id)

    def __repr__(self) -> str:
        return f"Workspace({str(self.root)!r})"


def _write_private(path: Path, content: str) -> None:
    """Write `path` atomically, readable by its owner only (it may hold DB passwords)."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE_MODE)
    with os.fdopen(fd, "w") as handle:
        handle.write(content)
    os.replace(tmp, path)


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__
