"""The CLI answers like git: read commands stay light, `init` does not touch MLflow,
help shows what to type, completion knows the workspace, piped output is whole, and a
recipe reports progress in a log.

Every check runs the real console entry point in a fresh process (what a shell does).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lineage.ops.add import add, commit
from lineage.workspace import Workspace

# SQLAlchemy too: the graph DB is read with the drivers themselves (lineage.graph.db).
HEAVY = ("torch", "transformers", "mlflow", "prefect", "peft", "sqlalchemy")

# Runs the CLI in this interpreter, then reports which heavy packages it imported.
_PROBE = """
import json, sys
watched = set(json.loads(sys.argv[2]))
sys.argv = ["lineage", *json.loads(sys.argv[1])]
from lineage.cli.main import main
try:
    main()
except SystemExit as exc:
    code = exc.code
else:
    code = 0
heavy = sorted({m.split(".")[0] for m in sys.modules} & watched)
sys.stderr.write("\\nHEAVY " + json.dumps({"code": code, "heavy": heavy}) + "\\n")
"""


def _env(root: Path, **extra: str) -> dict[str, str]:
    env = {**os.environ, "LINEAGE_WORKSPACE": str(root)}
    env.pop("COLUMNS", None)
    return {**env, **extra}


def _lineage(args: list[str], root: Path, **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lineage.cli.main", *args],
        capture_output=True,
        text=True,
        env=_env(root, **extra),
        timeout=300,
    )


@pytest.fixture(scope="module")
def family(tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    from lineage.testing import write_tiny_weights

    root = tmp_path_factory.mktemp("cli")
    ws = Workspace.init(root / "ws")
    add(ws, "base", source=write_tiny_weights(root / "w0", 0))
    long_message = "a commit message long enough to be cut at eighty columns " * 3
    add(
        ws,
        "sentiment",
        source=write_tiny_weights(root / "w1", 1),
        parents=["base@1"],
        kind="finetune",
        message=long_message.strip(),
    )
    commit(ws, "base", source=write_tiny_weights(root / "w2", 2))
    return ws


@pytest.mark.parametrize(
    "args",
    [
        ["log", "base"],
        ["log", "sentiment", "--aliases"],
        ["show", "sentiment@1"],
        ["graph"],
        ["graph", "--format", "html", "-o", "graph.html"],
        ["descendants", "base@1"],
        ["models"],
        ["--help"],
        ["recipes", "list"],
        ["show", "--help"],
        ["--version"],
    ],
    ids=lambda args: " ".join(args),
)
def test_read_commands_import_no_torch_mlflow_or_prefect(
    family: Workspace, args: list[str], tmp_path: Path
) -> None:
    probe = subprocess.run(
        [sys.executable, "-c", _PROBE, json.dumps(args), json.dumps(HEAVY)],
        capture_output=True,
        text=True,
        env=_env(family.root),
        cwd=tmp_path,
        timeout=120,
    )
    report = json.loads(probe.stderr.rsplit("HEAVY ", 1)[1])
    assert report["code"] in (0, None), probe.stderr
    assert report["heavy"] == [], f"lineage {' '.join(args)} imported {report['heavy']}"


def test_init_leaves_mlflow_for_later(tmp_path: Path) -> None:
    # init creates the graph DB's schema: SQLAlchemy and alembic are its tools.
    heavy = [module for module in HEAVY if module != "sqlalchemy"]
    probe = subprocess.run(
        [sys.executable, "-c", _PROBE, json.dumps(["init", "ws"]), json.dumps(heavy)],
        capture_output=True,
        text=True,
        env=_env(tmp_path / "elsewhere"),
        cwd=tmp_path,
        timeout=120,
    )
    report = json.loads(probe.stderr.rsplit("HEAVY ", 1)[1])
    assert report == {"code": 0, "heavy": []}, probe.stderr
    assert (tmp_path / "ws" / ".lineage" / "config.toml").is_file()
    assert not (tmp_path / "ws" / ".lineage" / "mlflow").exists()


def test_piped_output_is_not_cut_to_the_terminal_width(family: Workspace) -> None:
    message = family.resolve("sentiment@1").message
    assert len(message) > 120
    out = _lineage(["log", "sentiment"], family.root, COLUMNS="80").stdout
    assert any(message in line for line in out.splitlines()), out
    shown = _lineage(["show", "sentiment@1"], family.root).stdout
    assert any(message in line for line in shown.splitlines())


def test_help_shows_metavars_and_choices(family: Workspace) -> None:
    text = _lineage(["add", "--help"], family.root, COLUMNS="120").stdout
    assert "<bool>" not in text and "<str>" not in text and "<list" not in text
    assert "--parent" in text and "REF" in text
    assert "<inline|process|docker>" in text
    flat = " ".join(text.replace("│", " ").split())  # the help wraps inside its box
    assert "finetune, adapter, distill, quantize, prune, merge, other" in flat
    graph = _lineage(["graph", "--help"], family.root, COLUMNS="120").stdout
    assert "<text|mermaid|dot|html|json>" in graph
    refused = _lineage(["add", "x", "--from", ".", "--kind", "vibes"], family.root)
    assert refused.returncode == 2
    assert refused.stderr.startswith("error: Invalid value for '--kind'")


def _complete(family: Workspace, words: str) -> list[str]:
    done = _lineage(
        [],
        family.root,
        _LINEAGE_COMPLETE="complete_bash",
        COMP_WORDS=words,
        COMP_CWORD=str(len(words.split(" ")) - 1),
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


def test_completion_offers_model_names_and_refs(family: Workspace) -> None:
    assert _complete(family, "lineage show ") == ["base", "sentiment"]
    assert _complete(family, "lineage log s") == ["sentiment"]
    assert _complete(family, "lineage checkout base@") == ["base@2", "base@1", "base@latest"]
    assert _complete(family, "lineage descendants nothing@") == []
    assert _complete(family, "lineage rollb") == ["rollback"]
    script = _lineage(["--show-completion", "bash"], family.root)
    assert "_LINEAGE_COMPLETE=complete_bash" in script.stdout


def test_a_recipe_prints_progress_lines_when_not_on_a_terminal(
    tmp_path: Path, tiny_encoder: Path
) -> None:
    ws = Workspace.init(tmp_path / "ws")
    add(ws, "enc", source=tiny_encoder)
    done = _lineage(
        [
            *("add", "ft", "-p", "enc@1", "--recipe", "finetune", "--data", "sentiment"),
            *("--param", "steps=20", "--param", "batch_size=8"),
        ],
        ws.root,
    )
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.startswith("finetune → ft:")]
    steps = [line for line in lines if ": step " in line]
    # Every tenth of the steps, with the loss and an ETA; then validation and storing.
    assert [line.split("step ")[1].split(",")[0] for line in steps] == [
        f"{n}/20" for n in range(2, 21, 2)
    ]
    assert all(", loss " in line and ", eta " in line for line in steps)
    assert lines[-2:] == ["finetune → ft: validating and storing", lines[-1]]
    assert lines[-1].startswith("finetune → ft: done in ")
    assert done.stdout.startswith("Added ft@1")


def test_choices_in_the_cli_are_the_runners_lineage_has() -> None:
    from typing import get_args

    from lineage.cli.output import RunnerName
    from lineage.steps.runners import RUNNER_NAMES

    assert sorted(get_args(RunnerName)) == sorted(RUNNER_NAMES)


def test_python_dash_m_lineage_is_the_cli(family: Workspace, tmp_path: Path) -> None:
    shown = subprocess.run(
        [sys.executable, "-m", "lineage", "show", "base@1", "--json"],
        capture_output=True,
        text=True,
        env=_env(family.root),
        cwd=tmp_path,
        timeout=120,
    )
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["ref"] == "base@1"
    missing = subprocess.run(
        [sys.executable, "-m", "lineage", "show", "base@9"],
        capture_output=True,
        text=True,
        env=_env(family.root),
        cwd=tmp_path,
        timeout=120,
    )
    assert missing.returncode == 4
    assert missing.stderr.startswith("error: ") and len(missing.stderr.splitlines()) == 1
