"""The README is a tested script: its examples run as written, in order.

Every ```bash block of README.md, and every ```python block (run with `python -` where
it stands, in the shell's current directory), is put into one bash script, in README
order, with `set -euo pipefail`, and run once in a fresh directory that holds nothing but
`.venv` (this interpreter's environment, so `source .venv/bin/activate` works as on a
fresh clone after `make setup`). A failing command fails the test, with the README line
of its block.

A block that cannot run here (it needs a cluster, a server, or it *is* the test suite)
is preceded by a marker comment with the reason, which this test requires:

    <!-- docs-test: skip — needs a Kubernetes cluster -->
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
SKIP = re.compile(r"^<!--\s*docs-test:\s*skip\s*(?:[—:-]\s*)?(?P<reason>.*?)\s*-->$")
FENCE = re.compile(r"^```(?P<lang>[\w-]*)\s*$")
RUNNABLE = ("bash", "python")
#: The whole README on 2 busy cores takes about 5 minutes; far more means a hang.
TIMEOUT_S = 1500


@dataclass(frozen=True)
class Block:
    lang: str
    code: str
    line: int  # of the opening fence, 1-based
    skip: str | None  # the marker's reason, when marked


def readme_blocks(text: str) -> list[Block]:
    """The fenced blocks of a Markdown text, with the skip marker right above each."""
    blocks: list[Block] = []
    lines = text.splitlines()
    index = 0
    while index < len(lines):
        fence = FENCE.match(lines[index])
        if fence is None:
            index += 1
            continue
        start = index
        index += 1
        body = []
        while index < len(lines) and lines[index].strip() != "```":
            body.append(lines[index])
            index += 1
        previous = lines[start - 1].strip() if start > 0 else ""
        marker = SKIP.match(previous)
        blocks.append(
            Block(
                lang=fence["lang"],
                code="\n".join(body),
                line=start + 1,
                skip=None if marker is None else marker["reason"],
            )
        )
        index += 1
    return blocks


def readme_script(blocks: list[Block], home: Path) -> str:
    """One bash script running the runnable blocks in order."""
    parts = ["set -euo pipefail", f"cd {home}"]
    for block in blocks:
        if block.lang not in RUNNABLE or block.skip is not None:
            continue
        parts.append(f'echo ">>> README.md line {block.line} ({block.lang}) at $SECONDS s" >&2')
        if block.lang == "bash":
            parts.append(block.code)
        else:
            parts.append(f"python - <<'README_PYTHON'\n{block.code}\nREADME_PYTHON")
    return "\n".join(parts) + "\n"


def test_every_skipped_block_says_why_and_the_rest_is_runnable() -> None:
    blocks = readme_blocks(README.read_text())
    runnable = [b for b in blocks if b.lang in RUNNABLE and b.skip is None]
    assert len(runnable) >= 4  # the Quickstart, the Python API, MLflow (shell and Python)
    for block in blocks:
        if block.skip is not None:
            assert block.skip, f"README.md line {block.line}: a skip marker needs a reason"
            assert block.lang in RUNNABLE, f"README.md line {block.line}: marker on a non-script"
        if block.lang == "" and re.search(r"^\s*(lineage|prefect|dask|docker) ", block.code, re.M):
            pytest.fail(f"README.md line {block.line}: commands in an unlabelled block")


def test_the_readme_runs_as_written(tmp_path: Path) -> None:
    home = tmp_path / "clone"
    home.mkdir()
    (tmp_path / "home").mkdir()
    (home / ".venv").symlink_to(Path(sys.prefix))
    script = readme_script(readme_blocks(README.read_text()), home)
    env = {
        **os.environ,
        "HOME": str(tmp_path / "home"),  # nothing leaks into the user's files
        "PREFECT_HOME": str(tmp_path / "prefect"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_LOGGING_LEVEL": "WARNING",
        "XDG_CACHE_HOME": os.environ.get("XDG_CACHE_HOME", str(Path.home() / ".cache")),
    }
    env.pop("LINEAGE_WORKSPACE", None)
    env.pop("MLFLOW_TRACKING_URI", None)
    env.pop("PREFECT_API_URL", None)
    done = subprocess.run(
        ["bash", "-c", script],
        capture_output=True,
        text=True,
        env=env,
        timeout=TIMEOUT_S,
    )
    if done.returncode != 0:
        pytest.fail(
            f"the README stopped (exit {done.returncode}):\n"
            f"--- stderr (end) ---\n{done.stderr[-4000:]}\n--- stdout (end) ---\n"
            f"{done.stdout[-2000:]}"
        )
    demo = home / "demo"
    # What the Quickstart says happened, happened.
    from lineage.workspace import Workspace

    ws = Workspace.open(demo)
    assert ws.model("base").latest == 2
    assert ws.model("sentiment").aliases["champion"] == 1  # rolled back across the lineage
    assert ws.model("sentiment-int8").aliases["champion"] == 1
    assert ws.model("sentiment-lora").aliases["champion"] == 2  # not derived from sentiment
    assert (demo / "family.html").is_file() and (demo / "base-fp16-out").is_dir()
