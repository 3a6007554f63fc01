"""The S3-compatible backend (AWS S3, SeaweedFS, MinIO...), through boto3.

An S3 PUT is atomic (readers see the whole object or none) and durable when it returns,
which is exactly what `ObjectStore._put` promises. S3 has no locks: the ingest/gc lock
is made of lease objects in the bucket itself, written with conditional requests, so it
holds across hosts (see `lineage.store.s3_lock`, limits included).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlparse

from lineage.errors import StoreError
from lineage.extras import require_extra
from lineage.store.backend import Entry, ObjectStore, TooLargeError
from lineage.store.buffers import BufferPool
from lineage.store.s3_lock import DEFAULT_LEASE_SECONDS, S3Lock

#: byte ranges of one object closer than this are fetched in one GET (a request costs
#: more than reading this many bytes more).
RANGE_GAP = 256 << 10


def _spans(ranges: list[tuple[int, int]], gap: int) -> list[tuple[int, int, list[tuple[int, int]]]]:
    """(start, end, member ranges) of the spans that cover `ranges`, merging ranges less
    than `gap` bytes apart."""
    spans: list[tuple[int, int, list[tuple[int, int]]]] = []
    for offset, length in sorted(ranges):
        if spans and offset - spans[-1][1] < gap:
            first, last, members = spans[-1]
            spans[-1] = (first, max(last, offset + length), [*members, (offset, length)])
        else:
            spans.append((offset, offset + length, [(offset, length)]))
    return spans


class S3ObjectStore(ObjectStore):
    """An object store under ``s3://bucket/prefix``."""

    def __init__(
        self,
        url: str,
        *,
        endpoint_url: str | None = None,
        aws_access_key_id: str | None = None,
        aws_secret_access_key: str | None = None,
        region_name: str | None = None,
        lease_seconds: float = DEFAULT_LEASE_SECONDS,
        **options: Any,
    ) -> None:
        super().__init__(**options)
        require_extra("s3", "an S3 object store")
        import boto3
        import botocore.config
        import botocore.exceptions

        parsed = urlparse(url)
        if parsed.scheme != "s3" or not parsed.netloc:
            raise StoreError(f"not an S3 URL: {url!r} (expected s3://bucket/prefix)")
        self.bucket = parsed.netloc
        self.prefix = parsed.path.strip("/")
        self.location = url
        self._errors = botocore.exceptions
        self.client = boto3.client(
            "s3",
            endpoint_url=endpoint_url or os.environ.get("AWS_ENDPOINT_URL"),
            aws_access_key_id=aws_access_key_id,
            aws_secret_access_key=aws_secret_access_key,
            region_name=region_name or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1",
            config=botocore.config.Config(
                max_pool_connections=32, retries={"max_attempts": 5, "mode": "standard"}
            ),
        )
        self._ensure_bucket()
        self._lock = S3Lock(self.client, self.bucket, self._key, self._errors, lease_seconds)

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def _ensure_bucket(self) -> None:
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except self._errors.ClientError:
            try:
                self.client.create_bucket(Bucket=self.bucket)
            except self._errors.ClientError as exc:
                raise StoreError(f"cannot use bucket {self.bucket}: {exc}") from None
        except self._errors.BotoCoreError as exc:
            raise StoreError(f"cannot reach S3 store {self.location}: {exc}") from None

    def _missing(self, exc: Exception) -> bool:
        code = getattr(exc, "response", {}).get("Error", {}).get("Code", "")
        return code in {"404", "NoSuchKey", "NotFound"}

    @contextlib.contextmanager
    def _errors_as_store_errors(self, key: str) -> Iterator[None]:
        try:
            yield
        except self._errors.ClientError as exc:
            if self._missing(exc):
                raise KeyError(key) from None
            raise StoreError(f"S3 request for {key} failed: {exc}") from None
        except self._errors.BotoCoreError as exc:
            raise StoreError(f"cannot reach S3 store {self.location}: {exc}") from None

    def _put(self, key: str, parts: list[bytes | memoryview]) -> None:
        body = b"".join(parts)
        with self._errors_as_store_errors(key):
            self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=body)

    def _get(self, key: str, max_bytes: int | None = None) -> bytes:
        with self._errors_as_store_errors(key):
            reply = self.client.get_object(Bucket=self.bucket, Key=self._key(key))
            body = reply["Body"]
            try:
                if max_bytes is None:
                    return bytes(body.read())
                if int(reply.get("ContentLength", 0)) > max_bytes:
                    raise TooLargeError(int(reply["ContentLength"]))
                data = bytes(body.read(max_bytes + 1))  # never more than the cap, whatever
                if len(data) > max_bytes:  # the length header said
                    raise TooLargeError(len(data))
                return data
            finally:
                body.close()

    @contextlib.contextmanager
    def _read_into(self, key: str, max_bytes: int, pool: BufferPool) -> Iterator[memoryview]:
        yield memoryview(self._get(key, max_bytes))

    def _get_prefix(self, key: str, length: int) -> bytes:
        with self._errors_as_store_errors(key):
            reply = self.client.get_object(
                Bucket=self.bucket, Key=self._key(key), Range=f"bytes=0-{max(length, 1) - 1}"
            )
            return bytes(reply["Body"].read())

    def _get_ranges(self, key: str, ranges: list[tuple[int, int]]) -> list[bytes]:
        # one GET per span: ranges closer than RANGE_GAP (a grouped delta's window reads
        # a short prefix of every group's planes, side by side) share a request.
        wanted = [(offset, length) for offset, length in ranges if length > 0]
        fetched: dict[tuple[int, int], bytes] = {}
        for first, last, members in _spans(wanted, RANGE_GAP):
            with self._errors_as_store_errors(key):
                reply = self.client.get_object(
                    Bucket=self.bucket, Key=self._key(key), Range=f"bytes={first}-{last - 1}"
                )
                data = bytes(reply["Body"].read(last - first))
            for offset, length in members:
                fetched[(offset, length)] = data[offset - first : offset - first + length]
        return [fetched.get((offset, length), b"") for offset, length in ranges]

    def _exists(self, key: str) -> bool:
        try:
            with self._errors_as_store_errors(key):
                self.client.head_object(Bucket=self.bucket, Key=self._key(key))
        except KeyError:
            return False
        return True

    def _delete(self, key: str) -> None:
        with self._errors_as_store_errors(key):
            self.client.delete_object(Bucket=self.bucket, Key=self._key(key))

    def _list(self, prefix: str) -> Iterator[Entry]:
        strip = len(self._key(""))
        paginator = self.client.get_paginator("list_objects_v2")
        with self._errors_as_store_errors(prefix):
            for page in paginator.paginate(Bucket=self.bucket, Prefix=self._key(prefix)):
                for item in page.get("Contents", []):
                    yield Entry(item["Key"][strip:], item["Size"], item["LastModified"].timestamp())

    def _touch(self, key: str) -> None:
        # S3 objects are immutable; copying one onto itself renews its LastModified.
        with self._errors_as_store_errors(key):
            self.client.copy_object(
                Bucket=self.bucket,
                Key=self._key(key),
                CopySource={"Bucket": self.bucket, "Key": self._key(key)},
                MetadataDirective="REPLACE",
            )

    def lock(self, *, exclusive: bool) -> contextlib.AbstractContextManager[None]:
        return self._lock.hold(exclusive=exclusive)
