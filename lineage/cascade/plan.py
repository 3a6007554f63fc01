"""Planning a cascade: which descendants to re-derive, on which parents, in what order.

The plan is computed from already loaded versions and runs nothing (no DB, no I/O:
`lineage.cascade.build.build_plan` loads what it needs), so `lineage cascade --dry-run`
and the Prefect flow show and follow the very same plan. The rules:

- The nodes are the descendants (derivation edges) of the version being replaced,
  one node per model: a model reached through several of its versions is re-derived
  once, from its newest version in that set.
- A node's new parents, in its recorded parent order: the upstream's new version
  where the old version was the replaced one; the node's new version where the
  parent's model is re-derived by this plan (so the child waits for it); otherwise
  the newest version of the parent's model. A merge therefore waits for *all* of
  its re-derived parents and uses the newest version of each.
- A node without a recorded recipe cannot be re-derived: it is skipped, and so is
  whatever changes only through it.
- Levels group nodes whose parents all lie in earlier levels: one level's nodes are
  independent and may run in parallel.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from lineage.graph import walk
from lineage.records import VersionInfo

ParentSource = Literal["upstream", "plan", "newest"]
NodeAction = Literal["derive", "skip"]


@dataclass(frozen=True)
class PlanParent:
    """One parent of a planned node.

    `new_ref` is known at plan time for `upstream` and `newest` parents; for a `plan`
    parent it is whatever version the cascade makes of `model` (None until then).
    """

    old_ref: str
    model: str
    source: ParentSource
    new_ref: str | None


@dataclass(frozen=True)
class PlanNode:
    """One model of the cascade: the version it replaces and how to remake it."""

    model: str
    old_ref: str
    old_version_id: int
    kind: str | None
    recipe_id: str | None
    recipe_params: dict[str, Any]
    data_fingerprint: str | None
    parents: tuple[PlanParent, ...]
    action: NodeAction
    reason: str = ""
    level: int | None = None  # None for skipped nodes
    # What the version it replaces took to compute (its provenance), a guess at what
    # this derive will take: the scheduler starts the longest remaining work first.
    estimate_s: float | None = None

    @property
    def plan_parents(self) -> list[str]:
        """Models of this plan that must finish before this node can start."""
        return [p.model for p in self.parents if p.source == "plan"]

    def parent_refs(self, made: Mapping[str, str | None]) -> list[str]:
        """The versions to derive this node on, in its parent order: for a parent this
        plan re-derives, the version made of it (`made[model]`, which must be known);
        otherwise the one known at plan time."""
        refs = []
        for parent in self.parents:
            if parent.source == "plan":
                new_ref = made.get(parent.model)
                if new_ref is None:
                    raise ValueError(f"{self.model} started before {parent.model} was made")
                refs.append(new_ref)
            else:
                refs.append(parent.new_ref or parent.old_ref)
        return refs

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["parents"] = [asdict(p) for p in self.parents]
        return data


@dataclass
class CascadePlan:
    """The whole plan: nodes in topological order and their parallel levels."""

    upstream: str
    replaces: str
    nodes: list[PlanNode]
    levels: list[list[str]] = field(default_factory=list)
    # model -> version a previous run already made for this cascade (see `find_done`)
    done: dict[str, str] = field(default_factory=dict)

    @property
    def to_derive(self) -> list[PlanNode]:
        return [n for n in self.nodes if n.action == "derive"]

    @property
    def skipped(self) -> list[PlanNode]:
        return [n for n in self.nodes if n.action == "skip"]

    def node(self, model: str) -> PlanNode:
        for candidate in self.nodes:
            if candidate.model == model:
                return candidate
        raise KeyError(model)

    def children(self) -> dict[str, list[str]]:
        """model -> planned models that wait for it."""
        out: dict[str, list[str]] = defaultdict(list)
        for node in self.to_derive:
            for parent in node.plan_parents:
                out[parent].append(node.model)
        return dict(out)

    def subtree(self, model: str) -> list[str]:
        """Planned models that (transitively) wait for `model`, in plan order."""
        children = self.children()
        found: set[str] = set()
        stack = list(children.get(model, []))
        while stack:
            current = stack.pop()
            if current in found:
                continue
            found.add(current)
            stack.extend(children.get(current, []))
        return [n.model for n in self.to_derive if n.model in found]

    def heights(self) -> dict[str, int]:
        """Longest chain of waiting nodes below each node (itself counted): scheduling
        the tallest ready node first keeps the critical path moving."""
        children = self.children()
        height: dict[str, int] = {}
        for node in reversed(self.to_derive):
            height[node.model] = 1 + max(
                (height[c] for c in children.get(node.model, [])), default=0
            )
        return height

    def priorities(self) -> dict[str, float]:
        """Longest chain of estimated work (seconds) from each node down, itself
        included: the critical path runs through the ready node with the largest.

        A node's estimate is what the version it replaces took to compute; nodes
        without one count as the median of the others (1.0 when none is known, which
        makes this the node count of `heights`)."""
        known = sorted(n.estimate_s for n in self.to_derive if n.estimate_s is not None)
        default = known[len(known) // 2] if known else 1.0
        children = self.children()
        work: dict[str, float] = {}
        for node in reversed(self.to_derive):
            own = node.estimate_s if node.estimate_s is not None else default
            work[node.model] = own + max(
                (work[c] for c in children.get(node.model, [])), default=0.0
            )
        return work

    def to_dict(self) -> dict[str, Any]:
        return {
            "upstream": self.upstream,
            "replaces": self.replaces,
            "levels": self.levels,
            "nodes": [node.to_dict() for node in self.nodes],
            "to_derive": len(self.to_derive),
            "skipped": len(self.skipped),
            "done": self.done,
        }


def _recorded_seconds(version: VersionInfo) -> float | None:
    seconds = (version.extra or {}).get("derive_seconds")
    return float(seconds) if isinstance(seconds, int | float) and seconds >= 0 else None


def plan_from_graph(
    upstream: VersionInfo,
    replaces: VersionInfo,
    descendants: Iterable[VersionInfo],
    newest_ref: Callable[[str], str],
) -> CascadePlan:
    """Plan from already loaded versions (no DB access beyond `newest_ref(model)`).

    `descendants` are the versions below `replaces` (any order); `newest_ref` gives
    the newest version of a model outside the plan, e.g. `lambda m: "other@3"`.
    """
    # One node per model: its newest version among the descendants.
    chosen: dict[str, VersionInfo] = {}
    for version in descendants:
        current = chosen.get(version.model)
        if current is None or version.number > current.number:
            chosen[version.model] = version
    chosen.pop(upstream.model, None)  # versions of the upstream itself are never children
    ids = {v.id: v for v in chosen.values()}
    model_edges = []
    for version in chosen.values():
        for link in version.derivation_parents:
            parent_model = link.ref.split("@", 1)[0]
            if parent_model in chosen:
                model_edges.append((chosen[parent_model].id, version.id))
    order = [ids[i] for i in walk.topological_order(ids, model_edges)]

    nodes: dict[str, PlanNode] = {}
    for version in order:
        parents: list[PlanParent] = []
        for link in version.derivation_parents:
            parent_model = link.ref.split("@", 1)[0]
            if link.version_id == replaces.id:
                parents.append(PlanParent(link.ref, parent_model, "upstream", upstream.ref))
            elif parent_model in nodes and nodes[parent_model].action == "derive":
                parents.append(PlanParent(link.ref, parent_model, "plan", None))
            else:
                parents.append(
                    PlanParent(link.ref, parent_model, "newest", newest_ref(parent_model))
                )
        if not version.recipe_id:
            action: NodeAction = "skip"
            reason = "no recipe recorded (registered from weights), so it cannot be re-derived"
        elif not any(p.source in ("upstream", "plan") for p in parents):
            action, reason = "skip", "none of its parents gets a new version in this cascade"
        else:
            action, reason = "derive", ""
        nodes[version.model] = PlanNode(
            model=version.model,
            old_ref=version.ref,
            old_version_id=version.id,
            kind=version.kind,
            recipe_id=version.recipe_id,
            recipe_params=dict(version.recipe_params),
            data_fingerprint=version.data_fingerprint,
            parents=tuple(parents),
            action=action,
            reason=reason,
            estimate_s=_recorded_seconds(version),
        )

    derive = [n for n in nodes.values() if n.action == "derive"]
    index = {n.model: i for i, n in enumerate(derive)}
    level_edges = [(index[p], index[n.model]) for n in derive for p in n.plan_parents]
    levels = [
        sorted(derive[i].model for i in level)
        for level in walk.topological_levels(range(len(derive)), level_edges)
    ]
    depth = {model: d for d, models in enumerate(levels) for model in models}
    final = [PlanNode(**{**n.__dict__, "level": depth.get(n.model)}) for n in nodes.values()]
    return CascadePlan(upstream=upstream.ref, replaces=replaces.ref, nodes=final, levels=levels)
