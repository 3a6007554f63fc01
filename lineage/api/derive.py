"""Making versions with recipes: `add_from_recipe` (a new model) and `rederive`
(the next version of a recipe-made model, on new parents — what the cascade runs).

Parents are checked out of the store into a temporary folder, the recipe runs on
them (in-process, or through a `tasks.runners` runner), and the output is committed
with its provenance: recipe id and validated params, pinned parent refs, the data
set spec and fingerprint, the code version. If anything fails, nothing is stored.

>>> v = add_from_recipe(ws, "sentiment", recipe_id="finetune", parents=["base@1"],
...                     params={"steps": 60}, data="sentiment")     # doctest: +SKIP
>>> rederive(ws, "sentiment@1", ["base@2"]).ref                     # doctest: +SKIP
'sentiment@2'
"""

from __future__ import annotations

import logging
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lineage.errors import RecipeError
from lineage.records import Provenance, VersionInfo

if TYPE_CHECKING:
    from lineage.workspace import Workspace

log = logging.getLogger(__name__)

#: Loss-curve points kept in a version's provenance (`extra`); the rest is in MLflow.
MAX_CURVE_POINTS = 200


@dataclass
class RecipeRun:
    """What running a recipe produced, wherever it ran."""

    model_dir: Path
    recipe_id: str
    kind: str
    params: dict[str, Any]
    parent_dirs: list[Path] = field(default_factory=list)
    metrics: dict[str, float] = field(default_factory=dict)
    loss_curve: list[tuple[int, float]] = field(default_factory=list)
    layout: str = "model"
    data_fingerprint: str | None = None
    image_digest: str | None = None
    seconds: float = 0.0


def code_version(recipe_id: str, recipe_version: str = "1") -> str:
    """`lineage==X.Y.Z recipe=ID@V`: what code made a version."""
    try:
        lib = version("lineage")
    except PackageNotFoundError:
        lib = "unknown"
    return f"lineage=={lib} recipe={recipe_id}@{recipe_version}"


@contextmanager
def _progress_bar(label: str, enabled: bool) -> Iterator[Callable[[int, int, float], None] | None]:
    # A bar only for a person at a terminal; logs carry step/loss otherwise.
    if not enabled or not sys.stderr.isatty():
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]:.4f}"),
        console=Console(stderr=True),
        transient=True,
    ) as bar:
        task = bar.add_task(label, total=None, loss=float("nan"))

        def update(step: int, total: int, loss: float) -> None:
            bar.update(task, completed=step, total=total, loss=loss)

        yield update


def run_recipe(
    workspace: Workspace,
    recipe_id: str,
    parent_refs: Sequence[str],
    params: dict[str, Any] | None,
    data: str | None,
    work_dir: Path,
    *,
    runner: Any = None,
    show_progress: bool = False,
) -> RecipeRun:
    """Check the parents out under `work_dir` and run the recipe on them.

    Validation (recipe id, params, data set) happens before any checkout, so bad
    input costs nothing. `runner` is a `tasks.runners` runner or its name
    (`"process"`, `"docker"`); None runs in this process.
    """
    from lineage.datasets import load_dataset
    from lineage.recipes import get_recipe

    recipe = get_recipe(recipe_id)
    typed = recipe.validate_params(params or {})
    if data is not None:
        load_dataset(data)  # DataError now, not after the checkout
    parent_dirs = []
    for i, ref in enumerate(parent_refs):
        parent_dirs.append(workspace.checkout(ref, work_dir / f"parent-{i}"))
    if runner is None:
        out = work_dir / "model"
        with _progress_bar(f"{recipe.id}", show_progress) as progress:
            result = recipe.derive(parent_dirs, typed, data, out, progress=progress)
        return RecipeRun(
            model_dir=out,
            parent_dirs=parent_dirs,
            recipe_id=recipe.id,
            kind=recipe.kind,
            params=typed.model_dump(mode="json"),
            metrics=dict(result.metrics),
            loss_curve=list(result.loss_curve),
            layout=result.layout,
            data_fingerprint=result.data_fingerprint,
            seconds=result.duration_s,
        )
    if isinstance(runner, str):
        from tasks.runners import get_runner

        runner = get_runner(runner)
    spec = {
        "action": "derive",
        "recipe": recipe.id,
        "params": typed.model_dump(mode="json"),
        "parents": [str(p) for p in parent_dirs],
        "data": data,
        "out": str(work_dir / "step"),
    }
    step = runner.run_step(spec)
    if step.model_dir is None:
        raise RecipeError(f"recipe {recipe.id!r}: the {step.runner} step wrote no model")
    return RecipeRun(
        model_dir=step.model_dir,
        parent_dirs=parent_dirs,
        recipe_id=recipe.id,
        kind=str(step.result.get("kind", recipe.kind)),
        params=dict(step.result.get("params") or spec["params"]),
        metrics=step.metrics,
        loss_curve=step.loss_curve,
        layout=str(step.result.get("layout", "model")),
        data_fingerprint=step.result.get("data_fingerprint"),
        image_digest=step.image_digest,
        seconds=step.seconds,
    )


