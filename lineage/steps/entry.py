"""The step entry point: `python -P -m lineage.steps SPEC.json`.

The same entry point runs in a subprocess (process runner), inside the task container
(docker runner) and, called directly, in this process (inline runner), so a step
computes the same thing wherever it runs. A step reads its inputs (parent weights,
data) and writes only into its output folder; the host commits that folder into the
store, so a step never touches the graph DB or the object store.

The spec is one of `lineage.steps.spec`'s typed specs, as JSON. Output folder:
`result.json` (on success), `model/` (derive: the new model as a Hugging Face
directory), `error.json` (on failure: `{"type", "message", "exit_code"}`). Exit codes
are `StepExit`: 0 success; 1-19 the `exit_code` of the `lineage.errors` class raised
(e.g. 9 `RecipeError`, 10 `DataError`); 64 bad spec; 65 the step tried to open a
network connection; 70 an unexpected exception (a bug). Signals (timeouts, OOM kills)
are reported by the runner, which sees them from outside.

Seeds and the thread count are fixed by `lineage.recipes.determinism` (the spec's
`threads`, else its default), which is what makes a step's bytes the same in every
runner. `probe` reports, from inside, what isolation the step has (uid, network
reachability, whether the root file system is writable), and can misbehave on purpose
so tests can check that runners contain it.

The network guard below is an audit hook in this interpreter: it stops the step's own
Python code, not a child process it starts. Real isolation is the docker runner's
(no network namespace route, read-only root, no capabilities).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import socket
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lineage.steps.spec import (
    ERROR_FILE,
    MODEL_DIR,
    RESULT_FILE,
    DeriveSpec,
    ProbeSpec,
    SpecError,
    StepExit,
    StepSpec,
    TestSpec,
    parse_spec,
)

if TYPE_CHECKING:
    from lineage.recipes import TrainingProgress


class NetworkAttemptError(PermissionError):
    """Raised inside a step that tries to connect out: steps run offline."""


# ---------------------------------------------------------------- network guard

_network_attempts: list[str] = []
_LOCAL_HOSTS = {"localhost", "127.0.0.1", "::1", "0.0.0.0", "", None}


def _is_local(host: Any) -> bool:
    if host in _LOCAL_HOSTS:
        return True
    return isinstance(host, str) and (host.startswith("127.") or host == "::1")


# An audit hook cannot be removed, so a warm worker installs it once and turns the
# policy on and off per step (a probe may measure the network unguarded).
_guard = {"installed": False, "on": False}


def _network_guard(event: str, args: tuple[Any, ...]) -> None:
    """Audit hook: refuse, and remember, any connection to a non-loopback address.

    In the container the network namespace has no route anyway; the hook is what lets
    the step say *what* it tried, and gives the process runner the same policy.
    """
    if not _guard["on"]:
        return
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


def install_network_guard(on: bool = True) -> None:
    """Install the offline policy's audit hook (once per process) and turn it on or off.

    A one-shot step turns it on for the rest of its process; a warm worker sets it
    before each step."""
    if not _guard["installed"]:
        sys.addaudithook(_network_guard)
        _guard["installed"] = True
    _guard["on"] = on


# ---------------------------------------------------------------- spec


def load_spec(path: Path) -> StepSpec:
    """Read and check a spec file (`SpecError` with one line when malformed)."""
    try:
        raw = json.loads(path.read_text())
    except OSError as exc:
        raise SpecError(f"cannot read spec {path}: {exc.strerror}") from exc
    except json.JSONDecodeError as exc:
        raise SpecError(f"spec {path} is not JSON: {exc}") from exc
    return parse_spec(raw)


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
    from lineage.provenance import library_versions

    versions = {"python": platform.python_version(), **library_versions()}
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


def run_derive(spec: DeriveSpec, progress: TrainingProgress | None = None) -> dict[str, Any]:
    """Run a recipe on the parents; the new model goes to `out/model/`.

    The recipe itself validates params, checks parents, resolves the data set (a
    shipped name or a CSV/JSONL path) and runs under `lineage.recipes.determinism`
    (seed from its params, fixed thread count), so nothing is seeded here.
    """
    from lineage.recipes import get_recipe
    from lineage.recipes.threads import effective_threads

    recipe = get_recipe(spec.recipe)
    params = recipe.validate_params(dict(spec.params))
    model_dir = Path(spec.out) / MODEL_DIR
    result = recipe.derive(
        parents=[Path(p) for p in spec.parents],
        params=params,
        data=spec.data,
        out_dir=model_dir,
        progress=progress,
        threads=spec.threads,
    )
    made = {
        "recipe": recipe.id,
        "recipe_version": recipe.version,
        "kind": recipe.kind,
        "params": params.model_dump(mode="json"),
        "metrics": {k: float(v) for k, v in result.metrics.items()},
        "loss_curve": [[int(s), float(v)] for s, v in result.loss_curve],
        "layout": result.layout,
        "data_fingerprint": result.data_fingerprint,
        "notes": result.notes,
        "files": _file_digests(model_dir),
        "seconds": round(result.duration_s, 3),
        "threads": effective_threads(spec.threads),
    }
    if spec.tests:
        made.update(_tests_after_derive(spec, model_dir))
    return made


def _tests_after_derive(spec: DeriveSpec, model_dir: Path) -> dict[str, Any]:
    """Run the node's tests on the model just written, in this same step: no second
    process, no checkout of the committed version (the bytes are the same).

    The derive stands whatever happens here: a test that cannot run is reported as
    `tests_error`, and the host then runs the tests the usual way (where the same
    error surfaces as it always did)."""
    started = time.perf_counter()
    try:
        outcomes = _run_tests(
            spec.tests,
            model_dir,
            Path(spec.parents[0]) if spec.parents else None,
            spec.data,
            seed=0,
            threads=spec.threads,
        )
    except Exception as exc:
        print(f"tests after derive could not run: {type(exc).__name__}: {exc}", flush=True)
        return {"tests_error": f"{type(exc).__name__}: {exc}"}
    return {
        "tests": outcomes,
        "passed": all(o["passed"] for o in outcomes),
        "test_seconds": round(time.perf_counter() - started, 3),
    }


def _run_tests(
    tests: Sequence[Mapping[str, Any]],
    model: Path,
    reference: Path | None,
    data: str | None,
    *,
    seed: int,
    threads: int | None,
) -> list[dict[str, Any]]:
    from lineage.modeltests import declare_test, run_model_test
    from lineage.recipes.determinism import deterministic

    outcomes = []
    for test in tests:
        decl = declare_test(test.get("name") or test["kind"], test["kind"], test.get("params"))
        # Same seeds and thread count as derive: a test's verdict must not depend on
        # which runner measured it (latency tests aside).
        with deterministic(seed, threads):
            outcome = run_model_test(decl, model, reference, data)
        outcomes.append(outcome.to_dict())
        print(
            f"test {decl.name}: {'pass' if outcome.passed else 'FAIL'} "
            f"({outcome.metric}={outcome.value})",
            flush=True,
        )
    return outcomes


def run_test(spec: TestSpec) -> dict[str, Any]:
    """Run declared model tests on one model; a failing test is a result, not an error.

    The first parent, if any, is the tests' reference model (the base of an adapter,
    the baseline of `no_regression`).
    """
    from lineage.recipes.threads import effective_threads

    outcomes = _run_tests(
        spec.tests,
        Path(spec.model),
        Path(spec.parents[0]) if spec.parents else None,
        spec.data,
        seed=spec.seed,
        threads=spec.threads,
    )
    return {
        "tests": outcomes,
        "passed": all(o["passed"] for o in outcomes),
        "threads": effective_threads(spec.threads),
    }


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


def run_probe(spec: ProbeSpec) -> dict[str, Any]:
    """Report the step's isolation from inside; optionally misbehave on request."""
    report: dict[str, Any] = {
        "uid": os.getuid(),
        "gid": os.getgid(),
        "pid": os.getpid(),
        "hostname": socket.gethostname(),  # a container's id
    }
    if hasattr(os, "sched_getaffinity"):  # Linux: the cores the step may run on
        report["cores"] = sorted(os.sched_getaffinity(0))
    try:
        import pwd

        report["user"] = pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        report["user"] = None
    report["root_fs_writable"], report["root_fs_detail"] = _root_writable()
    report["tmp_writable"] = os.access("/tmp", os.W_OK)
    report["out_writable"] = os.access(spec.out, os.W_OK)
    report["environment_names"] = sorted(os.environ)  # names only: what a step can see
    # What the step can see of other steps: its temp folder, and in a container the
    # input and output mounts.
    report["tmp_entries"] = sorted(os.listdir(tempfile.gettempdir()))
    report["visible"] = {
        folder: sorted(os.listdir(folder)) for folder in ("/in", "/out") if os.path.isdir(folder)
    }
    if spec.litter:
        Path(tempfile.gettempdir(), "lineage-probe-litter").write_text("left behind")
    with contextlib.suppress(OSError):
        report["interfaces"] = sorted(os.listdir("/sys/class/net"))
    for name in spec.imports:
        started = time.monotonic()
        __import__(name)
        report.setdefault("import_seconds", {})[name] = round(time.monotonic() - started, 3)
    if spec.allocate_mb:
        # Touch every page so the memory is really resident (what a cgroup limit counts).
        blocks = []
        for _ in range(spec.allocate_mb):
            blocks.append(bytearray(os.urandom(16)) * (1 << 16))
        report["allocated_mb"] = len(blocks)
    if spec.sleep_s:
        time.sleep(spec.sleep_s)
    if spec.connect:
        report["network_reachable"], report["network_detail"] = _network_reachable(spec.connect)
    return report


