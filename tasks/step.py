"""Run one step from a JSON spec: `python -m tasks.step SPEC.json`.

The same entrypoint runs in a subprocess (process runner) and as the task image's
entrypoint (docker runner), so a step computes the same thing in both. A step reads its
inputs (parent weights, data) and writes only into its output folder; the host commits
that folder into the store, so a step never touches the graph DB or the object store.

Spec (JSON object), by action:

```
{"action": "derive", "recipe": "finetune", "params": {...}, "parents": ["/in/p0", ...],
 "data": "topic" | "/data/train.jsonl" | null, "out": "/out"}
{"action": "test", "model": "/in/model", "parents": ["/in/p0"], "data": ... | null,
 "tests": [{"name": "acc", "kind": "accuracy", "params": {...}}, ...], "out": "/out"}
{"action": "probe", "out": "/out", "connect": "host:port" | null, "guard": false,
 "allocate_mb": 0, "sleep_s": 0, "imports": []}
```

`data` is what `lineage.datasets.load_dataset` takes: a shipped data set name or a
CSV/JSONL path. For tests, the first parent is the reference model (adapter base,
`no_regression` baseline). Optional for every action: `"code": [DIR, ...]`, folders
put first on `sys.path` so custom `package.module:function` recipes and tests import;
`"seed"` for tests (recipes take theirs from their params). Seeds and the thread count
are fixed by `lineage.recipes.determinism`, which is what makes a step's bytes the same
in both runners.

Output folder: `result.json` (always, on success), `model/` (derive: the new model as a
Hugging Face directory), `error.json` (on failure: `{"type", "message", "exit_code"}`).

Exit codes (`StepExit`): 0 success; 1-19 the `exit_code` of the `lineage.errors` class
raised (e.g. 9 `RecipeError`, 10 `DataError`); 64 bad spec; 65 the step tried to open a
network connection; 70 an unexpected exception (a bug). Signals (timeouts, OOM kills)
are reported by the runner, which sees them from outside.

`probe` reports, from inside, what isolation the step has (uid, network reachability,
whether the root file system is writable), and can misbehave on purpose (allocate
memory, sleep, connect out) so tests can check that runners contain it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import socket
import sys
import time
import traceback
from collections.abc import Callable
from enum import IntEnum
from pathlib import Path
from typing import Any

RESULT_FILE = "result.json"
ERROR_FILE = "error.json"
MODEL_DIR = "model"
ACTIONS = ("derive", "test", "probe")


class StepExit(IntEnum):
    """Exit codes of the step entrypoint, beyond the `lineage.errors` classes' own."""

    OK = 0
    BAD_SPEC = 64
    NETWORK = 65
    CRASH = 70


class SpecError(Exception):
    """The spec file is missing, not JSON, or lacks a required field."""


class NetworkAttemptError(PermissionError):
    """Raised inside a step that tries to connect out: steps run offline."""


# ---------------------------------------------------------------- network guard

_network_attempts: list[str] = []
_LOCAL_HOSTS = {"localhost", "127.0.0.1", "::1", "0.0.0.0", "", None}


def _is_local(host: Any) -> bool:
    if host in _LOCAL_HOSTS:
        return True
    return isinstance(host, str) and (host.startswith("127.") or host == "::1")


def _network_guard(event: str, args: tuple[Any, ...]) -> None:
    """Audit hook: refuse, and remember, any connection to a non-loopback address.

    In the container the network namespace has no route anyway; the hook is what lets
    the step say *what* it tried, and gives the process runner the same policy.
    """
    if event in ("socket.connect", "socket.sendto", "socket.sendmsg"):
        sock, address = args[0], args[-1]
        if getattr(sock, "family", None) not in (socket.AF_INET, socket.AF_INET6):
            return
        host = address[0] if isinstance(address, tuple) and address else address
        if _is_local(host):
            return
        target = f"{host}:{address[1]}" if isinstance(address, tuple) else str(host)
    elif event == "socket.getaddrinfo":
        if _is_local(args[0]):
            return
        target = f"{args[0]}:{args[1]}"
    else:
        return
    _network_attempts.append(target)
    raise NetworkAttemptError(f"network access is disabled for steps (tried {target})")


