"""The ingest/gc lock of an S3 store: lease objects in the bucket, so it holds across hosts.

Ingests hold the lock shared, gc holds it exclusive (see `ObjectStore.lock`). With only
a bucket in common, the lock is made of objects under ``locks/``:

- a shared holder writes its own ``locks/shared/<id>``; the exclusive holder creates
  ``locks/exclusive`` with a conditional write (``If-None-Match: *``), which the server
  grants to exactly one writer;
- a shared holder, after writing its object, looks for ``locks/exclusive``: if present
  it removes its own object and waits. The exclusive holder, after creating its object,
  waits until no live shared object remains. S3 is strongly consistent (read after
  write, lists included), so of an ingest and a gc starting together at least one sees
  the other: both never proceed. Waiting shared holders let the exclusive one in first;
- every lock object is a lease: its holder rewrites it every ``lease_seconds / 4``
  (``If-Match`` on its own ETag, so it notices if the lease was taken from it), and an
  object not rewritten for ``lease_seconds`` is stale: waiters delete it (``If-Match``
  on the ETag they saw, so only that stale lease goes) and go on. Ages are computed in
  the server's clock alone (an object's Last-Modified against the Date of the reply
  that listed it), so clock skew between hosts does not matter.

Limits, honestly: a lease is only as good as its renewals. A holder that stops for longer
than ``lease_seconds`` without dying (a suspended laptop, a long network partition, a
stopped process) loses its lease while it still believes it holds it; it finds out at
its next renewal and its `hold` then raises `StoreError` (an ingest's version is not
recorded), but work it did in between was unprotected. The store's second line of
defence covers that window: gc never deletes objects or manifests younger than its
grace period (an hour by default), and ingests refresh the modification time of every
object they re-use. A holder killed outright blocks the other kind of holder for at most
``lease_seconds``.
"""

from __future__ import annotations

import contextlib
import email.utils
import json
import os
import random
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

from lineage.errors import StoreError

DEFAULT_LEASE_SECONDS = 60.0
EXCLUSIVE_KEY = "locks/exclusive"
SHARED_PREFIX = "locks/shared/"


