"""Which stored tensors could predict a new tensor: the delta-base candidates.

Candidates come from the candidate manifests (derivation parents, the previous version
of the same model, similar versions), best first: the same name in each, then the same
name once wrapper prefixes are stripped (``bert.encoder...`` vs ``encoder...``), then
the same role in another layer (``layer.4.attention...`` for ``layer.2.attention...``,
what a distilled student was initialised from). Tensors match by name across files, so
a checkpoint re-sharded differently still finds its bases. Only tensors of the same
shape, a dtype that can predict ours, and that are stored qualify.

Delta chains stay bounded: a candidate whose chain leaves no room for one more link
(`ObjectStore.max_chain_depth`) is replaced by the first object down its chain that
does (the same tensor in an earlier version), so a long run of committed versions keeps
coding each one as a delta instead of falling back to a full copy.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass

from lineage.errors import StoreError
from lineage.store.backend import ObjectStore
from lineage.store.codec import can_predict
from lineage.store.dtypes import ITEMSIZE
from lineage.store.manifest import Manifest

#: leading name components that only say which wrapper class saved the weights.
WRAPPERS = frozenset(
    {"bert", "roberta", "distilbert", "model", "base_model", "transformer", "auto_model", "0"}
)
_LAYER_NUMBER = re.compile(r"(?<=\.)\d+(?=\.)")


def normalize(name: str) -> str:
    """`name` without wrapper prefixes or PEFT's ``base_layer`` indirection."""
    parts = name.replace(".base_layer.", ".").split(".")
    while len(parts) > 1 and parts[0] in WRAPPERS:
        parts = parts[1:]
    return ".".join(parts)


def role(name: str) -> str:
    """`normalize(name)` with layer numbers wildcarded: the tensor's role in any layer."""
    return _LAYER_NUMBER.sub("*", normalize(name))


@dataclass(frozen=True)
class Candidate:
    """A stored tensor that may serve as a delta base."""

    object_id: str
    dtype: str
    shape: tuple[int, ...]
    by_name: bool  # matched by name (True) or only by role in another layer

    @property
    def nbytes(self) -> int:
        """Decoded size of the candidate."""
        count = 1
        for d in self.shape:
            count *= d
        return count * ITEMSIZE[self.dtype]


class BaseIndex:
    """Look-up of candidate bases among the parents' tensors."""

    def __init__(self, store: ObjectStore, parents: list[Manifest], max_role_matches: int = 6):
        self.store = store
        self.max_role_matches = max_role_matches
        self._by_name: dict[str, list[Candidate]] = defaultdict(list)
        self._by_norm: dict[str, list[Candidate]] = defaultdict(list)
        self._by_role: dict[str, list[Candidate]] = defaultdict(list)
        for parent in parents:
            for _, t in parent.tensors():
                c = Candidate(t.object, t.dtype, tuple(t.shape), True)
                self._by_name[t.name].append(c)
                self._by_norm[normalize(t.name)].append(c)
                self._by_role[role(t.name)].append(
                    Candidate(t.object, t.dtype, tuple(t.shape), False)
                )

    def candidates(
        self, name: str, dtype: str, shape: tuple[int, ...], *, with_roles: bool
    ) -> list[Candidate]:
        """Usable bases for a tensor, best first, without duplicates."""
        pools = [self._by_name.get(name, []), self._by_norm.get(normalize(name), [])]
        if with_roles:
            pools.append(self._by_role.get(role(name), [])[: self.max_role_matches * 4])
        seen: set[str] = set()
        out: list[Candidate] = []
        for pool in pools:
            for c in pool:
                if c.object_id in seen or c.shape != shape or not can_predict(c.dtype, dtype):
                    continue
                seen.add(c.object_id)
                usable = self._within_depth(c)
                if (
                    usable is not None
                    and can_predict(usable.dtype, dtype)
                    and (usable.object_id == c.object_id or usable.object_id not in seen)
                ):
                    seen.add(usable.object_id)
                    out.append(usable)
        return out

    def _within_depth(self, c: Candidate) -> Candidate | None:
        """`c`, or the first object down its delta chain that one more link may extend."""
        for _ in range(self.store.max_chain_depth + 64):
            if not self.store.has_object(c.object_id):
                return None  # e.g. a tensor of a derivable version: never stored
            try:
                header = self.store.object_header(c.object_id)
                depth = int(header.get("depth", 0))
            except (StoreError, TypeError, ValueError):
                return None  # unreadable: not a base
            if depth + 1 <= self.store.max_chain_depth:
                return c
            base = header.get("base")
            base_dtype = header.get("base_dtype", c.dtype)
            if not base or base_dtype not in ITEMSIZE:
                return None
            c = Candidate(base, base_dtype, c.shape, c.by_name)
        return None