def install_network_guard() -> None:
    """Turn on the offline policy for the rest of this process (cannot be undone)."""
    sys.addaudithook(_network_guard)


# ---------------------------------------------------------------- spec


def load_spec(path: Path) -> dict[str, Any]:
    """Read and check the spec's shape (field contents are checked by each action)."""
    try:
        spec = json.loads(path.read_text())
    except OSError as exc:
        raise SpecError(f"cannot read spec {path}: {exc.strerror}") from exc
    except json.JSONDecodeError as exc:
        raise SpecError(f"spec {path} is not JSON: {exc}") from exc
    if not isinstance(spec, dict):
        raise SpecError("spec must be a JSON object")
    if spec.get("action") not in ACTIONS:
        raise SpecError(
            f"spec action must be one of {', '.join(ACTIONS)}, got {spec.get('action')!r}"
        )
    if not isinstance(spec.get("out"), str):
        raise SpecError('spec needs an output folder: "out": PATH')
    return spec


def _require(spec: dict[str, Any], key: str, kind: type | tuple[type, ...]) -> Any:
    value = spec.get(key)
    if not isinstance(value, kind):
        raise SpecError(f"{spec['action']} spec needs {key!r} ({getattr(kind, '__name__', kind)})")
    return value


# ---------------------------------------------------------------- helpers


def _write_json(path: Path, payload: dict[str, Any]) -> None:
    # Temp file + rename: the host never reads half a result.
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(payload, indent=1, sort_keys=True, default=str))
    os.replace(tmp, path)


def _file_digests(folder: Path) -> dict[str, str]:
    digests = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        sha = hashlib.sha256()
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                sha.update(block)
        digests[str(path.relative_to(folder))] = sha.hexdigest()
    return digests


def _environment() -> dict[str, Any]:
    """Library versions for provenance (what actually ran, in or out of a container)."""
    import importlib.metadata

    versions = {"python": platform.python_version()}
    for name in ("torch", "transformers", "peft", "safetensors", "numpy", "lineage"):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            versions[name] = importlib.metadata.version(name)
    return {"versions": versions, "in_container": os.environ.get("LINEAGE_IN_CONTAINER") == "1"}


def _progress(prefix: str) -> Callable[..., None]:
    last = [0.0]

    def report(*args: Any, **kwargs: Any) -> None:
        now = time.monotonic()
        if now - last[0] >= 1.0:  # at most one line a second in the logs
            last[0] = now
            parts = [str(a) for a in args] + [f"{k}={v}" for k, v in kwargs.items()]
            print(f"{prefix}: {' '.join(parts)}", flush=True)

    return report


# ---------------------------------------------------------------- actions


def run_derive(spec: dict[str, Any], out: Path) -> dict[str, Any]:
    """Run a recipe on the parents; the new model goes to `out/model/`.

    The recipe itself validates params, checks parents, resolves the data set (a
    shipped name or a CSV/JSONL path) and runs under `lineage.recipes.determinism`
    (seed from its params, fixed thread count), so nothing is seeded here.
    """
    recipe_id = _require(spec, "recipe", str)
    parents = [Path(p) for p in _require(spec, "parents", list)]
    params_in = spec.get("params") or {}
    if not isinstance(params_in, dict):
        raise SpecError("derive spec 'params' must be an object")
    data = spec.get("data")
    if data is not None and not isinstance(data, str):
        raise SpecError("derive spec 'data' must be a shipped data set name, a path or null")
    from lineage.recipes import get_recipe

    recipe = get_recipe(recipe_id)
    params = recipe.validate_params(params_in)
    model_dir = out / MODEL_DIR
    result = recipe.derive(
        parents=parents,
        params=params,
        data=data,
        out_dir=model_dir,
        progress=_progress(f"derive {recipe_id}"),
    )
    return {
        "recipe": recipe.id,
        "kind": recipe.kind,
        "params": params.model_dump(mode="json"),
        "metrics": {k: float(v) for k, v in result.metrics.items()},
        "loss_curve": [[int(s), float(v)] for s, v in result.loss_curve],
        "layout": result.layout,
        "data_fingerprint": result.data_fingerprint,
        "notes": result.notes,
        "files": _file_digests(model_dir),
        "seconds": round(result.duration_s, 3),
    }


