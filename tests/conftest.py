"""Shared fixtures: service discovery (skip on a laptop, fail under CI), a real
PostgreSQL server for the graph DB, tiny safetensors models, workspaces."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch as _torch

from lineage.bundled import make_tiny_model
from lineage.testing import free_port, require_service, write_tiny_weights

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# MLflow records stay queued until a test drains them (`lineage sync mlflow`, or
# `lineage.tracking.writer.drain`): no background writer per add on shared cores. The
# background writer itself is tested in tests/tracking/test_queue.py.
os.environ.setdefault("LINEAGE_MLFLOW_WRITER", "deferred")


def _postgres_bin() -> Path | None:
    candidates = [os.environ.get("LINEAGE_PG_BIN", "")]
    candidates += sorted((str(p) for p in Path("/usr/lib/postgresql").glob("*/bin")), reverse=True)
    which = shutil.which("pg_ctl")
    if which:
        candidates.append(str(Path(which).resolve().parent))
    for candidate in candidates:
        if candidate and (Path(candidate) / "pg_ctl").exists():
            return Path(candidate)
    return None


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """A throwaway PostgreSQL server on a free loopback port; yields an admin URL."""
    bin_dir = _postgres_bin()
    require_service(bin_dir is not None, "PostgreSQL binaries (initdb, pg_ctl) not found")
    assert bin_dir is not None
    # Not under pytest's tmp dir: that is private to root, and the server runs as
    # the postgres user when the tests run as root.
    base = Path(tempfile.mkdtemp(prefix="lineage-pg-"))
    data = base / "data"
    run_as: list[str] = []
    if os.geteuid() == 0:
        # PostgreSQL refuses to run as root: run it as the postgres OS user.
        shutil.chown(base, "postgres")
        run_as = ["runuser", "-u", "postgres", "--"]
    initdb = subprocess.run(
        [*run_as, str(bin_dir / "initdb"), "-D", str(data), "-U", "lineage", "-A", "trust"],
        capture_output=True,
        text=True,
    )
    if initdb.returncode != 0:
        pytest.fail(f"initdb failed: {initdb.stderr.strip()}")
    port = free_port()
    subprocess.run(
        [
            *run_as,
            str(bin_dir / "pg_ctl"),
            "-D",
            str(data),
            "-l",
            str(base / "log"),
            "-o",
            f"-p {port} -k {base} -c listen_addresses=127.0.0.1 -c fsync=off",
            "-w",
            "start",
        ],
        check=True,
        capture_output=True,
    )
    try:
        yield f"postgresql://lineage@127.0.0.1:{port}"
    finally:
        subprocess.run(
            [*run_as, str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
            capture_output=True,
        )
        shutil.rmtree(base, ignore_errors=True)


_db_counter = iter(range(1_000_000))


@pytest.fixture
def postgres_url(postgres_server: str) -> str:
    """A fresh, empty database on the session's PostgreSQL server."""
    import psycopg

    name = f"lineage_test_{os.getpid()}_{next(_db_counter)}_{int(time.time() * 1000) % 100000}"
    with psycopg.connect(postgres_server + "/postgres", autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return f"{postgres_server}/{name}"


@pytest.fixture(params=["sqlite", "postgres"])
def graph_url(request: pytest.FixtureRequest) -> str:
    """Run a test on both graph backends: '' (embedded SQLite) and PostgreSQL."""
    if request.param == "sqlite":
        return ""
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture
def tiny_weights(tmp_path: Path):  # type: ignore[no-untyped-def]
    """Factory: tiny_weights(seed) -> a fresh directory of tiny weights."""
    counter = iter(range(10_000))

    def make(seed: int = 0, scale: float = 1.0) -> Path:
        return write_tiny_weights(tmp_path / f"weights-{next(counter)}", seed, scale=scale)

    return make


@pytest.fixture
def workspace(tmp_path: Path, graph_url: str):  # type: ignore[no-untyped-def]
    """A fresh workspace on SQLite and on PostgreSQL."""
    from lineage.workspace import Workspace

    ws = Workspace.init(tmp_path / "ws", graph_url=graph_url)
    yield ws
    ws.close()


@pytest.fixture
def sqlite_workspace(tmp_path: Path):  # type: ignore[no-untyped-def]
    from lineage.workspace import Workspace

    ws = Workspace.init(tmp_path / "ws")
    yield ws
    ws.close()


# Tiny transformers shared by the recipe and model-test tests (built once per session).
# Other engineers share the cores; tests stay within a thread or two.
_torch.set_num_threads(2)


@pytest.fixture(scope="session")
def tiny_encoder(tmp_path_factory) -> Path:
    """A tiny random BERT without a head (an embedding model, like MiniLM)."""
    return make_tiny_model(tmp_path_factory.mktemp("models") / "tiny-encoder")


@pytest.fixture(scope="session")
def tiny_classifier(tmp_path_factory) -> Path:
    """A tiny random BERT with a 2-label head."""
    return make_tiny_model(tmp_path_factory.mktemp("models") / "tiny-classifier", num_labels=2)


@pytest.fixture(scope="session")
def tiny_sentiment(tmp_path_factory, tiny_encoder) -> Path:
    """The tiny encoder fine-tuned on the shipped sentiment set (learns it in ~1 s)."""
    from lineage.recipes import get_recipe

    out = tmp_path_factory.mktemp("models") / "tiny-sentiment"
    get_recipe("finetune").derive(
        [tiny_encoder], {"steps": 40, "lr": 3e-3, "batch_size": 32}, "sentiment", out
    )
    return out
