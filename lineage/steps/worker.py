"""A warm step worker: `python -P -m lineage.steps --worker CONTROL_DIR`.

It imports what steps need once (torch, transformers, PEFT, the recipes and the model
tests), then runs one step after another as the host asks, through files in
CONTROL_DIR (the same protocol in a subprocess and in a container, where the folder
is a bind mount):

- the worker writes `ready.json` (`{"pid", "import_seconds"}`) once its imports are done;
- for its n-th step (n = 1, 2, ...) the host writes `n.request.json` (`{"spec": ...}`);
- the worker runs it exactly as a one-shot step runs (`entry.run_spec`: the same
  `result.json` or `error.json` in the step's output folder, the same exit codes), then
  writes `n.response.json` (`{"exit_code", "retire", "seconds"}`).

Between steps the worker puts back the current directory and `sys.path`, and deletes
what the step left in the temp folder, so the next step starts from the same state and
never sees its files. What happens after a step that ran code other than lineage's own
(a `module:function` or entry-point recipe, a `user` test, `code` folders, a probe's
imports) is the host's choice (`LINEAGE_WORKER_USER_CODE`):

- `retire` (the docker pool): the worker answers with `retire` and exits; the host
  starts a fresh one, so user code never shares a process with a later step;
- `reload` (the process pool, which isolates nothing beyond a process anyway): the
  worker forgets the modules the step imported from outside the installed libraries,
  so the next step imports the user's code afresh, and goes on.

The worker exits when the host goes away: when its stdin closes (`--lifeline`, the
process runner's pipe), or after `LINEAGE_WORKER_IDLE_S` seconds without a request (a
container whose host died). A step that ends the interpreter (SystemExit, a crash, a
kill, an OOM kill) ends the worker; the host sees that as the step's exit and replaces it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from lineage.steps.spec import DeriveSpec, ProbeSpec, SpecError, StepSpec, TestSpec, parse_spec

READY_FILE = "ready.json"
#: Seconds between looks for the next request: small next to any step, and a stat
#: call a hundred times a second costs nothing measurable.
POLL_S = 0.01
#: Exit after this long without a request (a container outlives a killed host otherwise).
IDLE_ENV = "LINEAGE_WORKER_IDLE_S"
DEFAULT_IDLE_S = 900.0
#: What a worker does after a step that ran user code: "retire" or "reload" (above).
USER_CODE_ENV = "LINEAGE_WORKER_USER_CODE"
#: What a warm worker imports before it says it is ready.
PRELOAD = ("torch", "transformers", "peft", "lineage.recipes", "lineage.modeltests")

#: The last line a worker prints for a step: the host routes output up to it to that
#: step's log (the response file can arrive before the pipe has been read).
END_OF_STEP = "\x1elineage-step-end "

BUILTIN_TEST_KINDS = frozenset({"accuracy", "f1", "no_regression", "invariance", "size", "latency"})


def request_path(control: Path, seq: int) -> Path:
    return control / f"{seq}.request.json"


def response_path(control: Path, seq: int) -> Path:
    return control / f"{seq}.response.json"


def write_json_atomically(path: Path, payload: dict[str, Any]) -> None:
    """Temp file + rename: the other side never reads half a message."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(payload, default=str))
    os.replace(tmp, path)


def runs_only_lineage_code(spec: StepSpec) -> bool:
    """Whether the step runs nothing but lineage's own recipes and test kinds (then the
    worker may take another step; otherwise it retires)."""
    from lineage.recipes.builtin import BUILTIN_RECIPES

    if spec.code:
        return False
    if isinstance(spec, ProbeSpec):
        return not spec.imports
    if isinstance(spec, DeriveSpec) and spec.recipe not in {r.id for r in BUILTIN_RECIPES}:
        return False
    tests = spec.tests if isinstance(spec, DeriveSpec | TestSpec) else ()
    return all(test.get("kind") in BUILTIN_TEST_KINDS for test in tests)


def preload() -> float:
    """Import what steps need (`PRELOAD` and the built-in recipes); the seconds taken."""
    import importlib

    started = time.perf_counter()
    for module in PRELOAD:
        importlib.import_module(module)
    import lineage.recipes.builtin  # noqa: F401  (registers the built-in recipes)

    return time.perf_counter() - started


