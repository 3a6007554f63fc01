"""`ingest`: turn a model directory into stored objects and a `Manifest`.

Every file is validated before anything is written, so bad input leaves the store as it
was. Tensors are then hashed and encoded in parallel threads straight from a read-only
mmap of each file (hashlib, numpy and zstandard release the GIL; nothing is copied into
memory but what one tensor's encoding needs). For each tensor, in order:

1. exact dedup: an object with the same content hash is already stored;
2. a delta against a candidate base (see `matching`): XOR, XOR with a zero mask (pruned
   tensors), or zigzag integer difference when a sample says it is clearly smaller, or
   plain coding when that is smaller still. Sampling looks at three small windows and
   scores other layers' tensors only when no by-name base codes well;
3. with `lossy`, a quantized delta with a stated error bound instead.

Objects are written temp → fsync → rename and the store is flushed before `ingest`
returns, so a manifest stored afterwards never names a missing object. The store's
shared lock is held throughout, and re-used objects get a fresh mtime, so a concurrent
`gc` (exclusive lock + grace period) cannot delete what this ingest relies on.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import mmap
import os
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lineage.errors import WeightsError
from lineage.store import codec, objects, sketch
from lineage.store.backend import ObjectStore
from lineage.store.dtypes import FLOATS, itemsize, to_float64, uint_type
from lineage.store.manifest import FileEntry, Manifest, TensorEntry
from lineage.store.matching import BaseIndex, Candidate
from lineage.store.reader import read_bytes
from lineage.store.safetensors_format import SafetensorsLayout, TensorSlot, read_layout
from lineage.store.scan import list_files

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]

#: plain coding only beats a delta that codes above this fraction of the raw size; a
#: by-name base doing worse than this makes us also try the same role in other layers.
PLAIN_WORTH_TRYING = 0.6
#: zigzag `sub` is taken over XOR only when its sample codes below this fraction of XOR's.
SUB_MARGIN = 0.92
#: the zero-mask XOR (`mxor`) is tried when more of the sample than this is exactly zero.
MASK_WORTH_TRYING = 0.02
#: tensors with fewer elements skip the sampling (biases, norms).
SMALL_TENSOR = 4096


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
    rel: str
    path: Path
    size: int
    layout: SafetensorsLayout | None


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
        src: a Hugging Face / PEFT directory, or a single safetensors file.
        parents: manifests to take deltas against, best first (direct parents, then
            other ancestors).
        progress: called as ``progress(done_bytes, total_bytes)``.
        rematerialize: for versions made by a deterministic recipe: called with an empty
            temp dir to re-make the version there. If the result is byte-identical to
            `src`, no tensor bytes are stored; the manifest keeps `derivation_spec` and
            `checkout` re-makes the files with its `materialize` callback.
        lossy: opt-in approximate storage (see `LossyOptions`).
        derivation_spec: the opaque spec stored for a derivable version.

    Raises:
        WeightsError: missing path, pickle checkpoint, malformed safetensors.

    Example:
        >>> m = ingest(store, Path("my-model"), parents=[store.get_manifest(pid)])  # doctest: +SKIP
        >>> mid = store.put_manifest(m)  # doctest: +SKIP
    """
    src = Path(src)
    sources = _plan(src)
    total = sum(s.size for s in sources)
    with store.lock(exclusive=False), _cyclic_gc_paused():
        if rematerialize is not None and _remade_identically(sources, rematerialize):
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
    for rel, path in list_files(src):
        size = path.stat().st_size
        layout = read_layout(path) if rel.endswith(".safetensors") else None
        out.append(_Source(rel, path, size, layout))
    return out


