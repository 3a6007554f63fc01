import pytest

from lineage.errors import InvalidNameError, InvalidReferenceError
from lineage.refs import Ref, parse_ref, validate_alias, validate_name


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("bert", Ref("bert", alias="latest")),
        ("bert@3", Ref("bert", version=3)),
        ("bert@latest", Ref("bert", alias="latest")),
        ("bert@champion", Ref("bert", alias="champion")),
        ("my-model.v2_x@10", Ref("my-model.v2_x", version=10)),
    ],
)
def test_parse_valid_references(text: str, expected: Ref) -> None:
    assert parse_ref(text) == expected


@pytest.mark.parametrize(
    "text", ["a@@1", "@", "@1", "a@-1", "a@0", "a@", "", "a/b@1", "a@1.5", "a@+2", "../x"]
)
def test_parse_rejects_malformed_references(text: str) -> None:
    with pytest.raises(InvalidReferenceError):
        parse_ref(text)


@pytest.mark.parametrize("name", ["a/b", "..", "a..b", "a\x00b", "x" * 201, "", "-lead", "sp ace"])
def test_invalid_names(name: str) -> None:
    with pytest.raises(InvalidNameError):
        validate_name(name)


def test_name_length_limit_is_inclusive() -> None:
    assert validate_name("x" * 200) == "x" * 200


def test_alias_validation() -> None:
    assert validate_alias("champion") == "champion"
    for bad in ("latest", "1abc", "a b", ""):
        with pytest.raises(InvalidNameError):
            validate_alias(bad)