def execute(spec: StepSpec, progress: TrainingProgress | None = None) -> dict[str, Any]:
    """Run one step in this process and return its result (what `result.json` holds)."""
    if isinstance(spec, DeriveSpec):
        return run_derive(spec, progress)
    if isinstance(spec, TestSpec):
        return run_test(spec)
    return run_probe(spec)


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
    try:
        spec = load_spec(spec_path)
    except SpecError as exc:
        return _fail(None, StepExit.BAD_SPEC, "SpecError", str(exc))
    return run_spec(spec)


def run_spec(spec: StepSpec) -> int:
    """Run one parsed step in this process, writing `result.json` or `error.json` into
    its output folder; return the exit code a one-shot step would exit with.

    A one-shot step (`run`) and a warm worker (`lineage.steps.worker`) both end here."""
    from lineage.errors import LineageError

    out: Path | None = None
    _network_attempts.clear()
    try:
        out = Path(spec.out)
        out.mkdir(parents=True, exist_ok=True)
        for folder in reversed(spec.code):
            sys.path.insert(0, folder)
        # The probe measures the network; every other action runs under the policy.
        install_network_guard(not isinstance(spec, ProbeSpec) or spec.guard)
        started = time.monotonic()
        where = "container" if os.environ.get("LINEAGE_IN_CONTAINER") == "1" else "process"
        print(f"step {spec.action} starting (uid {os.getuid()}, {where})", flush=True)
        # In a subprocess or container the log is the only view: a line per second.
        result = execute(spec, _progress(f"{spec.action} {getattr(spec, 'recipe', '')}"))
        if _network_attempts:  # the step swallowed the refusal: still a violation
            raise NetworkAttemptError(
                f"network access is disabled for steps (tried {_network_attempts[0]})"
            )
        result.update(
            action=spec.action,
            environment=_environment(),
            step_seconds=round(time.monotonic() - started, 3),
        )
        _write_json(out / RESULT_FILE, result)
        print(f"step {spec.action} done in {result['step_seconds']:.2f} s", flush=True)
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


