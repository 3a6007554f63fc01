"""The host's handle on the process pool's zygote (`lineage.steps.zygote`).

`Zygote.start` launches it (it imports torch & co. once); `fork` asks it for a worker
and returns at once: the request waits in the socket until the imports are done.
What the zygote reports (a worker forked, refused, or exited) reaches the worker
through the `ForkClient` callbacks, from this handle's reader thread.

If the zygote is gone (it failed to import, or was killed), `fork` says so and the
pool starts its workers as subprocesses; a request it had not answered yet is
refused the same way, so no worker waits for a fork that will never come.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
from collections import deque
from collections.abc import Mapping
from pathlib import Path
from typing import Protocol

from lineage.steps.zygote import ZYGOTE_MARK

log = logging.getLogger("lineage.steps.pool")


class ForkClient(Protocol):
    """What a worker started by the zygote hears about itself."""

    def forked(self, pid: int) -> None: ...

    def refused(self, reason: str) -> None: ...

    def exited(self, code: int) -> None: ...


def can_fork() -> bool:
    """Whether this platform has what the zygote and its host need (fork, SCM_RIGHTS
    over a seqpacket socket, and pidfds to see a worker end that is not our child)."""
    if not (hasattr(os, "fork") and hasattr(os, "pidfd_open") and hasattr(socket, "send_fds")):
        return False
    try:
        os.close(os.pidfd_open(os.getpid()))
    except OSError:  # a kernel before 5.3
        return False
    return True


class Zygote:
    """One zygote process and its reader thread (see the module docstring)."""

    def __init__(self, python: str, env: Mapping[str, str]) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="lineage-zygote-"))
        (self.root / "tmp").mkdir()
        self._socket, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._pending: dict[int, ForkClient] = {}  # asked, not yet forked
        self._workers: dict[int, ForkClient] = {}  # pid -> worker, until it exits
        self._gone = threading.Event()
        self.last_words: deque[str] = deque(maxlen=5)
        try:
            self.process = subprocess.Popen(
                [python, "-P", "-m", "lineage.steps", "--zygote"],
                stdin=theirs.fileno(),
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                cwd=self.root,
                env={**env, "TMPDIR": str(self.root / "tmp")},
                start_new_session=True,
                text=True,
                errors="replace",
            )
        finally:
            theirs.close()
        threading.Thread(target=self._read, name="zygote-reports", daemon=True).start()

    @property
    def alive(self) -> bool:
        return not self._gone.is_set()

    def fork(self, client: ForkClient, control: Path, tmp: Path, cwd: Path, fds: list[int]) -> bool:
        """Ask for a worker with the pipe ends `fds` (lifeline read, output write);
        False if the zygote is gone (then nothing was sent)."""
        request = {"control": str(control), "tmp": str(tmp), "cwd": str(cwd)}
        with self._lock:
            if self._gone.is_set():
                return False
            ident = next(self._ids)
            message = json.dumps({"id": ident, **request}).encode()
            try:
                socket.send_fds(self._socket, [message], fds)
            except OSError:
                return False
            self._pending[ident] = client
        return True

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            if line.startswith(ZYGOTE_MARK):
                with contextlib.suppress(ValueError, KeyError, TypeError):
                    self._handle(json.loads(line[len(ZYGOTE_MARK) :]))
            elif line.strip():
                self.last_words.append(line.rstrip())
                log.debug("zygote: %s", line.rstrip())
        self.process.wait()
        with self._lock:
            self._gone.set()
            pending, self._pending = list(self._pending.values()), {}
        said = self.last_words[-1] if self.last_words else "no output"
        for client in pending:
            client.refused(f"the zygote exited ({self.process.returncode}): {said}")

    def _handle(self, report: dict[str, object]) -> None:
        if "ready" in report:
            log.debug("zygote ready: imports took %s s", report.get("import_seconds"))
            return
        with self._lock:
            if "forked" in report:
                client = self._pending.pop(int(str(report["forked"])), None)
                if client is not None:
                    self._workers[int(str(report["pid"]))] = client
            elif "refused" in report:
                ident = report["refused"]
                client = None if ident is None else self._pending.pop(int(str(ident)), None)
            else:
                client = self._workers.pop(int(str(report["exited"])), None)
        if client is None:
            return
        if "forked" in report:
            client.forked(int(str(report["pid"])))
        elif "refused" in report:
            client.refused(str(report.get("reason")))
        else:
            client.exited(int(str(report["code"])))

    def stop(self) -> None:
        """Close the socket (the zygote exits; its workers live on their lifelines)."""
        with contextlib.suppress(OSError):
            self._socket.close()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        shutil.rmtree(self.root, ignore_errors=True)
