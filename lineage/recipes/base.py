"""What a recipe is: an id, a derivation kind, typed params and a `derive` function.

`Recipe.derive` wraps the recipe's own function with what every recipe needs:
params validation, parent checks, data resolution, a fresh output directory that
is removed again if the recipe fails, and the determinism context.

>>> from lineage.recipes import get_recipe
>>> r = get_recipe("finetune")
>>> r.kind, r.validate_params({"steps": 3}).steps
('finetune', 3)
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, ValidationError

from lineage.datasets import DataSpec, TextDataset, load_dataset
from lineage.errors import LineageError, RecipeError
from lineage.recipes.training import TrainingProgress
from lineage.records import DERIVATION_KINDS, Kind

log = logging.getLogger(__name__)

#: The derivation kinds a recipe may declare (`lineage.records.Kind`).
KINDS = DERIVATION_KINDS


class RecipeParams(BaseModel):
    """Base of every recipe's `Params`: unknown fields are errors (typos must not pass)."""

    model_config = ConfigDict(extra="forbid", frozen=True)


@dataclass
class DeriveResult:
    """What `derive` returns besides the files it wrote in `out_dir`.

    `files` are the relative paths written (sorted); `layout` says whether `out_dir`
    is a full model or a PEFT adapter (which needs its first parent as base).
    """

    metrics: dict[str, float] = field(default_factory=dict)
    loss_curve: list[tuple[int, float]] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    layout: Literal["model", "adapter"] = "model"
    data_fingerprint: str | None = None
    duration_s: float = 0.0
    notes: dict[str, Any] = field(default_factory=dict)


class DeriveFunction(Protocol):
    def __call__(
        self,
        parents: list[Path],
        params: Any,
        data: TextDataset | None,
        out_dir: Path,
        progress: TrainingProgress | None = None,
    ) -> DeriveResult | Mapping[str, float] | None: ...


def describe_validation_error(exc: ValidationError) -> str:
    """One line naming each failing field and why, e.g. `steps: must be > 0`."""
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err.get("loc", ())) or "params"
        msg = err.get("msg", "invalid")
        if err.get("type") == "extra_forbidden":
            msg = "unknown parameter"
        parts.append(f"{where}: {msg}")
    return "; ".join(parts)


