"""Doctests of the library run with `pytest` (see `testpaths` in pyproject.toml).

Each example finds these names ready: `tmp` (a fresh folder), `ws` (a fresh workspace
holding base@1 and ft@1, tiny BERT models, ft derived from base), `Workspace`,
`write_tiny_weights` and `make_tiny_model`.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

# Executed by MLflow when it loads a pointer model, never imported by lineage itself.
collect_ignore = [
    "lineage/serving_entry.py",
    "lineage/graph/migrations",  # run by alembic, with its context
]


@pytest.fixture(scope="session")
def _doctest_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from lineage.bundled import make_tiny_model

    root = tmp_path_factory.mktemp("doctest-models")
    return {
        "base": make_tiny_model(root / "base", num_labels=2, seed=0),
        "ft": make_tiny_model(root / "ft", num_labels=2, seed=1),
    }


@pytest.fixture(autouse=True)
def _doctest_names(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    if not isinstance(request.node, pytest.DoctestItem):
        yield
        return
    from lineage.bundled import make_tiny_model
    from lineage.ops.add import add
    from lineage.testing import write_tiny_weights
    from lineage.workspace import Workspace

    models = request.getfixturevalue("_doctest_models")
    namespace = request.getfixturevalue("doctest_namespace")
    ws = Workspace.init(tmp_path / "doctest-ws")
    add(ws, "base", source=models["base"])
    add(ws, "ft", source=models["ft"], parents=["base@1"], kind="finetune")
    namespace.update(
        tmp=tmp_path,
        ws=ws,
        Workspace=Workspace,
        write_tiny_weights=write_tiny_weights,
        make_tiny_model=make_tiny_model,
    )
    yield
    ws.close()
    shutil.rmtree(tmp_path / "doctest-ws", ignore_errors=True)
