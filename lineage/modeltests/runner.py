"""`run_model_test`: run one declared test on a model directory."""

from __future__ import annotations

import logging
import time
from pathlib import Path

from lineage.datasets import DataSpec, TextDataset, load_dataset
from lineage.errors import LineageError, ModelTestError
from lineage.modeltests import kinds
from lineage.modeltests.declarations import DataParams, TestDeclaration
from lineage.modeltests.outcome import TestOutcome

log = logging.getLogger(__name__)

_NEEDS_DATA = ("accuracy", "f1", "no_regression", "invariance")


def _resolve_data(decl: TestDeclaration, data: DataSpec | None) -> TextDataset | None:
    # The declaration's own data set wins: a test declared as "accuracy on the
    # sentiment test split" must mean the same thing on every descendant.
    p = decl.typed_params
    spec = p.dataset if isinstance(p, DataParams) and p.dataset else data
    if spec is None:
        if decl.kind in _NEEDS_DATA:
            raise ModelTestError(
                f"test {decl.name!r} ({decl.kind}) needs a data set: set params.dataset "
                "or pass data"
            )
        return None
    return load_dataset(spec)


def run_model_test(
    decl: TestDeclaration,
    model_dir: Path | str,
    parent_dir: Path | str | None = None,
    data: DataSpec | None = None,
) -> TestOutcome:
    """Run `decl` on `model_dir` (and `parent_dir`: the base of an adapter, the
    reference for `no_regression`). Raises only for bad input; a failing model is
    an outcome with `passed=False`.

    >>> from lineage.bundled import minilm_path
    >>> from lineage.modeltests import declare_test
    >>> out = run_model_test(declare_test("acc", "accuracy", {"threshold": 0.6}),
    ...                      minilm_path(), data="topic")
    >>> out.passed, out.details["predictor"]
    (True, 'centroid')
    """
    model_dir = Path(model_dir)
    parent = Path(parent_dir) if parent_dir is not None else None
    dataset = _resolve_data(decl, data)
    p = decl.typed_params
    start = time.perf_counter()
    try:
        if decl.kind in _NEEDS_DATA:
            assert dataset is not None  # _resolve_data raised for a data kind without data
            if decl.kind in ("accuracy", "f1"):
                measured = kinds.run_accuracy(model_dir, parent, dataset, p, decl.kind)
            elif decl.kind == "no_regression":
                measured = kinds.run_no_regression(model_dir, parent, dataset, p)
            else:
                measured = kinds.run_invariance(model_dir, parent, dataset, p)
        elif decl.kind == "size":
            measured = kinds.run_size(model_dir, parent, dataset, p)
        elif decl.kind == "latency":
            measured = kinds.run_latency(model_dir, parent, dataset, p)
        else:
            measured = kinds.run_user(model_dir, parent, dataset, p, decl.name)
    except LineageError:
        raise
    except Exception as exc:
        raise ModelTestError(
            f"test {decl.name!r} ({decl.kind}) could not run on {model_dir}: "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    metric, value, threshold, passed, details = measured
    outcome = TestOutcome(
        name=decl.name,
        kind=decl.kind,
        metric=metric,
        value=float(value) if value is not None else None,
        threshold=float(threshold) if threshold is not None else None,
        passed=bool(passed),
        details=details,
        duration_s=time.perf_counter() - start,
        skipped="skipped" in details,
    )
    log.info(
        "test %s (%s) on %s: %s %s (threshold %s) %s",
        decl.name,
        decl.kind,
        model_dir,
        metric,
        value,
        threshold,
        "pass" if passed else "FAIL",
    )
    return outcome