@dataclass(frozen=True)
class Recipe:
    """A registered creation function.

    `min_parents`/`max_parents` bound the parent count (`None`: unbounded);
    `needs_data` makes a missing data set a `RecipeError` before anything runs.
    """

    id: str
    kind: Kind
    Params: type[BaseModel]
    run: DeriveFunction
    description: str = ""
    deterministic: bool = True
    needs_data: bool = False
    min_parents: int = 1
    max_parents: int | None = 1
    version: str = "1"

    def validate_params(self, raw: Mapping[str, Any] | BaseModel | None) -> BaseModel:
        """Validate `raw` into `Params`; `RecipeError` naming the field and why.

        >>> from lineage.recipes import get_recipe
        >>> get_recipe("finetune").validate_params({"steps": -1})  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        lineage.errors.RecipeError: recipe 'finetune': invalid params: steps: Input should be ...
        """
        if isinstance(raw, self.Params):
            return raw
        if isinstance(raw, BaseModel):
            raw = raw.model_dump()
        if raw is not None and not isinstance(raw, Mapping):
            raise RecipeError(
                f"recipe {self.id!r}: params must be a mapping, not {type(raw).__name__}"
            )
        try:
            return self.Params.model_validate(dict(raw or {}))
        except ValidationError as exc:
            raise RecipeError(
                f"recipe {self.id!r}: invalid params: {describe_validation_error(exc)}"
            ) from None

    def params_schema(self) -> dict[str, Any]:
        """JSON schema of `Params` (for `lineage recipes show`)."""
        return self.Params.model_json_schema()

    def derive(
        self,
        parents: list[Path] | list[str],
        params: Mapping[str, Any] | BaseModel | None,
        data: DataSpec | None,
        out_dir: Path | str,
        progress: TrainingProgress | None = None,
        threads: int | None = None,
    ) -> DeriveResult:
        """Run the recipe on `parents` (HF directories) and write the child to `out_dir`.

        `out_dir` must be missing or empty; on failure it is left as it was found.
        `threads` is the torch thread count (default: `threads.DERIVE_THREADS`);
        the bytes are the same for the same count.
        """
        p = self.validate_params(params)
        parent_paths = [Path(x) for x in parents]
        n = len(parent_paths)
        if n < self.min_parents or (self.max_parents is not None and n > self.max_parents):
            want = (
                f"exactly {self.min_parents}"
                if self.min_parents == self.max_parents
                else f"at least {self.min_parents}"
                if self.max_parents is None
                else f"{self.min_parents} to {self.max_parents}"
            )
            raise RecipeError(f"recipe {self.id!r} takes {want} parent(s), got {n}")
        for parent in parent_paths:
            if not parent.is_dir():
                raise RecipeError(
                    f"recipe {self.id!r}: parent directory {str(parent)!r} does not exist"
                )
        dataset = load_dataset(data) if data is not None else None
        if self.needs_data and dataset is None:
            raise RecipeError(
                f"recipe {self.id!r} needs a data set (shipped name or CSV/JSONL path)"
            )
        out = Path(out_dir)
        created = not out.exists()
        if not created and (not out.is_dir() or any(out.iterdir())):
            raise RecipeError(f"output directory {str(out)!r} exists and is not empty")
        out.mkdir(parents=True, exist_ok=True)
        # torch loads here, not with the registry; before the clock starts, so the
        # recorded duration is the recipe's work.
        from lineage.recipes.determinism import deterministic

        start = time.perf_counter()
        try:
            with deterministic(int(getattr(p, "seed", 0)), threads):
                raw = self.run(parent_paths, p, dataset, out, progress)
        except LineageError:
            _clear(out, created)
            raise
        except Exception as exc:
            _clear(out, created)
            raise RecipeError(f"recipe {self.id!r} failed: {type(exc).__name__}: {exc}") from exc
        result = raw if isinstance(raw, DeriveResult) else DeriveResult(metrics=dict(raw or {}))
        result.files = sorted(str(f.relative_to(out)) for f in out.rglob("*") if f.is_file())
        result.data_fingerprint = dataset.fingerprint if dataset is not None else None
        result.duration_s = time.perf_counter() - start
        log.info(
            "recipe %s wrote %d files to %s in %.1fs",
            self.id,
            len(result.files),
            out,
            result.duration_s,
        )
        return result


def _clear(out: Path, created: bool) -> None:
    # Leave the directory as found: remove it if we made it, else empty it.
    if created:
        shutil.rmtree(out, ignore_errors=True)
    else:
        for child in out.iterdir():
            if child.is_dir():
                shutil.rmtree(child, ignore_errors=True)
            else:
                child.unlink(missing_ok=True)


def recipe(
    id: str,
    kind: Kind,
    Params: type[BaseModel],
    **options: Any,
) -> Callable[[DeriveFunction], Recipe]:
    """Decorator turning a derive function into a `Recipe` (what user modules can use).

    >>> from pydantic import BaseModel
    >>> class P(BaseModel):
    ...     scale: float = 1.0
    >>> @recipe("mine", "other", P)
    ... def mine(parents, params, data, out_dir, progress=None):
    ...     return {"scale": params.scale}
    >>> mine.id, mine.kind
    ('mine', 'other')
    """

    def wrap(fn: DeriveFunction) -> Recipe:
        return Recipe(
            id=id,
            kind=kind,
            Params=Params,
            run=fn,
            description=options.pop("description", (fn.__doc__ or "").strip().split("\n")[0]),
            **options,
        )

    return wrap
