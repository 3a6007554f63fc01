"""Typed step specs: what one derive, test or probe step is asked to do.

A spec crosses a process or container boundary as JSON (`to_json` / `parse_spec`);
everywhere else it is one of the frozen dataclasses below. Paths are the host's until
a runner maps them into a container (`dataclasses.replace` with container paths).

>>> spec = DeriveSpec(recipe="finetune", params={"steps": 5}, parents=("/in/p0",),
...                   data="sentiment", out="/out")
>>> parse_spec(spec.to_json()) == spec
True
>>> parse_spec({"action": "derive", "out": "/out"})
Traceback (most recent call last):
lineage.steps.spec.SpecError: derive spec needs 'recipe' (a string)
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field
from enum import IntEnum
from typing import Any, ClassVar, Literal

#: What a step writes into its output folder.
RESULT_FILE = "result.json"  # on success
ERROR_FILE = "error.json"  # on failure: {"type", "message", "exit_code"}
MODEL_DIR = "model"  # derive: the new model as a Hugging Face directory

Action = Literal["derive", "test", "probe"]
ACTIONS: tuple[Action, ...] = ("derive", "test", "probe")


class StepExit(IntEnum):
    """Exit codes of the step entry point, beyond the `lineage.errors` classes' own
    (1-19: the `exit_code` of the `LineageError` the step raised)."""

    OK = 0
    BAD_SPEC = 64
    NETWORK = 65
    CRASH = 70


class SpecError(Exception):
    """The spec is missing, not JSON, or lacks a required field."""


@dataclass(frozen=True)
class DeriveSpec:
    """Run a recipe on parent model folders; the new model goes to `out/model/`."""

    action: ClassVar[Action] = "derive"
    recipe: str
    params: Mapping[str, Any]
    parents: tuple[str, ...]
    out: str
    data: str | None = None  # a shipped data set name or a CSV/JSONL path
    code: tuple[str, ...] = ()  # folders put first on sys.path (user recipes)
    threads: int | None = None  # torch threads (None: the determinism default)
    # Tests to run on the new model right after deriving it, in the same step (the
    # first parent is their reference model, `data` their default data set).
    tests: tuple[Mapping[str, Any], ...] = ()

    def inputs(self) -> Iterator[str]:
        yield from self.parents
        yield from self.code

    def to_json(self) -> dict[str, Any]:
        return {"action": self.action, **_plain(self)}


@dataclass(frozen=True)
class TestSpec:
    """Run declared model tests on one model folder; the first parent is the tests'
    reference model (an adapter's base, `no_regression`'s baseline)."""

    __test__ = False  # not a pytest class
    action: ClassVar[Action] = "test"
    model: str
    tests: tuple[Mapping[str, Any], ...]  # {"name", "kind", "params"}
    out: str
    parents: tuple[str, ...] = ()
    data: str | None = None
    code: tuple[str, ...] = ()
    seed: int = 0
    threads: int | None = None

    def inputs(self) -> Iterator[str]:
        yield from self.parents
        yield self.model
        yield from self.code

    def to_json(self) -> dict[str, Any]:
        return {"action": self.action, **_plain(self)}


@dataclass(frozen=True)
class ProbeSpec:
    """Report the step's isolation from inside, and misbehave on request (tests of the
    runners: allocate memory, sleep, connect out)."""

    action: ClassVar[Action] = "probe"
    out: str
    connect: str | None = None  # host:port to try
    guard: bool = False  # run under the network guard like other steps
    allocate_mb: int = 0
    sleep_s: float = 0.0
    imports: tuple[str, ...] = ()
    code: tuple[str, ...] = field(default=())
    litter: bool = False  # leave a file in the temp folder (a later step must not see it)

    def inputs(self) -> Iterator[str]:
        yield from self.code

    def to_json(self) -> dict[str, Any]:
        return {"action": self.action, **_plain(self)}


StepSpec = DeriveSpec | TestSpec | ProbeSpec


def _plain(spec: StepSpec) -> dict[str, Any]:
    data = asdict(spec)
    return {key: list(v) if isinstance(v, tuple) else v for key, v in data.items()}


def _need(raw: Mapping[str, Any], key: str, kind: type, what: str) -> Any:
    value = raw.get(key)
    if not isinstance(value, kind):
        raise SpecError(f"{raw.get('action')} spec needs {key!r} ({what})")
    return value


def _strings(raw: Mapping[str, Any], key: str) -> tuple[str, ...]:
    value = raw.get(key) or []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise SpecError(f"{raw.get('action')} spec {key!r} must be a list of paths")
    return tuple(value)


def _data(raw: Mapping[str, Any]) -> str | None:
    data = raw.get("data")
    if data is not None and not isinstance(data, str):
        raise SpecError(
            f"{raw.get('action')} spec 'data' must be a shipped data set name, a path or null"
        )
    return data


def _threads(raw: Mapping[str, Any]) -> int | None:
    threads = raw.get("threads")
    if threads is not None and (
        not isinstance(threads, int) or isinstance(threads, bool) or threads < 1
    ):
        raise SpecError(f"{raw.get('action')} spec 'threads' must be a positive integer or null")
    return threads


def _tests(raw: Mapping[str, Any]) -> tuple[Mapping[str, Any], ...]:
    tests = raw.get("tests") or []
    if not isinstance(tests, list):
        raise SpecError(f"{raw.get('action')} spec 'tests' must be a list of tests")
    for test in tests:
        if not isinstance(test, Mapping) or not isinstance(test.get("kind"), str):
            raise SpecError("each test needs a 'kind' (and a 'name', 'params')")
    return tuple(dict(test) for test in tests)


def parse_spec(raw: Any) -> StepSpec:
    """A typed spec from its JSON form; `SpecError` with one line if malformed."""
    if not isinstance(raw, Mapping):
        raise SpecError("spec must be a JSON object")
    action = raw.get("action")
    if action not in ACTIONS:
        raise SpecError(f"spec action must be one of {', '.join(ACTIONS)}, got {action!r}")
    out = raw.get("out")
    if not isinstance(out, str):
        raise SpecError('spec needs an output folder: "out": PATH')
    if action == "derive":
        params = raw.get("params") or {}
        if not isinstance(params, Mapping):
            raise SpecError("derive spec 'params' must be an object")
        return DeriveSpec(
            recipe=_need(raw, "recipe", str, "a string"),
            params=dict(params),
            parents=_strings(raw, "parents"),
            out=out,
            data=_data(raw),
            code=_strings(raw, "code"),
            threads=_threads(raw),
            tests=_tests(raw),
        )
    if action == "test":
        _need(raw, "tests", list, "a list of tests")
        seed = raw.get("seed", 0)
        if not isinstance(seed, int):
            raise SpecError("test spec 'seed' must be an integer")
        return TestSpec(
            model=_need(raw, "model", str, "a path"),
            tests=_tests(raw),
            out=out,
            parents=_strings(raw, "parents"),
            data=_data(raw),
            code=_strings(raw, "code"),
            seed=seed,
            threads=_threads(raw),
        )
    return ProbeSpec(
        out=out,
        connect=raw.get("connect"),
        guard=bool(raw.get("guard", False)),
        allocate_mb=int(raw.get("allocate_mb") or 0),
        sleep_s=float(raw.get("sleep_s") or 0.0),
        imports=_strings(raw, "imports"),
        code=_strings(raw, "code"),
        litter=bool(raw.get("litter", False)),
    )
