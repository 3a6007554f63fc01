"""Making versions with recipes: `add_from_recipe` (a new model) and `rederive` (the
next version of a recipe-made model, on new parents — what the cascade runs).

Parents are checked out of the store into a temporary folder, the recipe runs on them
as a step (in this process by default, or through the process or docker runner), and
the output is committed with its provenance: recipe id and validated params, pinned
parent refs, the data set spec and fingerprint, the code version. Bad input (recipe,
params, data set) is refused before any checkout; if anything fails, nothing is stored.

>>> v = add_from_recipe(ws, "ft-q", recipe_id="quantize", parents=["ft@1"],
...                     params={"dtype": "float16"})
>>> v.ref, v.recipe_id, v.kind
('ft-q@1', 'quantize', 'quantize')
>>> rederive(ws, "ft-q@1", ["ft@1"]).ref
'ft-q@2'
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lineage.errors import RecipeError
from lineage.provenance import recipe_provenance
from lineage.records import Provenance, VersionInfo
from lineage.refs import validate_name

if TYPE_CHECKING:
    from lineage.ops.tests import ResolvedTest
    from lineage.recipes import Recipe, TrainingProgress
    from lineage.steps.runners import Runner
    from lineage.steps.spec import DeriveSpec
    from lineage.workspace import Workspace

log = logging.getLogger(__name__)


@dataclass
class RecipeRun:
    """What running a recipe produced, wherever it ran."""

    model_dir: Path
    recipe_id: str
    recipe_version: str
    kind: str
    params: dict[str, Any]
    parent_dirs: list[Path] = field(default_factory=list)
    metrics: dict[str, float] = field(default_factory=dict)
    loss_curve: list[tuple[int, float]] = field(default_factory=list)
    layout: str = "model"
    data_fingerprint: str | None = None
    image_digest: str | None = None
    seconds: float = 0.0
    threads: int | None = None  # the step's torch thread count (the bytes depend on it)
    # Outcomes (`TestOutcome.to_dict()`) of the tests the step ran on its output, in
    # the order asked; None when none were asked or they could not run there.
    test_outcomes: list[dict[str, Any]] | None = None

    def provenance(self, data: str | None) -> Provenance:
        """The provenance a version made by this run records (with the user code's
        module and source hash, for a `module:function` recipe)."""
        from lineage.ops.code import code_fingerprint

        provenance = recipe_provenance(
            recipe_id=self.recipe_id,
            recipe_version=self.recipe_version,
            params=self.params,
            data=data,
            data_fingerprint=self.data_fingerprint,
            image_digest=self.image_digest,
            metrics=self.metrics,
            loss_curve=self.loss_curve,
            layout=self.layout,
            seconds=self.seconds,
            threads=self.threads,
        )
        code = code_fingerprint(self.recipe_id)
        if code is not None:
            provenance.extra["code"] = code
        return provenance


def trusted_recipe(workspace: Workspace, recipe_id: str) -> Recipe:
    """The recipe `recipe_id`, once the workspace trusts its code (`lineage.ops.code`)."""
    from lineage.ops.code import check_trusted
    from lineage.recipes import get_recipe

    check_trusted(workspace, recipe_id, "recipe")
    return get_recipe(recipe_id)


def as_runner(runner: Runner | str | None, progress: TrainingProgress | None = None) -> Runner:
    """A runner from a runner, its name, or None (this process, with `progress`)."""
    from lineage.steps.runners import InlineRunner, Runner, get_runner

    if isinstance(runner, Runner):
        return runner
    if runner is None or runner == "inline":
        return InlineRunner(progress)
    return get_runner(runner)


def _checked_request(
    workspace: Workspace, recipe_id: str, params: dict[str, Any] | None, data: str | None
) -> tuple[Recipe, dict[str, Any]]:
    """The recipe and its validated params; the data set is checked too (before any
    checkout, so bad input costs nothing)."""
    from lineage.datasets import load_dataset

    recipe = trusted_recipe(workspace, recipe_id)
    typed = recipe.validate_params(params or {})
    if data is not None:
        load_dataset(data)  # DataError now, not after the checkout
    return recipe, typed.model_dump(mode="json")


def _parent_checkouts(
    workspace: Workspace, parent_refs: Sequence[str], work_dir: Path
) -> list[Path]:
    """The folders a step reads its parents from (`ops.parents.checkout_parent`)."""
    from lineage.ops.parents import checkout_parent

    return [
        checkout_parent(workspace, ref, work_dir / f"parent-{i}")
        for i, ref in enumerate(parent_refs)
    ]


def _step_spec(
    recipe: Recipe,
    params: dict[str, Any],
    parent_dirs: Sequence[Path],
    data: str | None,
    work_dir: Path,
    tests: Sequence[Mapping[str, Any]],
) -> DeriveSpec:
    from lineage.steps.spec import DeriveSpec

    return DeriveSpec(
        recipe=recipe.id,
        params=params,
        parents=tuple(str(p) for p in parent_dirs),
        data=data,
        out=str(work_dir / "step"),
        tests=tuple(tests),
    )


def run_recipe(
    workspace: Workspace,
    recipe_id: str,
    parent_refs: Sequence[str],
    params: dict[str, Any] | None,
    data: str | None,
    work_dir: Path,
    *,
    runner: Runner | str | None = None,
    progress: TrainingProgress | None = None,
    tests: Sequence[Mapping[str, Any]] = (),
) -> RecipeRun:
    """Check the parents out under `work_dir` and run the recipe on them as a step.

    Validation (recipe id, params, data set, runner) happens before any checkout, so
    bad input costs nothing. `tests` (`{"name", "kind", "params"}` each) run on the
    new model in the same step, against the first parent.
    """
    recipe, typed = _checked_request(workspace, recipe_id, params, data)
    step_runner = as_runner(runner, progress)
    parent_dirs = _parent_checkouts(workspace, parent_refs, work_dir)
    spec = _step_spec(recipe, typed, parent_dirs, data, work_dir, tests)
    step = step_runner.run_step(spec)
    if step.model_dir is None:
        raise RecipeError(f"recipe {recipe.id!r}: the {step.runner} step wrote no model")
    return RecipeRun(
        model_dir=step.model_dir,
        parent_dirs=parent_dirs,
        recipe_id=recipe.id,
        recipe_version=str(step.result.get("recipe_version", recipe.version)),
        kind=str(step.result.get("kind", recipe.kind)),
        params=dict(step.result.get("params") or spec.params),
        metrics=step.metrics,
        loss_curve=step.loss_curve,
        layout=str(step.result.get("layout", "model")),
        data_fingerprint=step.result.get("data_fingerprint"),
        image_digest=step.image_digest,
        seconds=float(step.result.get("seconds") or step.seconds),
        threads=step.result.get("threads"),
        test_outcomes=step.result.get("tests") if tests else None,
    )


# Recipes whose output is a cheap, deterministic function of the parents' bytes. Their
# versions are stored as "recipe + content hashes" and re-made on checkout; the store
# verifies the re-made files against the hashes and keeps the bytes when they differ.
DERIVABLE_KINDS = frozenset({"quantize", "merge"})


def derivable_kwargs(
    workspace: Workspace, recipe: Any, run: RecipeRun, pinned: Sequence[str], data: str | None
) -> dict[str, Any]:
    """`rematerialize`/`derivation_spec` for `ops.add.add/commit` when `run` can be
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
    from lineage.ops.checkout import write_manifest
    from lineage.ops.code import check_trusted

    # The spec comes from a manifest in the store, which others may write.
    check_trusted(workspace, str(spec.get("recipe", "")), "recipe")
    with tempfile.TemporaryDirectory(prefix="lineage-materialize-") as tmp:
        parent_dirs = []
        for index, manifest_id in enumerate(spec.get("parents", [])):
            parent_dir = Path(tmp) / f"parent-{index}"
            write_manifest(workspace, workspace.store.get_manifest(manifest_id), parent_dir)
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
    runner: Runner | str | None = None,
    progress: TrainingProgress | None = None,
    tags: Sequence[str] = (),
) -> VersionInfo:
    """Make a new model `name@1` by running a recipe on `parents`."""
    from lineage.ops.add import add

    validate_name(name)
    if workspace.graph.model_exists(name):
        from lineage.errors import ModelExistsError

        raise ModelExistsError(f"model {name!r} already exists (use `lineage derive`)")
    if not parents:
        raise RecipeError(f"recipe {recipe_id!r} needs at least one --parent")
    recipe = trusted_recipe(workspace, recipe_id)
    pinned = _pinned(workspace, parents)
    with tempfile.TemporaryDirectory(prefix="lineage-derive-") as tmp:
        run = run_recipe(
            workspace, recipe_id, pinned, params, data, Path(tmp), runner=runner, progress=progress
        )
        return add(
            workspace,
            name,
            source=run.model_dir,
            parents=pinned,
            kind=run.kind,
            message=message or f"{recipe.id} on {', '.join(pinned)}",
            provenance=run.provenance(data),
            tags=tags,
            **derivable_kwargs(workspace, recipe, run, pinned, data),
        )


