"""Memory the store re-uses, and the budget that bounds what it holds at once.

`BufferPool` hands out byte buffers for reads (``pread`` of objects and of source
tensors) and takes them back: memory the process already touched is markedly faster to
fill than fresh pages, which the kernel must zero first. `ByteBudget` admits work by the
memory it will need, so ingest holds a bounded number of tensors in flight whatever the
model's size.
"""

from __future__ import annotations

import bisect
import contextlib
import sys
import threading
from collections.abc import Iterator


class BufferPool:
    """Recycled ``bytearray`` buffers, at most `keep_bytes` of them kept while idle."""

    def __init__(self, keep_bytes: int) -> None:
        self.keep_bytes = keep_bytes
        self._free: list[tuple[int, int, bytearray]] = []  # (size, serial, buffer), sorted
        self._kept = 0
        self._serial = 0
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def borrow(self, nbytes: int) -> Iterator[memoryview]:
        """A writable view of exactly `nbytes` bytes, valid inside the block only.

        A buffer that something still refers to after the block (a view kept past it,
        an array made from one) is not recycled: its bytes stay as they are.
        """
        buffer = self._take(nbytes)
        view = memoryview(buffer)[:nbytes]
        try:
            yield view
        finally:
            with contextlib.suppress(BufferError):  # an export of the view itself
                view.release()
            del view
            self._give_back(buffer)

    def _take(self, nbytes: int) -> bytearray:
        with self._lock:
            # the smallest idle buffer that fits, unless it is far larger than needed
            i = bisect.bisect_left(self._free, (nbytes, -1))
            if i < len(self._free) and self._free[i][0] <= 2 * nbytes + (1 << 20):
                size, _, buffer = self._free.pop(i)
                self._kept -= size
                return buffer
        return bytearray(nbytes)

    def _give_back(self, buffer: bytearray) -> None:
        # Referenced from nowhere else: the borrower's frame, this argument, getrefcount's.
        # Any view still alive (slices included) holds one more.
        if sys.getrefcount(buffer) > 3:
            return
        size = len(buffer)
        with self._lock:
            if size > self.keep_bytes:
                return
            while self._kept + size > self.keep_bytes and self._free:
                dropped, _, _ = self._free.pop(0)  # drop the smallest: the cheapest to redo
                self._kept -= dropped
            self._serial += 1
            bisect.insort(self._free, (size, self._serial, buffer))
            self._kept += size

    @property
    def idle_bytes(self) -> int:
        """Bytes held by idle buffers."""
        return self._kept


class ByteBudget:
    """A counting semaphore in bytes: `take` blocks until the bytes are free.

    A request larger than the whole budget is admitted alone (when nothing else is in
    flight), so one huge tensor slows ingest down instead of deadlocking it.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = max(1, capacity)
        self._used = 0
        self._cond = threading.Condition()

    def take(self, nbytes: int) -> int:
        """Wait for `nbytes` (capped at the capacity); returns what to give back."""
        amount = min(nbytes, self.capacity)
        with self._cond:
            while self._used + amount > self.capacity:
                self._cond.wait()
            self._used += amount
        return amount

    def give(self, amount: int) -> None:
        """Return what `take` handed out."""
        with self._cond:
            self._used -= amount
            self._cond.notify_all()
