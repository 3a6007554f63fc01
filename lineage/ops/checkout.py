"""`checkout`: write a version's Hugging Face directory, bit-exactly, safely.

The files are written to a sibling staging folder and appear at the target only once
complete. A target that already holds files is replaced only with `force`, and only
when it is an earlier lineage checkout (it carries the `.lineage-checkout` marker) —
or with `replace_any`, any directory except the ones whose loss would be a disaster:
the workspace, the current directory or one of its ancestors, the home directory.
The old tree is renamed aside before the new one is renamed in, so a crash between
the two steps loses nothing.

By default the bytes come out exactly as stored. With `loadable` (what the CLI does
unless `--raw`), the folder is made to load with stock transformers/PEFT
(`lineage.recipes.stock`): int8 weights dequantized to float32, an adapter's config
naming its base ref; `with_base` also writes an adapter's base into `DIR/base` and
points the adapter at it, so `AutoPeftModel...from_pretrained(DIR)` works offline.

>>> out = checkout(ws, "ft@1", tmp / "ft-out")
>>> sorted(p.name for p in out.iterdir())
['.lineage-checkout', 'config.json', 'model.safetensors', 'special_tokens_map.json',
 'tokenizer.json', 'tokenizer_config.json', 'vocab.txt']
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lineage.errors import UsageError
from lineage.formats import CHECKOUT_MARKER as MARKER

if TYPE_CHECKING:
    from lineage.store import Manifest
    from lineage.workspace import Workspace

ByteProgress = Callable[[int, int], None]


def checkout(
    workspace: Workspace,
    ref: str,
    out_dir: str | Path,
    *,
    progress: ByteProgress | None = None,
    force: bool = False,
    replace_any: bool = False,
    loadable: bool = False,
    with_base: bool = False,
    keep_decoded: bool = False,
) -> Path:
    """Write the version's files to `out_dir` (see the module docstring); the path.
    `keep_decoded`: see `lineage.store.checkout`."""
    version = workspace.resolve(ref)
    target = Path(out_dir).expanduser().absolute()
    check_target(workspace, target, force=force, replace_any=replace_any)
    manifest = workspace.store.get_manifest(version.manifest_id)
    base = version.derivation_parents[0] if version.derivation_parents else None
    if with_base:
        is_adapter = any(f.path == "adapter_config.json" for f in manifest.files)
        if not (is_adapter and base is not None):
            what = "an adapter without parents" if is_adapter else "a full model"
            raise UsageError(
                "--with-base needs a LoRA adapter version with a parent to use as its base; "
                f"{version.ref} is {what}"
            )
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".lineage-checkout-", dir=target.parent))
    try:
        write_manifest(
            workspace,
            manifest,
            staging,
            label=version.ref,
            progress=progress,
            keep_decoded=keep_decoded,
        )
        if loadable or with_base:
            _make_loadable(workspace, staging, target, base.ref if base else None, with_base)
        marker = {"ref": version.ref, "manifest_id": version.manifest_id}
        (staging / MARKER).write_text(json.dumps(marker) + "\n")
        _normal_modes(staging)
        _swap_in(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


def _make_loadable(
    workspace: Workspace, staging: Path, target: Path, base_ref: str | None, with_base: bool
) -> None:
    """Rewrite a fresh checkout so stock tools load it (see `lineage.recipes.stock`)."""
    from lineage.recipes.stock import BASE_DIR, attach_base, make_loadable

    make_loadable(staging, base_ref=base_ref)
    if with_base and base_ref is not None:
        base_dir = staging / BASE_DIR
        write_manifest(workspace, workspace.manifest(base_ref), base_dir, label=base_ref)
        make_loadable(base_dir, base_ref=None)
        attach_base(staging, base_dir, recorded_path=target / BASE_DIR)


def write_manifest(
    workspace: Workspace,
    manifest: Manifest,
    out_dir: Path,
    *,
    label: str | None = None,
    progress: ByteProgress | None = None,
    keep_decoded: bool = False,
) -> None:
    """Decode a manifest's files into `out_dir` (derivable versions are re-made);
    `keep_decoded`: see `lineage.store.checkout`."""
    from lineage.store import checkout as store_checkout

    store_checkout(
        workspace.store,
        manifest,
        out_dir,
        progress=progress,
        materialize=materializer(workspace),
        label=label,
        keep_decoded=keep_decoded,
    )


def materializer(workspace: Workspace) -> Callable[[dict[str, Any], Path], None]:
    """The store's callback that re-makes a derivable version from its recipe."""
    from lineage.ops.derive import materialize

    return lambda spec, out_dir: materialize(workspace, spec, out_dir)


def check_target(workspace: Workspace, target: Path, *, force: bool, replace_any: bool) -> None:
    """Refuse, before anything is written, a target whose replacement could lose data."""
    resolved = target.resolve()
    protected = {
        "the workspace": workspace.root.resolve(),
        "the current directory": Path.cwd().resolve(),
        "your home directory": Path.home().resolve(),
    }
    for what, path in protected.items():
        if resolved == path or resolved in path.parents:
            raise UsageError(f"refusing to check out into {target}: it holds {what} ({path})")
    if workspace.lineage_dir.resolve() in resolved.parents:
        raise UsageError(f"refusing to check out into {target}: it is inside the workspace's data")
    if target.is_symlink() or (target.exists() and not target.is_dir()):
        raise UsageError(f"checkout target {target} exists and is not a directory")
    if not target.exists() or not any(target.iterdir()):
        return
    if not (force or replace_any):
        raise UsageError(f"checkout target {target} is not empty (pass --force to replace)")
    if not replace_any and not (target / MARKER).is_file():
        raise UsageError(
            f"checkout target {target} is not an earlier lineage checkout (no {MARKER}); "
            "pass --replace-any to replace it anyway"
        )


def _swap_in(staging: Path, target: Path) -> None:
    """Rename the old tree aside, the new one in, then delete the old one."""
    aside = None
    if target.exists():
        aside = Path(tempfile.mkdtemp(prefix=".lineage-replaced-", dir=target.parent))
        os.replace(target, aside / "old")
    try:
        os.replace(staging, target)
    except BaseException:
        if aside is not None:
            os.replace(aside / "old", target)
            aside.rmdir()
        raise
    if aside is not None:
        shutil.rmtree(aside, ignore_errors=True)


def _normal_modes(folder: Path) -> None:
    """Checkouts get the modes of a normally made folder (mkdtemp made it 0700)."""
    umask = os.umask(0)
    os.umask(umask)
    folder.chmod(0o777 & ~umask)
    for root, dirs, files in os.walk(folder):
        for name in dirs:
            os.chmod(os.path.join(root, name), 0o777 & ~umask)
        for name in files:
            os.chmod(os.path.join(root, name), 0o666 & ~umask)
