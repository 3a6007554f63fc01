"""Declarations are validated when declared, with one clear line."""

from __future__ import annotations

import pytest

from lineage.errors import ModelTestError
from lineage.modeltests import TEST_KINDS, declare_test


@pytest.mark.parametrize("threshold", ["high", True, None, float("nan"), [0.5], "inf"])
def test_non_numeric_threshold(threshold):
    with pytest.raises(
        ModelTestError, match="test 'acc' \\(accuracy\\): invalid params: threshold"
    ):
        declare_test("acc", "accuracy", {"threshold": threshold})


def test_numeric_strings_are_accepted():
    # The CLI passes --param threshold=0.9 as text.
    assert declare_test("acc", "accuracy", {"threshold": "0.9"}).typed_params.threshold == 0.9


@pytest.mark.parametrize(
    ("name", "kind", "params", "message"),
    [
        ("acc", "precision", {}, "unknown kind 'precision'"),
        ("a b", "accuracy", {"threshold": 0.5}, "invalid test name"),
        ("acc", "accuracy", {}, "threshold: Field required"),
        ("acc", "accuracy", {"threshold": 1.5}, "threshold: Input should be less than or equal"),
        ("acc", "accuracy", {"threshold": 0.5, "treshold": 1}, "treshold: unknown parameter"),
        ("small", "size", {}, "give max_bytes or max_params"),
        ("fast", "latency", {"max_ms": "soon"}, "max_ms: not a number"),
        ("mine", "user", {"ref": "no_such_mod_xyz:check"}, "cannot import"),
        ("mine", "user", {"ref": "os.path:basename"}, "must accept"),
        ("mine", "user", {"ref": "nonsense"}, "invalid reference"),
    ],
)
def test_bad_declarations(name, kind, params, message):
    with pytest.raises(ModelTestError, match=message):
        declare_test(name, kind, params)


def test_every_kind_has_a_valid_declaration():
    examples = {
        "accuracy": {"threshold": 0.8},
        "f1": {"threshold": 0.8},
        "no_regression": {},
        "invariance": {},
        "size": {"max_params": 10},
        "latency": {"max_ms": 5},
        "user": {"ref": "lineage.modeltests.kinds:run_size"},
    }
    assert set(examples) == set(TEST_KINDS)
    for kind, params in examples.items():
        d = declare_test(f"t-{kind}", kind, params)
        assert d.to_dict() == {"name": f"t-{kind}", "kind": kind, "params": params}
