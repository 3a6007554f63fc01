"""Items 12-13: passwords never printed, private files owner-only, a failed init leaves
nothing behind."""

from __future__ import annotations

import json
import stat
from pathlib import Path

from lineage.testing import free_port, one_error_line, run_cli

SECRET = "hunter2-s3cret"


def test_unreachable_db_init_leaves_nothing_and_hides_the_password(tmp_path: Path) -> None:
    url = f"postgresql://lineage:{SECRET}@127.0.0.1:{free_port()}/graph"
    done = run_cli(["init", "ws", "--db-url", url], tmp_path, check=False)
    assert done.returncode != 0
    line = one_error_line(done)
    assert SECRET not in done.stderr + done.stdout and "***" in line
    assert not (tmp_path / "ws").exists()


def test_an_unsupported_db_url_is_one_line_and_leaves_nothing(tmp_path: Path) -> None:
    url = f"mysql://lineage:{SECRET}@127.0.0.1/graph"
    done = run_cli(["init", "ws", "--db-url", url], tmp_path, check=False)
    assert done.returncode != 0
    line = one_error_line(done)
    assert "sqlite:///PATH or postgresql://" in line and SECRET not in line
    assert not (tmp_path / "ws").exists()


def test_unreachable_tracking_server_init_leaves_nothing(tmp_path: Path) -> None:
    env = {"MLFLOW_TRACKING_URI": f"http://user:{SECRET}@127.0.0.1:{free_port()}"}
    (tmp_path / "existing").mkdir()
    done = run_cli(["init", "existing", "--tracking"], tmp_path, check=False, env=env)
    assert done.returncode == 14, done.stderr
    assert SECRET not in done.stderr
    assert list((tmp_path / "existing").iterdir()) == []  # the folder was the user's


def test_json_output_and_private_files(tmp_path: Path, postgres_url: str) -> None:
    scheme, rest = postgres_url.split("://", 1)
    url = f"{scheme}://lineage:{SECRET}@{rest.split('@', 1)[1]}"  # trust auth ignores it
    done = run_cli(["init", "pg", "--db-url", url, "--no-tracking", "--json"], tmp_path)
    assert SECRET not in done.stdout and json.loads(done.stdout)["graph_url"].count("***") == 1
    config = tmp_path / "pg" / ".lineage" / "config.toml"
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    run_cli(["init", "lite", "--no-tracking"], tmp_path)
    for private in ("config.toml", "graph.db"):
        assert stat.S_IMODE((tmp_path / "lite" / ".lineage" / private).stat().st_mode) == 0o600