def _installed_roots() -> tuple[str, ...]:
    """Where installed code lives: the standard library, site-packages, lineage."""
    import sysconfig

    import lineage

    roots = {sysconfig.get_path(name) for name in ("stdlib", "platstdlib", "purelib", "platlib")}
    roots.add(str(Path(lineage.__file__).resolve().parent))
    return tuple(sorted(os.path.join(os.path.realpath(r), "") for r in roots if r))


class _Leftovers:
    """What a step leaves behind in this process, put back after every step."""

    def __init__(self) -> None:
        self.cwd = os.getcwd()
        self.path = list(sys.path)
        self.tmp = Path(tempfile.gettempdir())
        self.tmp_entries = set(os.listdir(self.tmp))
        self.modules = set(sys.modules)
        self.installed = _installed_roots()

    def forget_user_modules(self) -> None:
        """Drop the modules imported since the worker started that are not installed
        code (a user's recipe or test module): the next step imports them afresh."""
        for name in set(sys.modules) - self.modules:
            origin = getattr(sys.modules.get(name), "__file__", None)
            if origin and not os.path.realpath(origin).startswith(self.installed):
                del sys.modules[name]

    def clean(self) -> None:
        os.chdir(self.cwd)
        sys.path[:] = self.path
        for name in set(os.listdir(self.tmp)) - self.tmp_entries:
            path = self.tmp / name
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                with contextlib.suppress(OSError):
                    path.unlink()


def _watch_lifeline() -> None:
    """Exit as soon as stdin closes: the host that holds the other end is gone."""

    def wait() -> None:
        with contextlib.suppress(Exception):
            while sys.stdin.buffer.read(4096):
                pass
        os._exit(0)

    threading.Thread(target=wait, name="lifeline", daemon=True).start()


def _next_request(control: Path, seq: int, idle_s: float) -> dict[str, Any] | None:
    path = request_path(control, seq)
    deadline = time.monotonic() + idle_s
    while not path.exists():
        if time.monotonic() > deadline:
            return None
        time.sleep(POLL_S)
    request: dict[str, Any] = json.loads(path.read_text())
    path.unlink()
    return request


def _run_one(raw: Any) -> tuple[int, bool]:
    """Run one requested step; (exit code, whether it ran code other than lineage's)."""
    from lineage.steps.entry import _fail, run_spec
    from lineage.steps.spec import StepExit

    try:
        spec = parse_spec(raw)
    except SpecError as exc:
        return _fail(None, StepExit.BAD_SPEC, "SpecError", str(exc)), False
    with contextlib.suppress(OSError):
        os.chdir(spec.out)  # where a one-shot step runs too
    return run_spec(spec), not runs_only_lineage_code(spec)


def serve(control: Path, *, lifeline: bool | None = None) -> int:
    """Run steps as the host asks through `control` (see the module docstring)."""
    if lifeline if lifeline is not None else os.environ.get("LINEAGE_WORKER_LIFELINE") == "1":
        _watch_lifeline()
    idle_s = float(os.environ.get(IDLE_ENV) or DEFAULT_IDLE_S)
    reload_user_code = os.environ.get(USER_CODE_ENV) == "reload"
    import_s = preload()
    leftovers = _Leftovers()
    write_json_atomically(
        control / READY_FILE, {"pid": os.getpid(), "import_seconds": round(import_s, 3)}
    )
    print(f"worker ready in {import_s:.1f} s (pid {os.getpid()})", flush=True)
    seq = 0
    while True:
        seq += 1
        request = _next_request(control, seq, idle_s)
        if request is None:
            print(f"worker idle for {idle_s:g} s: exiting", flush=True)
            return 0
        started = time.perf_counter()
        try:
            exit_code, user_code = _run_one(request.get("spec"))
        finally:
            # The host waits for this line: all the step printed comes before it.
            print(f"{END_OF_STEP}{seq}", flush=True)
            sys.stderr.flush()
            leftovers.clean()
        retire = user_code and not reload_user_code
        if user_code and not retire:
            leftovers.forget_user_modules()
        write_json_atomically(
            response_path(control, seq),
            {
                "exit_code": int(exit_code),
                "retire": retire,
                "seconds": round(time.perf_counter() - started, 3),
            },
        )
        if retire:
            return 0