class S3Lock:
    """A shared/exclusive lease lock kept as objects in a bucket (see the module)."""

    def __init__(
        self,
        client: Any,
        bucket: str,
        key: Callable[[str], str],
        errors: Any,
        lease_seconds: float = DEFAULT_LEASE_SECONDS,
    ) -> None:
        if lease_seconds < 4:
            raise StoreError("the S3 lock's lease must last at least 4 seconds")
        self.client = client
        self.bucket = bucket
        self.key = key
        self.errors = errors
        self.lease_seconds = lease_seconds
        self.owner = f"{socket.gethostname()}:{os.getpid()}"

    # -- holding ---------------------------------------------------------------------
    @contextlib.contextmanager
    def hold(self, *, exclusive: bool) -> Iterator[None]:
        """Hold the lock while the block runs; `StoreError` at the end if the lease was
        lost meanwhile (see the module's limits)."""
        key = EXCLUSIVE_KEY if exclusive else f"{SHARED_PREFIX}{uuid.uuid4().hex}"
        lease = self._acquire_exclusive() if exclusive else self._acquire_shared(key)
        renewer = _Renewer(self, key, lease)
        renewer.start()
        try:
            yield
        finally:
            renewer.stop()
            self._delete(key, renewer.etag)
        if renewer.lost:
            raise StoreError(
                f"lost the store lock ({key}) while holding it: it was not renewed for "
                f"{self.lease_seconds:g} s and another process took it over"
            )

    def _acquire_shared(self, key: str) -> str:
        pause = _Backoff()
        while True:
            self._wait_while_exclusive(pause)
            etag = self._put(key)
            if self._live_exclusive() is None:
                return etag
            self._delete(key, etag)  # a gc got in first: let it finish
            pause.sleep()

    def _acquire_exclusive(self) -> str:
        pause = _Backoff()
        while True:
            try:
                etag = self._put(EXCLUSIVE_KEY, if_none_match=True)
                break
            except _Conflict:
                self._wait_while_exclusive(pause)
        # new ingests now back off; wait for those already running
        while self._live_shared():
            pause.sleep()
            etag = self._renew(EXCLUSIVE_KEY, etag)
        return etag

    def _wait_while_exclusive(self, pause: _Backoff) -> None:
        while self._live_exclusive() is not None:
            pause.sleep()

    # -- reading leases ----------------------------------------------------------------
    def _live_exclusive(self) -> str | None:
        """The ETag of a live exclusive lease, or None (a stale one is removed)."""
        try:
            reply = self.client.head_object(Bucket=self.bucket, Key=self.key(EXCLUSIVE_KEY))
        except self.errors.ClientError as exc:
            if _code(exc) in {"404", "NoSuchKey", "NotFound"}:
                return None
            raise StoreError(f"cannot read the S3 store lock: {exc}") from None
        etag = str(reply["ETag"])
        if self._age(reply["LastModified"], reply) > self.lease_seconds:
            self._delete(EXCLUSIVE_KEY, etag)  # stale: its holder died
            return None
        return etag

    def _live_shared(self) -> bool:
        """Whether any live shared lease exists (stale ones are removed)."""
        live = False
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=self.key(SHARED_PREFIX)):
            for item in page.get("Contents", []):
                if self._age(item["LastModified"], page) > self.lease_seconds:
                    self._delete_raw(item["Key"], str(item["ETag"]))
                else:
                    live = True
        return live

    @staticmethod
    def _age(modified: datetime, reply: dict[str, Any]) -> float:
        """Seconds since `modified`, by the server's clock (its reply's Date header)."""
        date = reply.get("ResponseMetadata", {}).get("HTTPHeaders", {}).get("date")
        now = email.utils.parsedate_to_datetime(date) if date else None
        if now is None:  # no Date header: fall back to our own clock
            return time.time() - modified.timestamp()
        return (now - modified).total_seconds()

    # -- writing leases ------------------------------------------------------------------
    def _body(self) -> bytes:
        # a fresh nonce per write: every renewal gets a new ETag to match against
        return json.dumps({"owner": self.owner, "nonce": uuid.uuid4().hex}).encode()

    def _put(self, key: str, *, if_none_match: bool = False, if_match: str = "") -> str:
        args: dict[str, Any] = {"Bucket": self.bucket, "Key": self.key(key), "Body": self._body()}
        if if_none_match:
            args["IfNoneMatch"] = "*"
        if if_match:
            args["IfMatch"] = if_match
        try:
            return str(self.client.put_object(**args)["ETag"])
        except self.errors.ClientError as exc:
            if _code(exc) in {"PreconditionFailed", "412", "ConditionalRequestConflict", "409"}:
                raise _Conflict() from None
            if if_match and _code(exc) in {"404", "NoSuchKey", "NotFound"}:
                raise _Conflict() from None
            raise StoreError(f"cannot write the S3 store lock: {exc}") from None
        except self.errors.BotoCoreError as exc:
            raise StoreError(f"cannot reach the S3 store to lock it: {exc}") from None

    def _renew(self, key: str, etag: str) -> str:
        """Rewrite our lease; `StoreError` if it is no longer ours."""
        try:
            return self._put(key, if_match=etag)
        except _Conflict:
            raise StoreError(f"lost the store lock ({key}) while waiting for it") from None

    def _delete(self, key: str, etag: str) -> None:
        self._delete_raw(self.key(key), etag)

    def _delete_raw(self, full_key: str, etag: str) -> None:
        # If-Match: only the lease we saw goes, never one written meanwhile
        with contextlib.suppress(self.errors.ClientError, self.errors.BotoCoreError):
            self.client.delete_object(Bucket=self.bucket, Key=full_key, IfMatch=etag)


class _Conflict(Exception):
    """A conditional write that the server refused."""


def _code(exc: Exception) -> str:
    return str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))


class _Backoff:
    """Sleeps between polls: short at first, then up to 2 s, with jitter."""

    def __init__(self) -> None:
        self.delay = 0.2

    def sleep(self) -> None:
        time.sleep(self.delay * random.uniform(0.5, 1.5))
        self.delay = min(2.0, self.delay * 1.5)


class _Renewer(threading.Thread):
    """Rewrites a held lease every quarter lease, and notes if it was lost."""

    def __init__(self, lock: S3Lock, key: str, etag: str) -> None:
        super().__init__(name="s3-lock-renewer", daemon=True)
        self.lock = lock
        self.key = key
        self.etag = etag
        self.lost = False
        self._stopping = threading.Event()

    def run(self) -> None:
        while not self._stopping.wait(self.lock.lease_seconds / 4):
            try:
                self.etag = self.lock._put(self.key, if_match=self.etag)
            except _Conflict:
                self.lost = True
                return
            except StoreError:
                continue  # the server is unreachable for now: try again next round

    def stop(self) -> None:
        self._stopping.set()
        self.join()