def _remade_identically(sources: list[_Source], rematerialize: Callable[[Path], None]) -> bool:
    """Run the recipe into a temp dir; True if it re-made exactly the same files."""
    tmp = Path(tempfile.mkdtemp(prefix="lineage-remake-"))
    try:
        rematerialize(tmp)
        remade = list_files(tmp)
        if [rel for rel, _ in remade] != [s.rel for s in sources]:
            return False
        return all(_same_bytes(s.path, path) for s, (_, path) in zip(sources, remade, strict=True))
    except Exception as exc:  # a failing recipe only means: store the bytes instead
        log.warning("re-materialization failed, storing bytes instead: %s", exc)
        return False
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _same_bytes(a: Path, b: Path) -> bool:
    if a.stat().st_size != b.stat().st_size:
        return False
    block = 16 << 20
    with a.open("rb") as fa, b.open("rb") as fb:
        while True:
            xa, xb = fa.read(block), fb.read(block)
            if xa != xb:
                return False
            if not xa:
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
    done = 0
    files: list[FileEntry] = []
    tokens: list[np.ndarray] = []
    tally = _Tally()
    maps: list[mmap.mmap] = []
    workers = store.workers or os.cpu_count() or 2
    try:
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ingest") as pool:
            pending: list[tuple[FileEntry, list[Future[_Outcome]]]] = []
            jobs: list[tuple[int, TensorSlot, memoryview, _Source, list[Future[_Outcome]]]] = []
            for source in sources:
                if source.layout is None:
                    files.append(_store_blob(store, source))
                    done += source.size
                    if progress:
                        progress(done, total)
                    continue
                entry = FileEntry(source.rel, source.size, "safetensors")
                entry.header_object = _put_blob(store, source.layout.header)
                futures: list[Future[_Outcome]] = []
                if source.layout.tensors and source.layout.tensors[-1].end > 0:
                    with source.path.open("rb") as f:
                        mm = _map_for_reading(f.fileno())
                    maps.append(mm)
                    view = memoryview(mm)[source.layout.data_start :]
                else:
                    view = memoryview(b"")
                for slot in source.layout.tensors:
                    jobs.append((slot.nbytes, slot, view[slot.begin : slot.end], source, futures))
                pending.append((entry, futures))
                files.append(entry)
            # biggest first, so one large embedding overlaps with many small tensors
            order = sorted(range(len(jobs)), key=lambda i: -jobs[i][0])
            placed: dict[int, Future[_Outcome]] = {}
            for i in order:
                _, slot, data, source, _ = jobs[i]
                placed[i] = pool.submit(encoder.encode, slot, data, source.rel)
            for i, (_, _, _, _, futures) in enumerate(jobs):
                futures.append(placed[i])
            for entry, futures in pending:
                for future in futures:
                    outcome = future.result()
                    entry.tensors.append(outcome.entry)
                    tokens.append(outcome.tokens)
                    if outcome.approximate:
                        tally.approximate += 1
                        tally.errors.append(outcome.error)
                    done += outcome.entry.nbytes
                    if progress:
                        progress(done, total)
                done += source_overhead(entry)
            if progress:
                progress(total, total)
    finally:
        for mm in maps:
            # a view may still be referenced by an exception traceback; the GC closes it then
            with contextlib.suppress(BufferError):
                mm.close()
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


def _map_for_reading(fd: int) -> mmap.mmap:
    """A read-only map of a whole file with its page tables filled in one call: every
    byte is read once anyway, and one populate costs far less than a fault per page."""
    flags = mmap.MAP_SHARED | getattr(mmap, "MAP_POPULATE", 0)
    return mmap.mmap(fd, 0, flags=flags, prot=mmap.PROT_READ)


def source_overhead(entry: FileEntry) -> int:
    """Bytes of a safetensors file that are not tensor data (its header)."""
    return entry.size - sum(t.nbytes for t in entry.tensors)


def _put_blob(store: ObjectStore, data: bytes | memoryview) -> str:
    oid = store.object_id(data)
    if store.has_object(oid):
        store.refresh_object(oid)
    else:
        store.put_object(oid, objects.blob_parts(data))
    return oid


def _store_blob(store: ObjectStore, source: _Source) -> FileEntry:
    data = source.path.read_bytes()
    if len(data) != source.size:
        raise WeightsError(f"{source.path} changed while being read")
    return FileEntry(source.rel, source.size, "blob", object=_put_blob(store, data))


