"""What a version records about how it was made: who, with which code and libraries.

One place for each provenance rule, shared by `add`, recipes, steps in containers and
the MLflow mirror.

>>> code_version("finetune", "2").split(" ")[1]
'recipe=finetune@2'
>>> thin_curve([(step, 1.0 / (step + 1)) for step in range(1000)], limit=10)[-1]
(999, 0.001)
"""

from __future__ import annotations

import getpass
import os
from collections.abc import Sequence
from typing import Any

from lineage.records import Provenance

#: The name lineage is published under on PyPI (`lineage` itself is another project).
DISTRIBUTION = "lineage-modelops"

#: Libraries whose versions shape weights; recorded on every version.
WEIGHT_LIBRARIES = ("torch", "transformers", "peft", "safetensors", "numpy")

#: Loss-curve points kept in a version's provenance; the full curve is in MLflow.
MAX_CURVE_POINTS = 200


def package_version() -> str:
    """The installed version of lineage itself ("unknown" when run from a bare tree)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(DISTRIBUTION)
    except PackageNotFoundError:
        return "unknown"


def library_versions() -> dict[str, str]:
    """Versions of lineage and of the libraries that shape weights, where installed."""
    from importlib.metadata import PackageNotFoundError, version

    found = {"lineage": package_version()}
    for package in WEIGHT_LIBRARIES:
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            continue
    return found


def default_author() -> str:
    """`$LINEAGE_AUTHOR`, else the login name (containers may have no passwd entry)."""
    if os.environ.get("LINEAGE_AUTHOR"):
        return os.environ["LINEAGE_AUTHOR"]
    try:
        return getpass.getuser()
    except Exception:
        return "unknown"


def code_version(recipe_id: str, recipe_version: str = "1") -> str:
    """`lineage==X.Y.Z recipe=ID@V`: what code made a version."""
    return f"lineage=={package_version()} recipe={recipe_id}@{recipe_version}"


def thin_curve(curve: Sequence[tuple[int, float]], limit: int = MAX_CURVE_POINTS) -> list[Any]:
    """At most about `limit` points of a loss curve, evenly spread, the last one kept:
    the shape survives, the density goes to MLflow."""
    points = list(curve)
    if len(points) <= limit:
        return points
    stride = -(-len(points) // limit)
    kept = points[::stride]
    return kept if kept[-1] == points[-1] else [*kept, points[-1]]


def recipe_provenance(
    *,
    recipe_id: str,
    recipe_version: str,
    params: dict[str, Any],
    data: str | None,
    data_fingerprint: str | None,
    image_digest: str | None,
    metrics: dict[str, float],
    loss_curve: Sequence[tuple[int, float]],
    layout: str,
    seconds: float,
    threads: int | None = None,
) -> Provenance:
    """The provenance of a recipe-made version (the one builder for it)."""
    extra: dict[str, Any] = {
        "data": data,
        "metrics": dict(metrics),
        "loss_curve": [[step, value] for step, value in thin_curve(loss_curve)],
        "layout": layout,
        "derive_seconds": round(seconds, 3),
    }
    if threads is not None:
        extra["threads"] = threads
    return Provenance(
        recipe_id=recipe_id,
        recipe_params=params,
        data_fingerprint=data_fingerprint,
        code_version=code_version(recipe_id, recipe_version),
        image_digest=image_digest,
        extra=extra,
    )
