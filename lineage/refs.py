"""Names and references: `name`, `name@3`, `name@latest`, `name@champion`.

Parsing is strict on purpose: a reference that scripts mistype (`a@@1`, `a@-1`)
must fail loudly rather than resolve to something else.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from lineage.errors import InvalidNameError, InvalidReferenceError

MAX_NAME_LENGTH = 200
# Names travel into paths, URLs, MLflow registry names and Prefect resource ids,
# so they are limited to characters that are safe in all of them.
# fullmatch, ASCII only: `$` would match before a trailing newline, and `\d` or
# `str.isdigit` would accept other scripts' digits (Arabic-Indic one, superscript two).
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*", re.ASCII)
_ALIAS_RE = re.compile(r"[A-Za-z][A-Za-z0-9_-]*", re.ASCII)
_NUMBER_RE = re.compile(r"[0-9]+", re.ASCII)
LATEST = "latest"
RESERVED_ALIASES = frozenset({LATEST})


def validate_name(name: str, what: str = "model name") -> str:
    """Return `name` if it is a valid model name, else raise `InvalidNameError`."""
    if not isinstance(name, str) or name == "":
        raise InvalidNameError(f"invalid {what}: it is empty")
    if "\x00" in name:
        raise InvalidNameError(f"invalid {what} {name!r}: it contains a NUL character")
    if len(name) > MAX_NAME_LENGTH:
        raise InvalidNameError(
            f"invalid {what}: {len(name)} characters, at most {MAX_NAME_LENGTH} are allowed"
        )
    if "/" in name or "\\" in name:
        raise InvalidNameError(f"invalid {what} {name!r}: it contains a path separator")
    if ".." in name:
        raise InvalidNameError(f"invalid {what} {name!r}: it contains '..'")
    if not _NAME_RE.fullmatch(name):
        raise InvalidNameError(
            f"invalid {what} {name!r}: use letters, digits, '.', '_' and '-', "
            "starting with a letter or digit"
        )
    return name


def validate_alias(alias: str) -> str:
    """Return `alias` if it is a valid alias name (and not a reserved word)."""
    if not isinstance(alias, str) or not _ALIAS_RE.fullmatch(alias) or len(alias) > 64:
        raise InvalidNameError(
            f"invalid alias {alias!r}: use letters, digits, '_' and '-', starting with a letter"
        )
    if alias in RESERVED_ALIASES:
        raise InvalidNameError(f"invalid alias {alias!r}: it is reserved")
    return alias


@dataclass(frozen=True)
class Ref:
    """A parsed reference. Exactly one of `version` and `alias` is set.

    `alias == "latest"` means the newest version.
    """

    name: str
    version: int | None = None
    alias: str | None = None

    @property
    def is_latest(self) -> bool:
        return self.alias == LATEST

    def __str__(self) -> str:
        return f"{self.name}@{self.version if self.version is not None else self.alias}"


def parse_ref(text: str) -> Ref:
    """Parse `name`, `name@N`, `name@latest` or `name@alias`.

    >>> parse_ref("bert@3")
    Ref(name='bert', version=3, alias=None)
    >>> parse_ref("bert").is_latest
    True
    """
    if not isinstance(text, str) or text.strip() == "":
        raise InvalidReferenceError("invalid reference: it is empty")
    if text.count("@") > 1:
        raise InvalidReferenceError(f"invalid reference {text!r}: more than one '@'")
    name, sep, selector = text.partition("@")
    if name == "":
        raise InvalidReferenceError(f"invalid reference {text!r}: no model name before '@'")
    try:
        validate_name(name)
    except InvalidNameError as exc:
        raise InvalidReferenceError(f"invalid reference {text!r}: {exc}") from None
    if not sep:
        return Ref(name=name, alias=LATEST)
    if selector == "":
        raise InvalidReferenceError(f"invalid reference {text!r}: nothing after '@'")
    if _NUMBER_RE.fullmatch(selector):
        number = int(selector)
        if number < 1:
            raise InvalidReferenceError(f"invalid reference {text!r}: versions start at 1")
        return Ref(name=name, version=number)
    if _NUMBER_RE.fullmatch(selector.lstrip("-+")) or selector.lstrip("-+").isdigit():
        raise InvalidReferenceError(
            f"invalid reference {text!r}: a version is a positive whole number"
        )
    if selector == LATEST:
        return Ref(name=name, alias=LATEST)
    if not _ALIAS_RE.fullmatch(selector):
        raise InvalidReferenceError(
            f"invalid reference {text!r}: {selector!r} is neither a version number nor an alias"
        )
    return Ref(name=name, alias=selector)
