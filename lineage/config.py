"""Workspace location and configuration (`.lineage/config.toml`)."""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from lineage.errors import WorkspaceNotFoundError

LINEAGE_DIR = ".lineage"
CONFIG_FILE = "config.toml"
WORKSPACE_ENV = "LINEAGE_WORKSPACE"


def switched_on(name: str) -> bool:
    """Whether the on/off switch `$name` is on: unset or anything but 0/false/no/off
    (every `LINEAGE_*` switch reads the same way).

    >>> import os
    >>> os.environ["LINEAGE_EXAMPLE_SWITCH"] = "off"
    >>> switched_on("LINEAGE_EXAMPLE_SWITCH"), switched_on("LINEAGE_UNSET_SWITCH")
    (False, True)
    >>> del os.environ["LINEAGE_EXAMPLE_SWITCH"]
    """
    return os.environ.get(name, "1").strip().lower() not in {"0", "false", "no", "off"}


@dataclass
class WorkspaceConfig:
    """Settings of one workspace. Empty strings mean "the embedded default"."""

    graph_url: str = ""  # sqlite:///PATH or postgresql://…; default: SQLite file .lineage/graph.db
    store_url: str = ""  # folder or s3://bucket/prefix; default: .lineage/objects
    mlflow_tracking_uri: str = ""  # default: SQLite in .lineage/mlflow
    prefect_api_url: str = ""  # default: whatever Prefect is configured with
    delta_chain_depth: int = 8
    # Modules whose `module:function` recipes and tests this workspace runs (see
    # `code_trusted`); references are stored in the graph DB, which others can write.
    trusted_code: list[str] = field(default_factory=list)
    extra: dict[str, str] = field(default_factory=dict)

    def to_toml(self) -> str:
        def quote(value: str) -> str:
            return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'

        lines = [
            "# lineage workspace configuration",
            "[graph]",
            f"url = {quote(self.graph_url)}",
            "",
            "[store]",
            f"url = {quote(self.store_url)}",
            f"delta_chain_depth = {int(self.delta_chain_depth)}",
            "",
            "[mlflow]",
            f"tracking_uri = {quote(self.mlflow_tracking_uri)}",
            "",
            "[prefect]",
            f"api_url = {quote(self.prefect_api_url)}",
            "",
            "[code]",
            "# modules whose module:function recipes and tests may run here",
            f"trusted = [{', '.join(quote(m) for m in self.trusted_code)}]",
            "",
        ]
        return "\n".join(lines)

    @classmethod
    def from_toml(cls, text: str) -> WorkspaceConfig:
        data = tomllib.loads(text)
        return cls(
            graph_url=data.get("graph", {}).get("url", ""),
            store_url=data.get("store", {}).get("url", ""),
            delta_chain_depth=int(data.get("store", {}).get("delta_chain_depth", 8)),
            mlflow_tracking_uri=data.get("mlflow", {}).get("tracking_uri", ""),
            prefect_api_url=data.get("prefect", {}).get("api_url", ""),
            trusted_code=[str(m) for m in data.get("code", {}).get("trusted", [])],
        )


def find_workspace_root(start: Path | str | None = None) -> Path:
    """The directory holding `.lineage/`: given explicitly, from the environment, or
    searched upwards from the current directory (like git)."""
    if start is None and os.environ.get(WORKSPACE_ENV):
        start = os.environ[WORKSPACE_ENV]
        explicit = True
    else:
        explicit = start is not None
    base = Path(start if start is not None else Path.cwd()).expanduser().resolve()
    if explicit:
        if (base / LINEAGE_DIR / CONFIG_FILE).is_file():
            return base
        raise WorkspaceNotFoundError(
            f"no lineage workspace at {base} (run `lineage init {base}` to create one)"
        )
    for candidate in (base, *base.parents):
        if (candidate / LINEAGE_DIR / CONFIG_FILE).is_file():
            return candidate
    raise WorkspaceNotFoundError(
        f"no lineage workspace in {base} or any parent directory "
        "(run `lineage init`, pass --workspace DIR, or set LINEAGE_WORKSPACE)"
    )


#: Code that ships with lineage: always trusted.
BUILTIN_CODE = "lineage"


def code_module(reference: str) -> str | None:
    """The module of a `module:function` reference; None for a plain recipe id (built-in
    or an installed entry point, which come with the environment, not the DB).

    >>> code_module("toy_recipes:scale"), code_module("finetune")
    ('toy_recipes', None)
    """
    return reference.split(":", 1)[0] if ":" in reference else None


def code_trusted(config: WorkspaceConfig, reference: str) -> bool:
    """Whether the workspace may import and run `reference`: plain ids always; a
    `module:function` only from lineage itself or a module listed in `[code] trusted`
    (a listed package covers its submodules).

    >>> code_trusted(WorkspaceConfig(trusted_code=["acme"]), "acme.recipes:tune")
    True
    >>> code_trusted(WorkspaceConfig(), "evil:run")
    False
    """
    module = code_module(reference)
    if module is None:
        return True
    return any(
        module == allowed or module.startswith(allowed + ".")
        for allowed in (BUILTIN_CODE, *config.trusted_code)
    )
