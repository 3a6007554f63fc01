"""`ingest`: turn a model directory into stored objects and a `Manifest`.

Every file is listed and validated before anything is written (see `sources`: no
links, no special files, no pickles, well-formed safetensors headers), so bad input
leaves the store as it was. Then, file by file (shard by shard), each tensor is read
with ``pread`` into a private, recycled buffer, hashed as it is read, and encoded from
that same buffer in worker threads (hashing, numpy, zstandard and the C kernels release
the GIL). What is stored therefore always decodes to what was hashed, even if the
source is rewritten meanwhile; a source that changes or shrinks while it is read is a
`WeightsError`, never a SIGBUS or a silently unreadable version.

Memory stays flat as models grow: tensors are admitted by a byte budget (half the
store's `memory_bytes`), so at most a few tensors are in flight whatever the model's
size, and nothing maps whole files. A large side file (not safetensors) is stored the
same way, in pieces of `SIDE_FILE_PIECE` bytes (a ``chunked`` file entry), so it is
never held whole either.

For each tensor, in order:

1. exact dedup: an object with the same content hash is already stored; it is decoded
   from the backend and verified first (once per ingest), and rewritten from our bytes
   if damaged;
2. a delta against a candidate base (see `matching`): XOR, XOR with a zero mask (pruned
   tensors), or zigzag integer difference when a sample says it is smaller, or plain
   coding when that is smaller still. Each candidate is scored on three small windows of
   the tensor (read from byte ranges of the candidate, see `windows`); other layers'
   tensors of the same role only when no by-name base codes well. The winner is
   decoded in full and verified before anything is coded against it;
3. with `lossy`, a quantized delta with a stated error bound instead.

Objects are written to temp files and made durable before `ingest` returns, so a
manifest stored afterwards never names a missing object. The store's shared lock is
held throughout, and re-used objects get a fresh mtime, so a concurrent `gc` (exclusive
lock + grace period) cannot delete what this ingest relies on.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import logging
import os
import shutil
import tempfile
import threading
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lineage.errors import LineageError, WeightsError
from lineage.store import codec, groups, objects, planes, sketch
from lineage.store.backend import ObjectStore
from lineage.store.buffers import ByteBudget
from lineage.store.dtypes import FLOATS, cast_bits, itemsize, to_float64, uint_type
from lineage.store.manifest import FileEntry, Manifest, TensorEntry
from lineage.store.matching import BaseIndex, Candidate
from lineage.store.reader import read_bytes
from lineage.store.safetensors_format import SafetensorsLayout, TensorSlot, read_layout
from lineage.store.sources import OpenSource, SourceFile, list_files
from lineage.store.windows import read_windows

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]

#: plain coding only beats a delta that codes above this fraction of the raw size; a
#: by-name base doing worse than this makes us also try the same role in other layers.
PLAIN_WORTH_TRYING = 0.6
#: zigzag `sub` is taken over XOR when its sample codes below this fraction of XOR's
#: (the C kernels decode both in one pass, so only a tie goes to XOR).
SUB_MARGIN = 0.99
#: a float tensor whose sample says exponent groups pay (`groups.sample_gain`) takes
#: `gsub` over XOR when plain `sub`'s sample codes below this multiple of XOR's: the
#: grouping, which the sample's byte planes cannot show, made such deltas 5-30 %
#: smaller than `sub`, and smaller than XOR wherever `sub`'s sample was within 1.2 %.
GSUB_MARGIN = 1.1
#: the zero-mask XOR (`mxor`) is tried when more of the sample than this is exactly zero.
MASK_WORTH_TRYING = 0.02
#: tensors with fewer elements skip the sampling (biases, norms).
SMALL_TENSOR = 4096
#: a tensor is read (and hashed) in steps of this many bytes, each hashed while it is
#: still in the CPU cache from the read.
READ_STEP = 1 << 20
#: side files (config, tokenizer) up to this size are one object; larger ones are stored
#: in pieces of this size, streamed like tensors (and delta-coded piece by piece).
SIDE_FILE_PIECE = 64 << 20


@dataclass(frozen=True)
class LossyOptions:
    """Opt-in lossy storage: float tensors are stored as quantized deltas.

    Every stored value is within ``max_abs_error`` of the original, plus the rounding of
    the tensor's own dtype (half an ulp). Tensors with fewer than ``min_elements``
    elements (biases, norms) stay exact. The manifest records the bound and the measured
    error, and says the version is approximate.
    """

    max_abs_error: float = 1e-4
    min_elements: int = 4096

    def __post_init__(self) -> None:
        if not self.max_abs_error > 0:
            raise ValueError("max_abs_error must be positive")


@dataclass
class _Source:
    file: SourceFile
    layout: SafetensorsLayout | None

    @property
    def rel(self) -> str:
        return self.file.rel

    @property
    def size(self) -> int:
        return self.file.size


@dataclass
class _Outcome:
    entry: TensorEntry
    tokens: np.ndarray
    error: float = 0.0
    approximate: bool = False


@dataclass
class _Tally:
    errors: list[float] = field(default_factory=list)
    approximate: int = 0


def ingest(
    store: ObjectStore,
    src: Path,
    parents: Sequence[Manifest] = (),
    progress: Progress | None = None,
    rematerialize: Callable[[Path], None] | None = None,
    lossy: LossyOptions | None = None,
    *,
    derivation_spec: dict[str, Any] | None = None,
) -> Manifest:
    """Store a model directory (or one ``.safetensors`` file) and return its manifest.

    Args:
        store: where objects go.
        src: a Hugging Face / PEFT directory (sharded checkpoints included), or a single
            safetensors file.
        parents: candidate delta bases, best first: the derivation parents, the previous
            version of the same model, similar versions. Per tensor, the candidate
            whose delta codes smallest wins (or plain coding, when smaller still).
        progress: called as ``progress(done_bytes, total_bytes)``.
        rematerialize: for versions made by a deterministic recipe: called with an empty
            temp dir to re-make the version there. If the result is byte-identical to
            `src`, no tensor bytes are stored; the manifest keeps `derivation_spec` and
            `checkout` re-makes the files with its `materialize` callback.
        lossy: opt-in approximate storage (see `LossyOptions`).
        derivation_spec: the opaque spec stored for a derivable version.

    Raises:
        WeightsError: missing path, link or special file, pickle checkpoint, malformed
            safetensors, a source that changed while it was read.

    Example:
        >>> store = ws.store
        >>> m = ingest(store, write_tiny_weights(tmp / "w"), parents=[ws.manifest("base@1")])
        >>> sorted(t.name for _, t in store.get_manifest(store.put_manifest(m)).tensors())
        ['embeddings.weight', 'layer.0.bias', 'layer.0.weight']
    """
    src = Path(src)
    sources = _plan(src)
    total = sum(s.size for s in sources)
    with store.lock(exclusive=False), _cyclic_gc_paused():
        if rematerialize is not None and _remade_identically(store, sources, rematerialize):
            manifest = _store(store, sources, BaseIndex(store, []), None, total, progress, False)
            manifest.derivation = dict(derivation_spec or {})
        else:
            index = BaseIndex(store, list(parents))
            manifest = _store(store, sources, index, lossy, total, progress, True)
        store.flush()
    return manifest


_gc_lock = threading.Lock()
_gc_pausers = 0
_gc_was_enabled = False


@contextlib.contextmanager
def _cyclic_gc_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector while a version is stored.

    Encoding allocates many small containers (chunk tables, headers), which triggers
    collections that traverse every live object of the process, a large heap when torch
    and transformers are loaded; nothing made here forms reference cycles. Concurrent
    ingests in one process share the pause; the last one out restores the collector.
    """
    global _gc_pausers, _gc_was_enabled
    with _gc_lock:
        if _gc_pausers == 0:
            _gc_was_enabled = gc.isenabled()
            gc.disable()
        _gc_pausers += 1
    try:
        yield
    finally:
        with _gc_lock:
            _gc_pausers -= 1
            if _gc_pausers == 0 and _gc_was_enabled:
                gc.enable()


