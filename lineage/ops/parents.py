"""Parent checkouts shared by the steps of one cascade.

A step reads its parents from folders the host checks out for it. In a cascade many
nodes share a parent (every child of the new base, every child of a re-derived
fine-tune), and each checkout decodes the whole model again (about 0.3 s of CPU for
a BERT-size parent, more on a delta chain), on the same cores the steps compute on.
Inside `shared_parent_checkouts()`, `checkout_parent` checks each version out once,
makes the folder read-only and hands the same folder to every step that reads it;
two steps that need it at once wait for one checkout. A node re-derived in the
cascade hands its step's output folder over once committed (`offer_checkout`): its
children read that, and nothing is checked out for them. The folder moves to where
its children will read it as soon as the step ends (`settle_output`), before the
commit, so a child's step can start on it while the commit runs
(`lineage.cascade.headstart.ChildHeadStarts`). Outside it (a single `lineage add
--recipe`, a Dask worker process), each step gets its own checkout as before.

The folder is read-only to the steps by its permissions; a recipe is code the
workspace trusts (`lineage trust`), and the docker runner mounts parents read-only.
"""

from __future__ import annotations

import logging
import os
import shutil
import stat
import tempfile
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from lineage.workspace import Workspace

log = logging.getLogger(__name__)

_READ_ONLY_FILE = stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH
_READ_ONLY_DIR = _READ_ONLY_FILE | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH


class _SharedCheckouts:
    """Checkouts by manifest id under one temporary folder."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="lineage-parents-"))
        self.root.chmod(0o755)  # the docker runner's containers read below it
        self._guard = threading.Lock()
        self._locks: dict[str, threading.Lock] = {}
        self._done: dict[str, Path] = {}

    def get(self, workspace: Workspace, ref: str) -> Path:
        from lineage.ops.checkout import checkout

        version = workspace.resolve(ref)
        key = version.manifest_id
        with self._lock_of(key):
            found = self._done.get(key)
            if found is None:
                found = checkout(workspace, version.ref, self.root / key, keep_decoded=True)
                _set_modes(found, file_mode=_READ_ONLY_FILE, dir_mode=_READ_ONLY_DIR)
                self._done[key] = found
            return found

    def _lock_of(self, key: str) -> threading.Lock:
        """The lock that one checkout of manifest `key` is made (or adopted) under."""
        with self._guard:
            return self._locks.setdefault(key, threading.Lock())

    def settle(self, folder: Path) -> Path:
        """Move a step's output `folder` below the root (made read-only), where it stays
        until the end: the folder its children will read, known before its commit.
        `folder` itself if it cannot move (another file system, say) or the commit
        will refuse it (a link, a pickle: it does so with its own error)."""
        from lineage.errors import WeightsError
        from lineage.store.sources import check_weights_source

        try:
            check_weights_source(folder)
        except WeightsError:
            return folder
        target = self.root / f"step-{uuid.uuid4().hex}"
        try:
            os.rename(folder, target)
        except OSError:
            return folder
        _set_modes(target, file_mode=_READ_ONLY_FILE, dir_mode=_READ_ONLY_DIR)
        return target

    def adopt(self, key: str, folder: Path) -> None:
        """Take `folder` (moved, unless `settle` put it below the root already, and made
        read-only) as the checkout of manifest `key`."""
        with self._lock_of(key):
            if key in self._done:
                return
            if folder.parent == self.root:
                self._done[key] = folder  # settled: children may already read it there
                return
            target = self.root / key
            try:
                os.rename(folder, target)
            except OSError:
                return  # another file system, say: its children check it out instead
            _set_modes(target, file_mode=_READ_ONLY_FILE, dir_mode=_READ_ONLY_DIR)
            self._done[key] = target

    def close(self) -> None:
        _set_modes(self.root, file_mode=0o644, dir_mode=0o755)
        shutil.rmtree(self.root, ignore_errors=True)


def _set_modes(root: Path, *, file_mode: int, dir_mode: int) -> None:
    """Modes of every file and folder below `root` (folders last when locking, first
    when unlocking, so the walk can always enter them). Links are left alone: chmod
    would change what they point to (Linux cannot chmod a link itself)."""
    unlocking = dir_mode & stat.S_IWUSR
    if unlocking:
        os.chmod(root, dir_mode)
    for folder, dirs, files in os.walk(root, topdown=bool(unlocking)):
        for names, mode in ((files, file_mode), (dirs, dir_mode)):
            for name in names:
                path = os.path.join(folder, name)
                if not os.path.islink(path):
                    os.chmod(path, mode)
    if not unlocking:
        os.chmod(root, dir_mode)


_active: _SharedCheckouts | None = None
_active_guard = threading.Lock()


@contextmanager
def shared_parent_checkouts() -> Iterator[None]:
    """Share parent checkouts between the steps run in this process until exit (the
    folders are removed then). Nested uses share the outer one."""
    global _active
    with _active_guard:
        if _active is not None:
            owner = None
        else:
            owner = _active = _SharedCheckouts()
    try:
        yield
    finally:
        if owner is not None:
            with _active_guard:
                _active = None
            owner.close()


def settle_output(folder: Path) -> Path:
    """Inside `shared_parent_checkouts()`, move a step's output `folder` (about to be
    committed, then offered with `offer_checkout`) to the folder its children will
    read, and return that; outside, or for a LoRA adapter (never offered), `folder`."""
    shared = _active
    if shared is None or (folder / "adapter_config.json").exists():
        return folder
    return shared.settle(folder)


def offer_checkout(manifest_id: str, folder: Path) -> None:
    """Inside `shared_parent_checkouts()`, keep `folder` (a step's output, just
    committed as manifest `manifest_id`) as that version's shared checkout: its
    children read it instead of a checkout decoded (or re-made, for a derivable
    version) from the store. The commit stored exactly these files, except that a
    recipe-made LoRA adapter gets its base reference on checkout: such a folder is not
    taken. Outside a cascade, nothing happens (the caller removes the folder)."""
    shared = _active
    if shared is None or (folder / "adapter_config.json").exists():
        return
    shared.adopt(manifest_id, folder)


def prefetch_parent(open_workspace: Callable[[], Workspace], ref: str) -> None:
    """Inside `shared_parent_checkouts()`, start checking `ref` out in the background:
    a cascade's new upstream version, which every first node reads, while Prefect
    starts. A step that asks for it meanwhile waits for this checkout; a failure is
    left for that step to meet (and report) again."""
    shared = _active
    if shared is None:
        return

    def fetch() -> None:
        try:
            shared.get(open_workspace(), ref)
        except Exception as exc:  # the step checks it out itself, and says what failed
            log.debug("prefetching %s failed: %s", ref, exc)

    threading.Thread(target=fetch, name="lineage-prefetch", daemon=True).start()


def checkout_parent(workspace: Workspace, ref: str, own_dir: Path) -> Path:
    """The folder a step reads parent `ref` from: the shared checkout inside
    `shared_parent_checkouts()`, else a checkout of its own into `own_dir`. Either way
    the parent's decoded tensors stay in the store's cache (within its budget): the
    step's model is then committed with the parent as its delta base."""
    shared = _active
    if shared is None:
        from lineage.ops.checkout import checkout

        return checkout(workspace, ref, own_dir, keep_decoded=True)
    return shared.get(workspace, ref)