def _rederivation(
    workspace: Workspace, ref: str, parents: Sequence[str]
) -> tuple[VersionInfo, Recipe, list[str], str | None]:
    """What re-deriving `ref` on `parents` runs: the old version, its recipe, the
    pinned parents (its own when none are given) and its data set spec."""
    old, recipe = _old_recipe(workspace, ref)
    if not parents:
        parents = [link.ref for link in old.derivation_parents]
    return old, recipe, _pinned(workspace, parents), (old.extra or {}).get("data")


def _old_recipe(workspace: Workspace, ref: str) -> tuple[VersionInfo, Recipe]:
    old = workspace.resolve(ref)
    if not old.recipe_id:
        raise RecipeError(
            f"{old.ref} was not made by a recipe (added from files), so it cannot be re-derived"
        )
    return old, trusted_recipe(workspace, old.recipe_id)


def rederive_step(
    workspace: Workspace,
    ref: str,
    parents: Sequence[str],
    work_dir: Path,
    *,
    tests: Sequence[ResolvedTest] = (),
) -> DeriveSpec:
    """The step `rederive` with these arguments runs, its parents checked out under
    `work_dir`: for a caller that starts it early (a cascade's head start), so that
    the runner can hand its result to `rederive` (`WorkerPool.run_early`)."""
    old, recipe, pinned, data = _rederivation(workspace, ref, parents)
    _, params = _checked_request(workspace, recipe.id, old.recipe_params, data)
    asked = [t.declaration.to_dict() for t in tests]
    parent_dirs = _parent_checkouts(workspace, pinned, work_dir)
    return _step_spec(recipe, params, parent_dirs, data, work_dir, asked)


