"""Which stored versions a new version is delta-coded against: the rule, in one place.

Candidates, best first: the previous version of the same model (an upstream update or
a continued fine-tune is closest to it), the derivation parents, then the versions most
similar to the new weights (what ``--parent auto`` suggests; see `similar`). Ingest
then picks, per tensor, the candidate whose delta codes smallest (see `ingest`), so an
extra candidate costs a little sampling, never a worse result.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from lineage.errors import StoreError
from lineage.store.backend import ObjectStore
from lineage.store.manifest import Manifest
from lineage.store.similar import find_similar

log = logging.getLogger(__name__)

#: similar versions taken as candidates: at most this many, scoring at least this much.
SUGGESTIONS = 3
SUGGESTION_MIN_SCORE = 0.25


def delta_bases(
    store: ObjectStore,
    source: Path,
    *,
    previous: str | None,
    parents: Sequence[str],
    others: dict[str, str],
) -> list[Manifest]:
    """The candidate base manifests of a new version made from `source`.

    Args:
        previous: manifest id of the model's latest version (None for a new model).
        parents: manifest ids of the derivation parents.
        others: label -> manifest id of versions to look for similar weights in
            (typically every model's latest version).

    A manifest that cannot be read is left out with a warning: a damaged candidate
    only costs compression (`store verify` reports it).
    """
    ids = ([previous] if previous else []) + list(parents)
    similar = find_similar(store, source, others, limit=SUGGESTIONS)
    ids += [others[label] for label, score in similar if score >= SUGGESTION_MIN_SCORE]
    bases = []
    for mid in dict.fromkeys(ids):
        try:
            bases.append(store.get_manifest(mid))
        except StoreError as exc:
            log.warning("not using manifest %s as a delta base: %s", mid, exc)
    return bases
