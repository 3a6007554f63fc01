"""`lineage.store`'s public names are the functions, even where a submodule has the same
name (checkout, gc, ingest, repair, stats, verify) and was imported first."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

SHARED = ("checkout", "gc", "ingest", "repair", "stats", "verify")


@pytest.mark.parametrize("name", SHARED)
def test_a_name_shared_with_a_submodule_is_the_function(name: str) -> None:
    # In a fresh interpreter: the submodule first, then the package's name.
    code = (
        f"import importlib; importlib.import_module('lineage.store.{name}');"
        f"from lineage.store import {name}; import inspect;"
        f"assert inspect.isfunction({name}), type({name})"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert callable(getattr(importlib.import_module("lineage.store"), name))


def test_every_public_name_loads_and_reading_a_manifest_skips_the_codec() -> None:
    # Names load on first use; opening a store and reading manifests (`lineage show`)
    # must not import numpy or the C kernels of the codec.
    code = (
        "import sys, lineage.store as s;"
        "from lineage.store.backend import ObjectStore;"
        "assert 'numpy' not in sys.modules, 'numpy loaded by the store backend';"
        "missing = [n for n in s.__all__ if getattr(s, n, None) is None];"
        "assert not missing, missing;"
        "assert sorted(s.__all__) == sorted(s._HOMES)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
