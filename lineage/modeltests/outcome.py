"""The result of running one model test."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class TestOutcome:
    """One test's result, as stored per version (`test_results`) and printed by the CLI.

    `value` is the measured metric and `threshold` the bound it was held to (for
    `no_regression`, the parent's value minus the allowed drop). `skipped` marks a
    test that could not apply (e.g. `no_regression` on a root model): it passes.
    """

    __test__ = False  # not a pytest class

    name: str
    kind: str
    metric: str
    value: float | None
    threshold: float | None
    passed: bool
    details: dict[str, Any] = field(default_factory=dict)
    duration_s: float = 0.0
    skipped: bool = False

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict of all fields."""
        return asdict(self)