#: What a step can need, imported by `--check` (the image build's smoke test).
STEP_IMPORTS = (
    "numpy",
    "torch",
    "safetensors",
    "transformers",
    "peft",
    "pydantic",
    "lineage.recipes",
    "lineage.modeltests",
    "lineage.datasets",
)


def check_imports() -> int:
    """Import everything a step can need: exit 1 if anything is missing."""
    import importlib

    for module in STEP_IMPORTS:
        try:
            importlib.import_module(module)
        except ImportError as exc:
            print(f"check: importing {module} failed: {exc}", file=sys.stderr)
            return 1
    print("check: ok")
    return 0


def main(argv: list[str] | None = None) -> int:
    """`python -m lineage.steps SPEC.json`, `... --check`, `... --worker CONTROL_DIR`
    (a warm worker: see `lineage.steps.worker`) or `... --zygote` (the process that
    forks warm workers: see `lineage.steps.zygote`)."""
    args = sys.argv[1:] if argv is None else argv
    if args == ["--check"]:
        return check_imports()
    if len(args) == 2 and args[0] == "--worker":
        from lineage.steps.worker import serve

        return serve(Path(args[1]))
    if args == ["--zygote"]:
        from lineage.steps.zygote import serve_forks

        return serve_forks()
    if len(args) != 1:
        print(
            "usage: python -m lineage.steps SPEC.json | --check | --worker DIR | --zygote",
            file=sys.stderr,
        )
        return StepExit.BAD_SPEC
    return run(Path(args[0]))
