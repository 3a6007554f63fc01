"""Items 14-16: the serving aliases move only through the gate, untested versions do not
pass it, and user code runs only from modules the workspace trusts."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from lineage.errors import UsageError
from lineage.ops.add import add
from lineage.ops.derive import rederive
from lineage.ops.tests import declare_model_test
from lineage.records import Provenance
from lineage.testing import one_error_line, run_cli, write_tiny_weights
from lineage.workspace import Workspace


def test_alias_refuses_the_serving_aliases(small_ws: Workspace) -> None:
    for alias in ("champion", "candidate", "previous"):
        done = run_cli(["alias", "ft@1", alias], small_ws.root, check=False)
        assert done.returncode == 2 and "lineage promote" in one_error_line(done)
    assert small_ws.model("ft").aliases == {}
    run_cli(["alias", "ft@1", "staging"], small_ws.root)
    assert small_ws.model("ft").aliases == {"staging": 1}


def test_a_version_no_test_applies_to_is_not_promoted(small_ws: Workspace) -> None:
    done = run_cli(["promote", "base@1"], small_ws.root, check=False)
    assert done.returncode == 13 and "no test applies" in one_error_line(done)
    run_cli(["policy", "base", "--allow-untested"], small_ws.root)
    run_cli(["promote", "base@1"], small_ws.root)
    assert small_ws.model("base").aliases == {"champion": 1}


@pytest.fixture
def planted(tmp_path: Path) -> Path:
    """A module that would leave a mark if it were ever imported."""
    code = tmp_path / "code"
    code.mkdir()
    mark = tmp_path / "imported"
    (code / "payload.py").write_text(
        f"from pathlib import Path\nPath({str(mark)!r}).write_text('ran')\n"
        "def run(parents, params, data, out_dir):\n    pass\n"
        "def check(model_dir, parent_dir, data, params):\n    return 1.0\n"
    )
    sys.path.insert(0, str(code))
    yield mark
    sys.path.remove(str(code))
    sys.modules.pop("payload", None)


def test_untrusted_recipe_and_test_references_never_import(
    small_ws: Workspace, tmp_path: Path, planted: Path
) -> None:
    # Someone with write access to the graph DB records a version made by `payload:run`.
    add(
        small_ws,
        "victim",
        source=write_tiny_weights(tmp_path / "w-v", 5),
        parents=["base@1"],
        provenance=Provenance(recipe_id="payload:run"),
    )
    with pytest.raises(UsageError, match="module 'payload' is not trusted"):
        rederive(small_ws, "victim@1", ["base@1"])
    with pytest.raises(UsageError, match="not trusted"):
        declare_model_test(small_ws, "base", "planted", "user", {"ref": "payload:check"})
    small_ws.graph.upsert_test("base", "planted", "user", {"ref": "payload:check"}, False)
    done = run_cli(["test", "ft@1"], small_ws.root, check=False)
    assert done.returncode == 2 and "not trusted" in one_error_line(done)
    assert not planted.exists()
    # Trusted on purpose: now it runs.
    run_cli(["trust", "payload"], small_ws.root)
    small_ws.config.trusted_code = ["payload"]
    declare_model_test(small_ws, "base", "planted", "user", {"ref": "payload:check"})
    assert planted.exists()