def run_test(spec: dict[str, Any], out: Path) -> dict[str, Any]:
    """Run declared model tests on one model; a failing test is a result, not an error.

    The first parent, if any, is the tests' reference model (the base of an adapter,
    the baseline of `no_regression`).
    """
    model = Path(_require(spec, "model", str))
    tests = _require(spec, "tests", list)
    parents = [Path(p) for p in spec.get("parents") or []]
    data = spec.get("data")
    if data is not None and not isinstance(data, str):
        raise SpecError("test spec 'data' must be a shipped data set name, a path or null")
    from lineage.modeltests import declare_test, run_model_test
    from lineage.recipes.determinism import deterministic

    outcomes = []
    for test in tests:
        if not isinstance(test, dict) or not isinstance(test.get("kind"), str):
            raise SpecError("each test needs a 'kind' (and a 'name', 'params')")
        decl = declare_test(test.get("name") or test["kind"], test["kind"], test.get("params"))
        # Same seeds and thread count as derive: a test's verdict must not depend on
        # which runner measured it (latency tests aside).
        with deterministic(int(spec.get("seed", 0))):
            outcome = run_model_test(decl, model, parents[0] if parents else None, data)
        outcomes.append(outcome.to_dict())
        print(
            f"test {decl.name}: {'pass' if outcome.passed else 'FAIL'} "
            f"({outcome.metric}={outcome.value})",
            flush=True,
        )
    return {"tests": outcomes, "passed": all(o["passed"] for o in outcomes)}


def _network_reachable(target: str, timeout_s: float = 2.0) -> tuple[bool, str]:
    host, _, port = target.rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s):
            return True, "connected"
    except OSError as exc:
        return False, f"{type(exc).__name__}: {exc}"


def _root_writable() -> tuple[bool, str]:
    for probe in ("/lineage-probe", "/usr/lineage-probe", "/etc/lineage-probe"):
        try:
            with open(probe, "w") as handle:
                handle.write("x")
        except OSError as exc:
            last = f"{probe}: {exc.strerror}"
            continue
        os.unlink(probe)
        return True, f"wrote {probe}"
    return False, last


def run_probe(spec: dict[str, Any], out: Path) -> dict[str, Any]:
    """Report the step's isolation from inside; optionally misbehave on request."""
    report: dict[str, Any] = {"uid": os.getuid(), "gid": os.getgid()}
    try:
        import pwd

        report["user"] = pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        report["user"] = None
    report["root_fs_writable"], report["root_fs_detail"] = _root_writable()
    report["tmp_writable"] = os.access("/tmp", os.W_OK)
    report["out_writable"] = os.access(out, os.W_OK)
    with contextlib.suppress(OSError):
        report["interfaces"] = sorted(os.listdir("/sys/class/net"))
    for name in spec.get("imports") or []:
        started = time.monotonic()
        __import__(name)
        report.setdefault("import_seconds", {})[name] = round(time.monotonic() - started, 3)
    if spec.get("allocate_mb"):
        # Touch every page so the memory is really resident (what a cgroup limit counts).
        blocks = []
        for _ in range(int(spec["allocate_mb"])):
            blocks.append(bytearray(os.urandom(16)) * (1 << 16))
        report["allocated_mb"] = len(blocks)
    if spec.get("sleep_s"):
        time.sleep(float(spec["sleep_s"]))
    if spec.get("connect"):
        report["network_reachable"], report["network_detail"] = _network_reachable(
            str(spec["connect"])
        )
    return report