def _plan(src: Path) -> list[_Source]:
    """Every file with its validated layout, before anything is written."""
    out = []
    for file in list_files(src):
        layout = None
        if file.rel.endswith(".safetensors"):
            with OpenSource(file) as f:
                layout = read_layout(f)
        elif file.size > SIDE_FILE_PIECE:
            layout = _pieces(file.size)
        out.append(_Source(file, layout))
    return out


def _pieces(size: int) -> SafetensorsLayout:
    """A large side file as a header-less run of byte "tensors" (a ``chunked`` entry)."""
    slots = [
        TensorSlot(f"bytes@{start}", "U8", (min(SIDE_FILE_PIECE, size - start),), start, end)
        for start in range(0, size, SIDE_FILE_PIECE)
        for end in [min(start + SIDE_FILE_PIECE, size)]
    ]
    return SafetensorsLayout(header=b"", tensors=slots, metadata={})


def _remade_identically(
    store: ObjectStore, sources: list[_Source], rematerialize: Callable[[Path], None]
) -> bool:
    """Run the recipe into a temp dir; True if it re-made exactly the same files."""
    tmp = Path(tempfile.mkdtemp(prefix="lineage-remake-"))
    try:
        rematerialize(tmp)
        remade = list_files(tmp)
        if [f.rel for f in remade] != [s.rel for s in sources]:
            return False
        return all(_same_bytes(store, s.file, f) for s, f in zip(sources, remade, strict=True))
    except Exception as exc:  # a failing recipe only means: store the bytes instead
        log.warning("re-materialization failed, storing bytes instead: %s", exc)
        return False
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _same_bytes(store: ObjectStore, a: SourceFile, b: SourceFile) -> bool:
    if a.size != b.size:
        return False
    step = 16 << 20
    with (
        OpenSource(a) as fa,
        OpenSource(b) as fb,
        store.buffers.borrow(min(step, a.size)) as xa,
        store.buffers.borrow(min(step, a.size)) as xb,
    ):
        for pos in range(0, a.size, step):
            n = min(step, a.size - pos)
            fa.pread_into(xa[:n], pos)
            fb.pread_into(xb[:n], pos)
            # numpy compares in wide words: memoryview's `!=` went byte by byte here
            if not np.array_equal(np.frombuffer(xa[:n], np.uint8), np.frombuffer(xb[:n], np.uint8)):
                return False
    return True


