"""Test declarations: a name, a kind and typed params, validated up front.

A declaration is what the graph stores (`model_tests` rows) and what a descendant
inherits; it is validated when declared, so a typo'd threshold fails at
`lineage test --declare` time, not in the middle of a cascade.

>>> params = {"threshold": 0.8, "dataset": "sentiment"}
>>> d = TestDeclaration(name="acc", kind="accuracy", params=params)
>>> d.typed_params.split
'test'
>>> TestDeclaration(name="acc", kind="accuracy", params={"threshold": "high"})  # doctest: +ELLIPSIS
Traceback (most recent call last):
lineage.errors.ModelTestError: test 'acc' (accuracy): invalid params: threshold: not a ...
"""

from __future__ import annotations

import inspect
import math
import re
from collections.abc import Callable
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    model_validator,
)

from lineage.errors import ModelTestError

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")
_REF_RE = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")


def _number(value: Any) -> Any:
    # pydantic's lax mode would take True as 1.0 and "nan" as NaN; a threshold
    # must be a real, finite number (numeric strings from the CLI are fine).
    if isinstance(value, bool):
        raise ValueError(f"not a number ({value!r})")
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise ValueError(f"not a number ({value!r})") from None
    if isinstance(value, int | float):
        if not math.isfinite(value):
            raise ValueError(f"not a finite number ({value!r})")
        return float(value)
    raise ValueError(f"not a number ({value!r})")


Number = Annotated[float, BeforeValidator(_number)]
Fraction = Annotated[Number, Field(ge=0, le=1)]


class _Params(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DataParams(_Params):
    """Where a data-driven test reads its examples."""

    dataset: str | None = Field(
        None, description="shipped name or CSV/JSONL path; default: the data given to the run"
    )
    split: str = Field("test", description="held-out split to evaluate on")
    max_examples: int | None = Field(500, gt=0, description="cap, for speed (first N examples)")
    max_length: int = Field(64, gt=1, le=512)


class AccuracyParams(DataParams):
    threshold: Fraction


class F1Params(DataParams):
    threshold: Fraction
    average: Literal["macro"] = "macro"


class NoRegressionParams(DataParams):
    metric: Literal["accuracy", "f1"] = "accuracy"
    max_drop: Annotated[Number, Field(ge=0, le=1)] = 0.02


class InvarianceParams(DataParams):
    threshold: Fraction = 0.9
    perturbations: tuple[Literal["typos", "casing", "word_swap"], ...] = Field(
        ("typos", "casing", "word_swap"), min_length=1
    )
    rate: Fraction = Field(0.1, description="typos: chance per word")
    seed: int = 0
    max_examples: int | None = Field(200, gt=0)


class SizeParams(_Params):
    max_bytes: int | None = Field(None, gt=0, description="weight file bytes")
    max_params: int | None = Field(None, gt=0, description="tensor elements")

    @model_validator(mode="after")
    def _one_budget(self) -> SizeParams:
        if self.max_bytes is None and self.max_params is None:
            raise ValueError("give max_bytes or max_params")
        return self


class LatencyParams(DataParams):
    max_ms: Annotated[Number, Field(gt=0)] = Field(description="budget, ms per example")
    max_examples: int | None = Field(32, gt=0)
    warmup: int = Field(3, ge=0)
    threads: int = Field(1, gt=0, description="torch threads while timing")


class UserParams(_Params):
    ref: str = Field(description="module:function of the test")
    threshold: Number | None = None
    higher_is_better: bool = True
    args: dict[str, Any] = Field(default_factory=dict, description="passed to the function")


PARAMS_BY_KIND: dict[str, type[_Params]] = {
    "accuracy": AccuracyParams,
    "f1": F1Params,
    "no_regression": NoRegressionParams,
    "invariance": InvarianceParams,
    "size": SizeParams,
    "latency": LatencyParams,
    "user": UserParams,
}
TEST_KINDS = tuple(PARAMS_BY_KIND)


def _explain(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err.get("loc", ())) or "params"
        msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
        if err.get("type") == "extra_forbidden":
            msg = "unknown parameter"
        parts.append(f"{where}: {msg}")
    return "; ".join(parts)


class TestDeclaration(BaseModel):
    """A declared model test. Construction raises `ModelTestError` on bad input."""

    __test__ = False  # not a pytest class
    model_config = ConfigDict(frozen=True)

    name: str
    kind: str
    params: dict[str, Any] = Field(default_factory=dict)
    _typed: _Params = PrivateAttr()

    @model_validator(mode="after")
    def _validate(self) -> TestDeclaration:
        # ModelTestError is not a ValueError, so pydantic lets it through unchanged.
        validate_test_name(self.name)
        if self.kind not in PARAMS_BY_KIND:
            raise ModelTestError(
                f"test {self.name!r}: unknown kind {self.kind!r} (known: {', '.join(TEST_KINDS)})"
            )
        try:
            typed = PARAMS_BY_KIND[self.kind].model_validate(self.params)
        except ValidationError as exc:
            raise ModelTestError(
                f"test {self.name!r} ({self.kind}): invalid params: {_explain(exc)}"
            ) from None
        if isinstance(typed, UserParams):
            resolve_user_test(typed.ref, self.name)
        self._typed = typed
        return self

    @property
    def typed_params(self) -> Any:
        """The params as the kind's pydantic model (defaults filled in)."""
        return self._typed

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form, as stored: name, kind and the params as given."""
        return {"name": self.name, "kind": self.kind, "params": dict(self.params)}


def validate_test_name(name: str) -> str:
    """`name` if it is a valid test name, else a one-line `ModelTestError`."""
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise ModelTestError(f"invalid test name {name!r}: use letters, digits, '.', '_' and '-'")
    return name


def declare_test(name: str, kind: str, params: dict[str, Any] | None = None) -> TestDeclaration:
    """Build and validate a declaration.

    >>> declare_test("small", "size", {"max_bytes": 100_000_000}).kind
    'size'
    """
    return TestDeclaration(name=name, kind=kind, params=dict(params or {}))


def resolve_user_test(ref: str, test_name: str = "?") -> Callable[..., Any]:
    """Import `module:function` and check it takes `(model_dir, parent_dir, data, params)`."""
    import importlib

    if not _REF_RE.match(ref):
        raise ModelTestError(f"test {test_name!r}: invalid reference {ref!r}: use module:function")
    module_name, attr = ref.split(":", 1)
    try:
        obj: object = importlib.import_module(module_name)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except ImportError as exc:
        raise ModelTestError(f"test {test_name!r}: cannot import {module_name!r}: {exc}") from None
    except AttributeError:
        raise ModelTestError(f"test {test_name!r}: {module_name!r} has no {attr!r}") from None
    if not callable(obj):
        raise ModelTestError(f"test {test_name!r}: {ref} is not callable")
    try:
        inspect.signature(obj).bind("model_dir", "parent_dir", "data", "params")
    except (TypeError, ValueError):
        raise ModelTestError(
            f"test {test_name!r}: {ref} must accept (model_dir, parent_dir, data, params)"
        ) from None
    return obj