def rederive_step_on(
    workspace: Workspace,
    ref: str,
    parent_dirs: Sequence[Path],
    work_dir: Path,
    *,
    tests: Sequence[ResolvedTest] = (),
) -> DeriveSpec:
    """`rederive_step` on parent folders instead of versions: the step `rederive` runs
    once the versions those folders hold are committed (a cascade starts a child's
    step while its parent's commit runs; the folders come from `on_step_done`)."""
    old, recipe = _old_recipe(workspace, ref)
    data = (old.extra or {}).get("data")
    _, params = _checked_request(workspace, recipe.id, old.recipe_params, data)
    asked = [t.declaration.to_dict() for t in tests]
    return _step_spec(recipe, params, parent_dirs, data, work_dir, asked)


def rederive(
    workspace: Workspace,
    ref: str,
    parents: Sequence[str],
    *,
    runner: Runner | str | None = None,
    message: str = "",
    progress: TrainingProgress | None = None,
    tests: Sequence[ResolvedTest] = (),
    on_step_done: Callable[[Path], None] | None = None,
) -> VersionInfo:
    """Re-run `ref`'s recipe (same params and data spec) on `parents`; commit the
    result as the next version of `ref`'s model.

    `tests` (those that apply to the new version: `ops.tests.resolve_tests_along`) run
    in the same step, on the model it just made; their results are stored on the new
    version as `lineage test` stores them. If they could not run there, nothing is
    stored and the caller runs them the usual way (`ops.tests.run_tests`).

    `on_step_done` is called with the folder the new version's files are in when the
    step has made them and its tests (if any) passed, before the commit: the folder
    the new version's children will read (`ops.parents.settle_output`).
    """
    from lineage.ops.add import commit
    from lineage.ops.parents import offer_checkout, settle_output
    from lineage.ops.tests import record_outcome

    old, recipe, pinned, data = _rederivation(workspace, ref, parents)
    with tempfile.TemporaryDirectory(prefix="lineage-derive-") as tmp:
        run = run_recipe(
            workspace,
            recipe.id,
            pinned,
            old.recipe_params,
            data,
            Path(tmp),
            runner=runner,
            progress=progress,
            tests=[t.declaration.to_dict() for t in tests],
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
        run.model_dir = settle_output(run.model_dir)
        if on_step_done is not None and all(
            outcome.get("passed") for outcome in run.test_outcomes or []
        ):
            on_step_done(run.model_dir)
        version = commit(
            workspace,
            old.model,
            source=run.model_dir,
            parents=pinned,
            kind=old.kind or run.kind,
            message=message or f"re-derived {old.ref} with {recipe.id} on {', '.join(pinned)}",
            provenance=run.provenance(data),
            **derivable_kwargs(workspace, recipe, run, pinned, data),
        )
        offer_checkout(version.manifest_id, run.model_dir)  # the children's parent folder
    if run.test_outcomes is not None and len(run.test_outcomes) == len(tests):
        from lineage.modeltests import TestOutcome

        for test, outcome in zip(tests, run.test_outcomes, strict=True):
            record_outcome(workspace, version.id, TestOutcome(**outcome), test.declared_on)
    return version
