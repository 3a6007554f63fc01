"""The process pool's zygote: `python -P -m lineage.steps --zygote`, a process that
imports what steps need once and forks warm workers from itself on request.

A warm worker's imports (torch, transformers, PEFT: about 4 s of CPU) are the same
in every worker of a pool; on a machine with few cores, a second worker importing
them competes with the first steps for the cores. Forked from a process that has
already imported them, a worker is ready in milliseconds and shares those pages
with its siblings until it writes them.

Protocol (the host side is `lineage.steps.pool.zygote`):

- stdin is a Unix `SOCK_SEQPACKET` socket. Each message from the host is one JSON
  object, `{"id", "control", "tmp", "cwd"}`, carrying two file descriptors: the read
  end of the new worker's lifeline pipe and the write end of its output pipe. The
  zygote forks; the child becomes a worker exactly as `python -m lineage.steps
  --worker CONTROL` would (`lineage.steps.worker.serve`), with those pipes as its
  stdin and stdout/stderr, in its own session, its own temp folder and directory.
- stdout carries the zygote's reports, one line each, after `ZYGOTE_MARK`:
  `{"forked": id, "pid": pid}` (or `{"refused": id, "reason": ...}`), and
  `{"exited": pid, "code": code}` when a worker ends (`code` as `Popen.returncode`:
  negative for a signal), since only the zygote, its parent, can wait for it.
- The zygote exits when the socket closes (the host is gone): its workers go on
  until their own lifelines close.

A fork is only safe from a process with one thread (another thread's locks would be
held forever in the child): the zygote never starts one, and checks before each fork;
it refuses the request otherwise, and the host starts that worker as a subprocess.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import socket
import sys
import tempfile
from pathlib import Path
from typing import Any

#: Prefix of the zygote's report lines (anything else on its stdout is a library's
#: output, such as an import warning, and goes to the host's debug log).
ZYGOTE_MARK = "\x1elineage-zygote "
#: A request is a small JSON object; two descriptors come with it.
MAX_REQUEST_BYTES = 65536
FDS_PER_REQUEST = 2


def report(payload: dict[str, Any]) -> None:
    """One report line; `os.write` of a line under PIPE_BUF bytes is atomic."""
    os.write(1, (ZYGOTE_MARK + json.dumps(payload) + "\n").encode())


def _threads() -> int:
    """This process's OS threads (a library may start one at import)."""
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:  # not Linux: trust Python's count
        import threading

        return threading.active_count()


def _become_worker(
    request: dict[str, Any], fds: list[int], host: socket.socket, wake: tuple[int, int]
) -> None:
    """In the forked child: take the request's pipes and folders, then serve steps.
    Never returns."""
    code = 1
    try:
        from lineage.steps.worker import serve

        host.detach()  # fd 0: replaced below, never closed through this object
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        for fd in wake:
            os.close(fd)
        os.setsid()  # a timeout kills the worker's whole session, as for a subprocess
        lifeline, output = fds
        os.dup2(lifeline, 0)
        os.dup2(output, 1)
        os.dup2(output, 2)
        os.close(lifeline)
        os.close(output)
        os.environ["TMPDIR"] = request["tmp"]
        tempfile.tempdir = None  # gettempdir() caches the zygote's
        os.chdir(request["cwd"])
        code = serve(Path(request["control"]), lifeline=True)
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


def _fork(
    request: dict[str, Any], fds: list[int], host: socket.socket, wake: tuple[int, int]
) -> None:
    ident = request["id"]
    for key in ("control", "tmp", "cwd"):
        if not isinstance(request.get(key), str):
            raise ValueError(f"no {key!r} folder")
    if len(fds) != FDS_PER_REQUEST:
        raise ValueError(f"{len(fds)} descriptors, not {FDS_PER_REQUEST}")
    threads = _threads()
    if threads != 1:
        report({"refused": ident, "reason": f"the zygote runs {threads} threads"})
        return
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        _become_worker(request, fds, host, wake)
    report({"forked": ident, "pid": pid})


def _reap() -> None:
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        report({"exited": pid, "code": os.waitstatus_to_exitcode(status)})


def serve_forks() -> int:
    """The zygote's loop (see the module docstring)."""
    from lineage.steps.worker import preload

    host = socket.socket(fileno=0)
    seconds = preload()
    wake_read, wake_write = os.pipe()
    os.set_blocking(wake_write, False)
    signal.signal(signal.SIGCHLD, lambda *_: None)  # the wake-up fd needs a handler
    signal.set_wakeup_fd(wake_write)
    report({"ready": os.getpid(), "import_seconds": round(seconds, 3)})
    while True:
        readable, _, _ = select.select([host.fileno(), wake_read], [], [])
        if wake_read in readable:
            os.read(wake_read, 4096)
            _reap()
        if host.fileno() not in readable:
            continue
        message, fds, _, _ = socket.recv_fds(host, MAX_REQUEST_BYTES, FDS_PER_REQUEST)
        if not message:
            # The host is gone. Skip the interpreter's teardown of torch & co. (most
            # of a second), as a worker does when its lifeline closes.
            os._exit(0)
        request: Any = None
        try:
            request = json.loads(message)
            _fork(request, fds, host, (wake_read, wake_write))
        except (ValueError, KeyError, TypeError, OSError) as exc:  # OSError: fork failed
            ident = request.get("id") if isinstance(request, dict) else None
            report({"refused": ident, "reason": f"cannot fork a worker: {exc}"})
        finally:
            for fd in fds:
                with contextlib.suppress(OSError):
                    os.close(fd)