ACTION_FUNCS: dict[str, Callable[[dict[str, Any], Path], dict[str, Any]]] = {
    "derive": run_derive,
    "test": run_test,
    "probe": run_probe,
}


# ---------------------------------------------------------------- entrypoint


def _fail(out: Path | None, exit_code: int, kind: str, message: str) -> int:
    print(f"step error: {kind}: {message}", file=sys.stderr, flush=True)
    if out is not None:
        with contextlib.suppress(OSError):
            _write_json(
                out / ERROR_FILE, {"type": kind, "message": message, "exit_code": exit_code}
            )
    return exit_code


def run(spec_path: Path) -> int:
    """Run the step described by `spec_path`; return the process exit code."""
    from lineage.errors import LineageError

    out: Path | None = None
    try:
        spec = load_spec(spec_path)
        out = Path(spec["out"])
        out.mkdir(parents=True, exist_ok=True)
        for folder in reversed(spec.get("code") or []):
            sys.path.insert(0, str(folder))
        # The probe measures the network; every other action runs under the policy.
        if spec["action"] != "probe" or spec.get("guard"):
            install_network_guard()
        started = time.monotonic()
        where = "container" if os.environ.get("LINEAGE_IN_CONTAINER") == "1" else "process"
        print(f"step {spec['action']} starting (uid {os.getuid()}, {where})", flush=True)
        result = ACTION_FUNCS[spec["action"]](spec, out)
        if _network_attempts:  # the step swallowed the refusal: still a violation
            raise NetworkAttemptError(
                f"network access is disabled for steps (tried {_network_attempts[0]})"
            )
        result.update(
            action=spec["action"],
            environment=_environment(),
            step_seconds=round(time.monotonic() - started, 3),
        )
        _write_json(out / RESULT_FILE, result)
        print(f"step {spec['action']} done in {result['step_seconds']:.2f} s", flush=True)
        return StepExit.OK
    except SpecError as exc:
        return _fail(out, StepExit.BAD_SPEC, "SpecError", str(exc))
    except BaseException as exc:
        if _network_attempts:  # whatever broke, the attempt is the cause to report
            return _fail(
                out,
                StepExit.NETWORK,
                "NetworkAttemptError",
                f"the step tried to open a network connection to "
                f"{_network_attempts[0]}; steps run offline, pass weights and data "
                "as inputs",
            )
        if isinstance(exc, LineageError):
            return _fail(out, exc.exit_code, type(exc).__name__, str(exc))
        if isinstance(exc, KeyboardInterrupt | SystemExit):
            raise
        traceback.print_exc()
        return _fail(out, StepExit.CRASH, type(exc).__name__, str(exc) or repr(exc))


def check_imports() -> int:
    """Import everything a step can need (image build check): exit 1 if anything is missing."""
    import importlib

    for module in (
        "numpy",
        "torch",
        "safetensors",
        "transformers",
        "peft",
        "pydantic",
        "lineage.errors",
        "lineage.recipes",
        "lineage.modeltests",
        "lineage.datasets",
    ):
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            # A lineage module that is not written yet is not the image's fault.
            if module.startswith("lineage.") and exc.name == module:
                print(f"check: {module} not in this version of lineage, skipped")
                continue
            print(f"check: importing {module} failed: {exc}", file=sys.stderr)
            return 1
    print("check: ok")
    return 0


def main(argv: list[str] | None = None) -> int:
    """`python -m tasks.step SPEC.json` or `python -m tasks.step --check`."""
    args = sys.argv[1:] if argv is None else argv
    if args == ["--check"]:
        return check_imports()
    if len(args) != 1:
        print("usage: python -m tasks.step SPEC.json | --check", file=sys.stderr)
        return StepExit.BAD_SPEC
    return run(Path(args[0]))


if __name__ == "__main__":
    sys.exit(main())
