"""Items 9-11: user strings are printed as text, refs are strict, headers are bounded."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest

from lineage.ops.add import commit
from lineage.testing import one_error_line, run_cli, write_tiny_weights
from lineage.workspace import Workspace


def test_markup_and_control_characters_are_shown_as_text(
    small_ws: Workspace, tmp_path: Path
) -> None:
    message = "[/bold] fix [champion] \x1b[31mred\x1b[0m\x07"
    commit(small_ws, "ft", source=write_tiny_weights(tmp_path / "w2", 2), message=message)
    for args in (["log", "ft"], ["show", "ft@2"], ["descendants", "base@1"], ["graph"]):
        done = run_cli(args, small_ws.root)
        assert "\x1b" not in done.stdout and "\x07" not in done.stdout, args
    shown = run_cli(["show", "ft@2"], small_ws.root).stdout
    assert "[/bold] fix [champion]" in shown and "\\x1b[31mred" in shown
    logged = run_cli(["log", "ft"], small_ws.root).stdout
    assert "[/bold]" in logged and "[champion]" in logged
    # JSON output keeps the string exactly.
    data = json.loads(run_cli(["show", "ft@2", "--json"], small_ws.root).stdout)
    assert data["message"] == message


@pytest.mark.parametrize("ref", ["base\n", "base@\u0661", "base@\u00b2", "ba se@1", "base@1 "])
def test_refs_are_ascii_and_whole(small_ws: Workspace, ref: str) -> None:
    done = run_cli(["show", ref], small_ws.root, check=False)
    assert done.returncode == 2, (ref, done.stderr)
    assert "invalid reference" in one_error_line(done)


def test_deeply_nested_safetensors_header_is_one_error(small_ws: Workspace, tmp_path: Path) -> None:
    bomb = tmp_path / "bomb"
    bomb.mkdir()
    (bomb / "config.json").write_text("{}")
    header = b'{"x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    (bomb / "model.safetensors").write_bytes(struct.pack("<Q", len(header)) + header)
    done = run_cli(["add", "bomb", "--from", str(bomb)], small_ws.root, check=False)
    assert done.returncode == 7 and "malformed safetensors header" in one_error_line(done)
    assert [m.name for m in small_ws.models()] == ["base", "ft"]
