"""The CLI contract: commands, --json, one-line errors with non-zero exits."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from lineage.testing import run_cli, write_tiny_weights


def run(args: list[str], cwd: Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    return run_cli(args, cwd, check=check)


@pytest.fixture(scope="module")
def cli_ws(tmp_path_factory):  # type: ignore[no-untyped-def]
    """One workspace for the module: the commands below only read it, or are refused."""
    tmp_path = tmp_path_factory.mktemp("cli")

    def tiny_weights(seed: int) -> Path:
        return write_tiny_weights(tmp_path / f"w{seed}", seed)

    root = tmp_path / "ws"
    run(["init", str(root), "--no-tracking"], tmp_path)
    run(["add", "base", "--from", str(tiny_weights(0)), "-m", "the base"], root)
    run(
        ["add", "ft", "--from", str(tiny_weights(1)), "--parent", "base@1", "--kind", "finetune"],
        root,
    )
    run(["add", "q", "--from", str(tiny_weights(2)), "-p", "ft", "-k", "quantize"], root)
    return root


def test_read_commands_print_json(cli_ws: Path) -> None:
    log = json.loads(run(["log", "ft", "--json"], cli_ws).stdout)
    assert [v["ref"] for v in log] == ["ft@1"]
    show = json.loads(run(["show", "ft@1", "--json"], cli_ws).stdout)
    assert show["parents"][0]["ref"] == "base@1" and show["children"] == ["q@1"]
    assert show["author"] == "tester"
    desc = json.loads(run(["descendants", "base@1", "--json"], cli_ws).stdout)
    assert [v["ref"] for v in desc] == ["ft@1", "q@1"]
    graph = json.loads(run(["graph", "--json"], cli_ws).stdout)
    assert len(graph["nodes"]) == 3 and len(graph["edges"]) == 2
    models = json.loads(run(["models", "--json"], cli_ws).stdout)
    assert [m["name"] for m in models] == ["base", "ft", "q"]


@pytest.mark.parametrize("fmt", ["text", "mermaid", "dot", "html", "json"])
def test_graph_formats(cli_ws: Path, fmt: str) -> None:
    out = run(["graph", "--format", fmt], cli_ws).stdout
    assert "ft@1" in out or "ft@1" in out.replace("&quot;", '"')
    if fmt == "html":
        assert out.lstrip().startswith("<!DOCTYPE html>")
        assert "http://" not in out.replace("http://www.w3.org/2000/svg", "")
        assert "https://" not in out and "<script src" not in out
    if fmt == "mermaid":
        assert out.startswith("graph TD")
    if fmt == "dot":
        assert out.startswith("digraph lineage")


def test_checkout_round_trip_is_bit_exact(cli_ws: Path, tmp_path: Path) -> None:
    run(["checkout", "ft@1", str(tmp_path / "out")], cli_ws)
    original = write_tiny_weights(tmp_path / "again", 1)
    for name in ("model.safetensors", "config.json"):
        assert (tmp_path / "out" / name).read_bytes() == (original / name).read_bytes()


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (["show", "nope@1"], 4),
        (["show", "ft@9"], 4),
        (["show", "a@@1"], 2),
        (["show", "@"], 2),
        (["show", "ft@-1"], 2),
        (["add", "x/y", "--from", "."], 2),
        (["add", "base", "--from", "."], 5),
        (["add", "new", "--from", "/does/not/exist"], 7),
        (["add", "ft", "--from", ".", "-p", "nope"], 5),
        (["add", "loop", "--from", ".", "-p", "loop@1"], 6),
        (["link", "base@1", "q@1"], 6),
        (["graph", "--format", "png"], 2),
        (["bogus"], 2),
        (["show"], 2),
    ],
)
def test_bad_input_one_line_error(cli_ws: Path, args: list[str], code: int) -> None:
    result = run(args, cli_ws, check=False)
    assert result.returncode == code, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr


def test_missing_workspace_is_a_clear_error(tmp_path: Path) -> None:
    result = run(["log", "x"], tmp_path, check=False)
    assert result.returncode == 3
    assert "no lineage workspace" in result.stderr
    result = run(["--workspace", str(tmp_path / "nope"), "models"], tmp_path, check=False)
    assert result.returncode == 3


def test_version_and_bare_command(cli_ws: Path) -> None:
    assert run(["--version"], cli_ws).stdout.startswith("lineage ")
    bare = run([], cli_ws, check=False)
    assert bare.returncode == 2 and "Usage" in bare.stdout and "Traceback" not in bare.stderr


def test_name_too_long_and_nul(cli_ws: Path) -> None:
    result = run(["add", "x" * 201, "--from", "."], cli_ws, check=False)
    assert result.returncode == 2 and "at most 200" in result.stderr