class _TensorEncoder:
    """Chooses and writes the encoding of one tensor (called from worker threads)."""

    def __init__(
        self, store: ObjectStore, index: BaseIndex, lossy: LossyOptions | None, keep: bool
    ) -> None:
        self.store = store
        self.index = index
        self.lossy = lossy
        self.keep = keep

    def encode(self, slot: TensorSlot, data: memoryview, rel: str) -> _Outcome:
        try:
            return self._encode(slot, data)
        except ValueError as exc:  # e.g. the file shrank under the mmap
            raise WeightsError(f"{rel}: cannot read tensor {slot.name!r}: {exc}") from None

    def _encode(self, slot: TensorSlot, data: memoryview) -> _Outcome:
        oid = self.store.object_id(data)
        raw = np.frombuffer(data, dtype=np.uint8)
        tokens = sketch.tensor_tokens(slot.name, slot.dtype, raw)
        entry = TensorEntry(slot.name, slot.dtype, list(slot.shape), oid, slot.nbytes, self.keep)
        if not self.keep:
            return _Outcome(entry, tokens)
        cur = raw.view(uint_type(itemsize(slot.dtype)))
        if self._lossy_applies(slot, cur):
            outcome = self._encode_lossy(slot, cur, entry, tokens)
            if outcome is not None:
                return outcome
        if self.store.has_object(oid):
            self.store.refresh_object(oid)
            return _Outcome(entry, tokens)
        enc, base, pred = self._choose(slot, cur)
        chunks, parts = codec.encode_lossless(enc, cur, pred)
        self._put(oid, slot, enc, base, chunks, parts)
        # a base for the next versions: kept decoded, in a recycled buffer when one fits
        copy = self.store.cache.take(raw.nbytes)
        copy[:] = raw
        self.store.cache.put(oid, copy)
        return _Outcome(entry, tokens)

    def _candidates_pred(self, c: Candidate, dtype: str) -> np.ndarray:
        base_bits = read_bytes(self.store, c.object_id).view(uint_type(itemsize(c.dtype)))
        return codec.Prediction(c.object_id, c.dtype, base_bits, 0).for_dtype(dtype)

    def _sample_pred(self, c: Candidate, dtype: str, picks: list[slice]) -> np.ndarray:
        """A candidate's prediction on the sample windows only (no full-size cast)."""
        base_bits = read_bytes(self.store, c.object_id).view(uint_type(itemsize(c.dtype)))
        windows = np.concatenate([base_bits[p] for p in picks])
        return codec.Prediction(c.object_id, c.dtype, windows, 0).for_dtype(dtype)

    def _choose(
        self, slot: TensorSlot, cur: np.ndarray
    ) -> tuple[str, Candidate | None, np.ndarray | None]:
        """The smallest encoding on a sample: plain, or a delta against a candidate base.

        Every by-name candidate is scored with XOR (plus the zero mask when the sample
        has zeros); other layers' tensors of the same role only when no by-name base
        codes well (a distilled student). `sub` is checked on the winner and only taken
        when clearly smaller, since XOR decodes in one pass.
        """
        named = self.index.candidates(slot.name, slot.dtype, slot.shape, with_roles=False)
        if cur.size < SMALL_TENSOR:
            # a few kB at most: not worth sampling; a by-name base is nearly always best
            if named:
                return "xor", named[0], self._candidates_pred(named[0], slot.dtype)
            return "plain", None, None
        picks = codec.sample_windows(cur.size)
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
                pred = self._sample_pred(c, slot.dtype, picks)
                for enc in ("xor", "mxor") if try_mask else ("xor",):
                    cost = codec.sample_cost(enc, sample, pred)
                    if cost < best_cost:
                        best_cost, best_enc, best_base, best_pred = cost, enc, c, pred
        if best_base is not None and best_enc == "xor":
            cost = codec.sample_cost("sub", sample, best_pred)
            if cost < SUB_MARGIN * best_cost:
                best_cost, best_enc = cost, "sub"
        if best_cost > PLAIN_WORTH_TRYING * sample_bytes:
            plain = codec.sample_cost("plain", sample, None)
            if plain < best_cost:
                return "plain", None, None
        if best_base is None:
            return "plain", None, None
        return best_enc, best_base, self._candidates_pred(best_base, slot.dtype)

    def _put(
        self,
        oid: str,
        slot: TensorSlot,
        enc: str,
        base: Candidate | None,
        chunks: list[list],
        parts: list[bytes],
        step: float | None = None,
    ) -> None:
        header: dict[str, Any] = {
            "kind": "tensor",
            "dtype": slot.dtype,
            "n": slot.nbytes,
            "enc": enc,
            "depth": 0,
            "chunks": chunks,
        }
        if base is not None:
            header["base"] = base.object_id
            header["base_dtype"] = base.dtype
            header["depth"] = int(self.store.object_header(base.object_id).get("depth", 0)) + 1
            self.store.refresh_object(base.object_id)
        if step is not None:
            header["step"] = step
        self.store.put_object(oid, objects.pack(header, parts))

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
        base = candidates[0] if candidates else None
        pred = None if base is None else self._candidates_pred(base, slot.dtype)
        coded = codec.encode_lossy(cur, pred, slot.dtype, step)
        if coded is None:
            return None
        chunks, parts, decoded = coded
        error = float(np.max(np.abs(to_float64(decoded, slot.dtype) - to_float64(cur, slot.dtype))))
        oid = self.store.object_id(decoded)
        approx = TensorEntry(slot.name, slot.dtype, list(slot.shape), oid, slot.nbytes, True)
        if self.store.has_object(oid):
            self.store.refresh_object(oid)
        else:
            self._put(oid, slot, "qdelta", base, chunks, parts, step)
            self.store.cache.put(oid, decoded.view(np.uint8))
        return _Outcome(approx, tokens, error, oid != entry.object)