def _store(
    store: ObjectStore,
    sources: list[_Source],
    index: BaseIndex,
    lossy: LossyOptions | None,
    total: int,
    progress: Progress | None,
    keep_tensors: bool,
) -> Manifest:
    """Hash (and, if `keep_tensors`, store) every file; returns the manifest."""
    encoder = _TensorEncoder(store, index, lossy, keep_tensors)
    budget = ByteBudget(store.memory_bytes // 2)
    failures: list[BaseException] = []
    done = 0
    files: list[FileEntry] = []
    tokens: list[np.ndarray] = []
    tally = _Tally()
    workers = store.workers or os.cpu_count() or 2
    # (file entry, its open source, one slot per tensor in data order) in file order
    in_flight: deque[tuple[FileEntry, OpenSource, list[Future[_Outcome] | None]]] = deque()

    def collect(block: bool) -> None:
        """Take the finished files off the front of the queue (in order)."""
        nonlocal done
        while in_flight:
            entry, handle, futures = in_flight[0]
            if not block and not all(f is not None and f.done() for f in futures):
                return
            for future in futures:
                assert future is not None
                outcome = future.result()
                entry.tensors.append(outcome.entry)
                tokens.append(outcome.tokens)
                if outcome.approximate:
                    tally.approximate += 1
                    tally.errors.append(outcome.error)
                done += outcome.entry.nbytes
            handle.check_unchanged()
            handle.close()
            in_flight.popleft()
            done += source_overhead(entry)
            if progress:
                progress(done, total)

    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ingest") as pool:
        try:
            for source in sources:
                if source.layout is None:
                    files.append(encoder.store_blob(source.file))
                    done += source.size
                    if progress:
                        progress(done, total)
                    continue
                kind = "safetensors" if source.rel.endswith(".safetensors") else "chunked"
                entry = FileEntry(source.rel, source.size, kind)
                entry.header_object = encoder.put_blob(source.layout.header)
                files.append(entry)
                handle = OpenSource(source.file)
                slots = source.layout.tensors
                futures: list[Future[_Outcome] | None] = [None] * len(slots)
                in_flight.append((entry, handle, futures))
                start = source.layout.data_start
                # biggest first, so one large embedding overlaps with many small tensors
                for i in sorted(range(len(slots)), key=lambda i: -slots[i].nbytes):
                    slot = slots[i]
                    amount = budget.take(encoder.footprint(slot))
                    if failures:
                        budget.give(amount)
                        raise failures[0]
                    submitted = pool.submit(encoder.encode, slot, handle, start, source.rel)
                    submitted.add_done_callback(
                        functools.partial(
                            _finished, amount=amount, budget=budget, failures=failures
                        )
                    )
                    futures[i] = submitted
                    collect(block=False)
            collect(block=True)
        except BaseException:
            for _, _, pending in in_flight:
                for queued in pending:
                    if queued is not None:
                        queued.cancel()
            pool.shutdown(wait=True)
            for _, handle, _ in in_flight:
                handle.close()
            raise
    if progress:
        progress(total, total)
    files.sort(key=lambda f: f.path)
    manifest = Manifest(files=files, sketch=sketch.bottom_k(tokens))
    if lossy is not None:
        manifest.lossy = {
            "max_abs_error": lossy.max_abs_error,
            "min_elements": lossy.min_elements,
            "approximate_tensors": tally.approximate,
            "measured_max_abs_error": max(tally.errors, default=0.0),
        }
    return manifest


def _finished(
    future: Future[_Outcome], amount: int, budget: ByteBudget, failures: list[BaseException]
) -> None:
    budget.give(amount)
    if not future.cancelled() and future.exception() is not None:
        failures.append(future.exception())  # type: ignore[arg-type]


def source_overhead(entry: FileEntry) -> int:
    """Bytes of a safetensors file that are not tensor data (its header)."""
    return entry.size - sum(t.nbytes for t in entry.tensors)


class _TensorEncoder:
    """Chooses and writes the encoding of one tensor (called from worker threads)."""

    def __init__(
        self, store: ObjectStore, index: BaseIndex, lossy: LossyOptions | None, keep: bool
    ) -> None:
        self.store = store
        self.index = index
        self.lossy = lossy
        self.keep = keep
        #: objects this ingest checked or wrote: dedup checks each one once
        self._verified: set[str] = set()

    def intact(self, oid: str, nbytes: int) -> bool:
        """Whether a stored object (and its whole delta chain) decodes to its id, read
        from the backend: dedup never trusts a damaged object, which is rewritten from
        the source's good bytes instead."""
        if oid in self._verified:
            return True
        try:
            read_bytes(self.store, oid, nbytes, fresh=True)
        except LineageError as exc:
            log.warning("object %s is damaged (%s): rewriting it from the source", oid, exc)
            return False
        self._verified.add(oid)
        return True

    def put_blob(self, data: bytes | memoryview) -> str:
        """Store a small file's bytes as one object (dedup verified); returns its id."""
        oid = self.store.object_id(data)
        if self.store.has_object(oid) and self.intact(oid, len(data)):
            self.store.refresh_object(oid)
        else:
            self.store.put_object(oid, objects.blob_parts(data))
            self._verified.add(oid)
        return oid

    def store_blob(self, source: SourceFile) -> FileEntry:
        """A side file (config, tokenizer) as one blob object."""
        with OpenSource(source) as f:
            data = f.read(0, source.size)
            f.check_unchanged()
        return FileEntry(source.rel, source.size, "blob", object=self.put_blob(data))

    @staticmethod
    def footprint(slot: TensorSlot) -> int:
        """Memory one tensor's encoding may hold at once: its bytes, a decoded base (or
        its cast), the coded parts, plus a chunk's temporaries."""
        return 3 * slot.nbytes + 3 * planes.CHUNK_BYTES

    def encode(self, slot: TensorSlot, source: OpenSource, data_start: int, rel: str) -> _Outcome:
        raw = self.store.cache.take(slot.nbytes)  # a private copy, in a recycled buffer
        hasher = self.store.new_hasher()
        view = raw.data
        for pos in range(0, slot.nbytes, READ_STEP):
            piece = view[pos : pos + READ_STEP]
            source.pread_into(piece, data_start + slot.begin + pos)
            hasher.update(piece)  # fused with the read: the bytes are still in cache
        oid = hasher.hexdigest()
        try:
            outcome, kept = self._encode(slot, raw, oid)
        except ValueError as exc:
            raise WeightsError(f"{rel}: cannot encode tensor {slot.name!r}: {exc}") from None
        if not kept:
            self.store.cache.recycle(raw)
        return outcome

    def _encode(self, slot: TensorSlot, raw: np.ndarray, oid: str) -> tuple[_Outcome, bool]:
        """The outcome, and whether `raw` was handed to the cache."""
        tokens = sketch.tensor_tokens(slot.name, slot.dtype, raw)
        entry = TensorEntry(slot.name, slot.dtype, list(slot.shape), oid, slot.nbytes, self.keep)
        if not self.keep:
            return _Outcome(entry, tokens), False
        cur = raw.view(uint_type(itemsize(slot.dtype)))
        if self._lossy_applies(slot, cur):
            outcome = self._encode_lossy(slot, cur, entry, tokens)
            if outcome is not None:
                return outcome, False
        if self.store.has_object(oid) and self.intact(oid, slot.nbytes):
            self.store.refresh_object(oid)
            return _Outcome(entry, tokens), False
        enc, base, pred = self._choose(slot, cur)
        chunks, parts = codec.encode_lossless(enc, cur, pred, slot.dtype)
        self._put(oid, slot, enc, base, chunks, parts)
        # a base for the next versions: the buffer is handed to the cache, not copied
        return _Outcome(entry, tokens), self.store.cache.put(oid, raw)

    def _full_pred(self, c: Candidate, dtype: str) -> np.ndarray:
        """A candidate decoded in full and verified, as bits of `dtype`."""
        base_bits = read_bytes(self.store, c.object_id, c.nbytes, keep=True)
        base_bits = base_bits.view(uint_type(itemsize(c.dtype)))
        return codec.Prediction(c.object_id, c.dtype, base_bits, 0).for_dtype(dtype)

    def _sample_pred(self, c: Candidate, dtype: str, picks: list[slice]) -> np.ndarray:
        """A candidate's prediction on the sample windows only (read from byte ranges)."""
        windows = read_windows(self.store, c.object_id, c.nbytes, picks)
        if c.dtype == dtype:
            return windows
        return cast_bits(windows, c.dtype, dtype)

    def _choose(
        self, slot: TensorSlot, cur: np.ndarray
    ) -> tuple[str, Candidate | None, np.ndarray | None]:
        """The smallest encoding on a sample: plain, or a delta against a candidate base.

        Every by-name candidate is scored with XOR (plus the zero mask when the sample
        has zeros); other layers' tensors of the same role only when no by-name base
        codes well (a distilled student). `sub` is checked on the winner and taken when
        smaller. A candidate that cannot be read (damaged) is skipped.
        """
        named = self.index.candidates(slot.name, slot.dtype, slot.shape, with_roles=False)
        if cur.size < SMALL_TENSOR:
            # a few kB at most: not worth sampling; a by-name base is nearly always best
            for c in named:
                with contextlib.suppress(LineageError):
                    return "xor", c, self._full_pred(c, slot.dtype)
            return "plain", None, None
        picks = codec.sample_picks(cur.size, cur.itemsize)
        sample = np.concatenate([cur[p] for p in picks])
        sample_bytes = sample.nbytes
        try_mask = float(np.count_nonzero(sample == 0)) > MASK_WORTH_TRYING * sample.size
        best_cost, best_enc = float("inf"), "plain"
        best_base: Candidate | None = None
        best_pred: np.ndarray | None = None
        tried: set[str] = set()
        for with_roles in (False, True):
            if with_roles and best_cost <= PLAIN_WORTH_TRYING * sample_bytes:
                break
            pool = (
                named
                if not with_roles
                else self.index.candidates(slot.name, slot.dtype, slot.shape, with_roles=True)
            )
            for c in pool:
                if c.object_id in tried:
                    continue
                tried.add(c.object_id)
                try:
                    pred = self._sample_pred(c, slot.dtype, picks)
                except LineageError as exc:
                    log.warning("skipping damaged delta base %s: %s", c.object_id, exc)
                    continue
                for enc in ("xor", "mxor") if try_mask else ("xor",):
                    cost = codec.sample_cost(enc, sample, pred)
                    if cost < best_cost:
                        best_cost, best_enc, best_base, best_pred = cost, enc, c, pred
        if best_pred is not None and best_enc == "xor":
            cost = codec.sample_cost("sub", sample, best_pred)
            grouped = groups.sample_gain(sample, best_pred, slot.dtype) >= groups.MIN_GAIN_BITS
            if cost < (GSUB_MARGIN if grouped else SUB_MARGIN) * best_cost:
                best_cost, best_enc = cost, "gsub" if grouped else "sub"
        if best_cost > PLAIN_WORTH_TRYING * sample_bytes:
            plain = codec.sample_cost("plain", sample, None)
            if plain < best_cost:
                return "plain", None, None
        if best_base is None:
            return "plain", None, None
        try:
            return best_enc, best_base, self._full_pred(best_base, slot.dtype)
        except LineageError as exc:  # its windows read, but the whole does not verify
            log.warning("skipping damaged delta base %s: %s", best_base.object_id, exc)
            return "plain", None, None

    def _put(
        self,
        oid: str,
        slot: TensorSlot,
        enc: str,
        base: Candidate | None,
        chunks: list[list[Any]],
        parts: list[objects.Part],
        step: float | None = None,
    ) -> None:
        depth = 0
        if base is not None:
            depth = int(self.store.object_header(base.object_id).get("depth", 0)) + 1
            self.store.refresh_object(base.object_id)
        header = objects.tensor_header(
            slot.dtype,
            slot.nbytes,
            enc,
            chunks,
            base=None if base is None else base.object_id,
            base_dtype=None if base is None else base.dtype,
            depth=depth,
            step=step,
        )
        self.store.put_object(oid, objects.pack(header, parts))
        self._verified.add(oid)

    def _lossy_applies(self, slot: TensorSlot, cur: np.ndarray) -> bool:
        return (
            self.lossy is not None
            and slot.dtype in FLOATS
            and cur.size >= self.lossy.min_elements
            and bool(np.isfinite(to_float64(cur[:1024], slot.dtype)).all())
        )

    def _encode_lossy(
        self, slot: TensorSlot, cur: np.ndarray, entry: TensorEntry, tokens: np.ndarray
    ) -> _Outcome | None:
        assert self.lossy is not None
        step = 2.0 * self.lossy.max_abs_error
        candidates = self.index.candidates(slot.name, slot.dtype, slot.shape, with_roles=False)
        base, pred = None, None
        for c in candidates:
            with contextlib.suppress(LineageError):
                base, pred = c, self._full_pred(c, slot.dtype)
                break
        coded = codec.encode_lossy(cur, pred, slot.dtype, step)
        if coded is None:
            return None
        chunks, parts, decoded, error = coded
        oid = self.store.object_id(decoded)
        approx = TensorEntry(slot.name, slot.dtype, list(slot.shape), oid, slot.nbytes, True)
        if not (self.store.has_object(oid) and self.intact(oid, slot.nbytes)):
            self._put(oid, slot, "qdelta", base, chunks, parts, step)
            self.store.cache.put(oid, decoded.view(np.uint8))
        else:
            self.store.refresh_object(oid)
        return _Outcome(approx, tokens, error, oid != entry.object)
