"""Model tests: declared checks run on a model directory, inherited down the lineage.

>>> from lineage.modeltests import declare_test, run_model_test
>>> decl = declare_test("small-enough", "size", {"max_bytes": 200_000_000})
>>> from lineage.bundled import minilm_path
>>> run_model_test(decl, minilm_path()).passed
True

Kinds: accuracy, f1 (score ≥ threshold on a held-out split), no_regression (score
≥ parent's score minus max_drop), invariance (fraction of predictions unchanged under typos,
casing and word swaps ≥ threshold), size (bytes/params ≤ budget), latency (median
ms per example ≤ budget), user (`module:function`). Embedding-only models are
scored with a nearest-centroid probe; see `lineage.modeltests.predictor`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lineage.modeltests.declarations import (
    PARAMS_BY_KIND,
    TEST_KINDS,
    TestDeclaration,
    declare_test,
    validate_test_name,
)
from lineage.modeltests.outcome import TestOutcome

if TYPE_CHECKING:
    from lineage.modeltests.runner import run_model_test


def __getattr__(name: str) -> object:
    # The runner imports torch: loaded on first use, so that resolving declarations
    # (`lineage show`, `tests list`) stays a light read.
    if name == "run_model_test":
        from lineage.modeltests.runner import run_model_test

        return run_model_test
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "PARAMS_BY_KIND",
    "TEST_KINDS",
    "TestDeclaration",
    "TestOutcome",
    "declare_test",
    "run_model_test",
    "validate_test_name",
]