def provenance_of(run: RecipeRun, data: str | None, recipe_version: str = "1") -> Provenance:
    """The provenance a recipe-made version records."""
    curve = run.loss_curve
    if len(curve) > MAX_CURVE_POINTS:  # keep the shape, drop the density
        stride = -(-len(curve) // MAX_CURVE_POINTS)
        curve = curve[::stride] + ([curve[-1]] if curve[-1] not in curve[::stride] else [])
    return Provenance(
        recipe_id=run.recipe_id,
        recipe_params=run.params,
        data_fingerprint=run.data_fingerprint,
        code_version=code_version(run.recipe_id, recipe_version),
        image_digest=run.image_digest,
        extra={
            "data": data,
            "metrics": run.metrics,
            "loss_curve": [[s, v] for s, v in curve],
            "layout": run.layout,
            "derive_seconds": round(run.seconds, 3),
        },
    )


# Recipes whose output is a cheap, deterministic function of the parents' bytes. Their
# versions are stored as "recipe + content hashes" and re-made on checkout; the store
# verifies the re-made files against the hashes and keeps the bytes when they differ.
DERIVABLE_KINDS = frozenset({"quantize", "merge"})


def derivable_kwargs(
    workspace: Workspace, recipe: Any, run: RecipeRun, pinned: Sequence[str], data: str | None
) -> dict[str, Any]:
    """`rematerialize`/`derivation_spec` for `Workspace.add/commit` when `run` can be
    re-made from its parents alone; {} otherwise (training, data, containers)."""
    if (
        recipe.kind not in DERIVABLE_KINDS
        or not recipe.deterministic
        or data is not None
        or run.layout != "model"
        or run.image_digest
        or not run.parent_dirs
    ):
        return {}
    spec = {
        "recipe": recipe.id,
        "recipe_version": recipe.version,
        "params": run.params,
        "parents": [workspace.resolve(ref).manifest_id for ref in pinned],
    }

    def rematerialize(out_dir: Path) -> None:
        _derive_quietly(spec, run.parent_dirs, out_dir)

    return {"rematerialize": rematerialize, "derivation_spec": spec}


def _derive_quietly(spec: dict[str, Any], parent_dirs: Sequence[Path], out_dir: Path) -> None:
    from lineage.recipes import get_recipe

    recipe = get_recipe(spec["recipe"])
    params = recipe.validate_params(spec["params"])
    target = out_dir / "model" if out_dir.exists() and any(out_dir.iterdir()) else out_dir
    recipe.derive(list(parent_dirs), params, None, target)
    if target != out_dir:
        for item in target.iterdir():
            item.rename(out_dir / item.name)
        target.rmdir()


def materialize(workspace: Workspace, spec: dict[str, Any], out_dir: Path) -> None:
    """Re-make a derivable version into `out_dir`: check out its parents (by manifest
    id, themselves possibly derivable) and run the recorded recipe on them."""
    from lineage.store import checkout

    with tempfile.TemporaryDirectory(prefix="lineage-materialize-") as tmp:
        parent_dirs = []
        for index, manifest_id in enumerate(spec.get("parents", [])):
            parent_dir = Path(tmp) / f"parent-{index}"
            checkout(
                workspace.store,
                workspace.store.get_manifest(manifest_id),
                parent_dir,
                materialize=lambda inner, d: materialize(workspace, inner, d),
            )
            parent_dirs.append(parent_dir)
        _derive_quietly(spec, parent_dirs, out_dir)


def _pinned(workspace: Workspace, refs: Sequence[str]) -> list[str]:
    # `base@champion` moves; provenance must say which version was used.
    return [workspace.resolve(ref).ref for ref in refs]


def add_from_recipe(
    workspace: Workspace,
    name: str,
    *,
    recipe_id: str,
    parents: Sequence[str],
    params: dict[str, Any] | None = None,
    data: str | None = None,
    message: str = "",
    runner: Any = None,
    show_progress: bool = False,
    tags: Sequence[str] = (),
) -> VersionInfo:
    """Make a new model `name@1` by running a recipe on `parents`."""
    from lineage.recipes import get_recipe
    from lineage.refs import validate_name

    validate_name(name)
    if not parents:
        raise RecipeError(f"recipe {recipe_id!r} needs at least one --parent")
    recipe = get_recipe(recipe_id)
    pinned = _pinned(workspace, parents)
    with tempfile.TemporaryDirectory(prefix="lineage-derive-") as tmp:
        run = run_recipe(
            workspace,
            recipe_id,
            pinned,
            params,
            data,
            Path(tmp),
            runner=runner,
            show_progress=show_progress,
        )
        return workspace.add(
            name,
            source=run.model_dir,
            parents=pinned,
            kind=run.kind,
            message=message or f"{recipe.id} on {', '.join(pinned)}",
            provenance=provenance_of(run, data, recipe.version),
            tags=tags,
            **derivable_kwargs(workspace, recipe, run, pinned, data),
        )


def rederive(
    workspace: Workspace,
    ref: str,
    parents: Sequence[str],
    *,
    runner: Any = None,
    message: str = "",
    show_progress: bool = False,
) -> VersionInfo:
    """Re-run `ref`'s recipe (same params and data spec) on `parents`; commit the
    result as the next version of `ref`'s model."""
    from lineage.recipes import get_recipe

    old = workspace.resolve(ref)
    if not old.recipe_id:
        raise RecipeError(
            f"{old.ref} was not made by a recipe (added from files), so it cannot be re-derived"
        )
    recipe = get_recipe(old.recipe_id)
    if not parents:
        parents = [link.ref for link in old.derivation_parents]
    pinned = _pinned(workspace, parents)
    data = (old.extra or {}).get("data")
    with tempfile.TemporaryDirectory(prefix="lineage-derive-") as tmp:
        run = run_recipe(
            workspace,
            recipe.id,
            pinned,
            old.recipe_params,
            data,
            Path(tmp),
            runner=runner,
            show_progress=show_progress,
        )
        if old.data_fingerprint and run.data_fingerprint != old.data_fingerprint:
            log.warning(
                "%s: data set %s changed since %s (fingerprint %s -> %s)",
                old.model,
                data,
                old.ref,
                old.data_fingerprint[:12],
                (run.data_fingerprint or "")[:12],
            )
        return workspace.commit(
            old.model,
            source=run.model_dir,
            parents=pinned,
            kind=old.kind or run.kind,
            message=message or f"re-derived {old.ref} with {recipe.id} on {', '.join(pinned)}",
            provenance=provenance_of(run, data, recipe.version),
            **derivable_kwargs(workspace, recipe, run, pinned, data),
        )
