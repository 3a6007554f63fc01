"""Planning a cascade: which descendants to re-derive, on which parents, in what order.

The plan is computed from the graph alone and runs nothing, so `lineage cascade
--dry-run` and the Prefect flow show and follow the very same plan.

Rules (issue 5):

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
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from lineage import graph
from lineage.errors import UsageError
from lineage.records import VersionInfo

if TYPE_CHECKING:
    from lineage.workspace import Workspace

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

    @property
    def plan_parents(self) -> list[str]:
        """Models of this plan that must finish before this node can start."""
        return [p.model for p in self.parents if p.source == "plan"]

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

    def describe(self) -> list[str]:
        """Plain-text lines of the plan (what `--dry-run` prints)."""
        lines = [
            f"cascade {self.replaces} -> {self.upstream}: {len(self.to_derive)} to re-derive "
            f"in {len(self.levels)} level(s), {len(self.skipped)} skipped"
            + (f", {len(self.done)} already done (reused)" if self.done else "")
        ]
        by_model = {n.model: n for n in self.nodes}
        for depth, models in enumerate(self.levels):
            lines.append(f"level {depth} ({len(models)} in parallel):")
            for model in models:
                node = by_model[model]
                parents = ", ".join(_parent_label(p) for p in node.parents)
                target = f"{self.done[model]} (done)" if model in self.done else f"{model}@next"
                lines.append(
                    f"  {node.old_ref} -> {target}  [{node.recipe_id} ({node.kind}) on {parents}]"
                )
        for node in self.skipped:
            lines.append(f"skipped: {node.old_ref}: {node.reason}")
        return lines

    def mermaid(self, status: dict[str, str] | None = None) -> str:
        """The lineage subtree as a Mermaid flowchart; `status` colours nodes."""
        status = status or {}

        def node_id(name: str) -> str:
            return "n_" + "".join(ch if ch.isalnum() else "_" for ch in name)

        upstream_model = self.upstream.split("@", 1)[0]
        lines = [
            "flowchart TD",
            f'  {node_id(upstream_model)}["{self.replaces} → {self.upstream}"]',
        ]
        for node in self.nodes:
            label = f"{node.old_ref} → {status.get(node.model, node.action)}"
            lines.append(f'  {node_id(node.model)}["{label}"]')
        for node in self.nodes:
            for parent in node.parents:
                if parent.source == "newest":
                    continue
                source = upstream_model if parent.source == "upstream" else parent.model
                lines.append(f"  {node_id(source)} --> {node_id(node.model)}")
        classes = {
            "promoted": "fill:#c8f7c5",
            "candidate": "fill:#e3f7c5",
            "failed": "fill:#f7c5c5",
            "blocked": "fill:#eeeeee",
            "skip": "fill:#f7f3c5",
            "skipped": "fill:#f7f3c5",
        }
        for name, style in classes.items():
            members = [
                node_id(n.model) for n in self.nodes if status.get(n.model, n.action) == name
            ]
            if members:
                lines.append(f"  classDef {name} {style}")
                lines.append(f"  class {','.join(members)} {name}")
        return "\n".join(lines)

    def find_done(self, workspace: Workspace) -> dict[str, str]:
        """Fill `done`: nodes a previous (crashed or finished) run of this cascade
        already derived, found in the derive cache as the flow would find them. A node
        counts only when its planned parents are done too (its inputs are known)."""
        from lineage.cascade import cache

        made: dict[str, str] = {}
        for node in self.to_derive:
            if any(parent not in made for parent in node.plan_parents):
                continue
            refs = [
                made[p.model] if p.source == "plan" else (p.new_ref or p.old_ref)
                for p in node.parents
            ]
            key = cache.cache_key(
                node.model, node.recipe_id, node.recipe_params, refs, node.data_fingerprint
            )
            found = cache.lookup(workspace, key) or cache.find_existing(
                workspace,
                node.model,
                node.recipe_id,
                node.recipe_params,
                refs,
                node.data_fingerprint,
            )
            if found is not None:
                made[node.model] = found.ref
        self.done = made
        return made


def _parent_label(parent: PlanParent) -> str:
    if parent.source == "plan":
        return f"{parent.model}@next"
    return parent.new_ref or parent.old_ref


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
    order = [ids[i] for i in graph.topological_order(ids, model_edges)]

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
        )

    derive = [n for n in nodes.values() if n.action == "derive"]
    index = {n.model: i for i, n in enumerate(derive)}
    level_edges = [(index[p], index[n.model]) for n in derive for p in n.plan_parents]
    levels = [
        sorted(derive[i].model for i in level)
        for level in graph.topological_levels(range(len(derive)), level_edges)
    ]
    depth = {model: d for d, models in enumerate(levels) for model in models}
    final = [PlanNode(**{**n.__dict__, "level": depth.get(n.model)}) for n in nodes.values()]
    return CascadePlan(upstream=upstream.ref, replaces=replaces.ref, nodes=final, levels=levels)


def default_replaced(workspace: Workspace, upstream: VersionInfo) -> VersionInfo:
    """The version `upstream` replaces by default: its previous version."""
    previous = upstream.previous_version
    if previous is not None:
        return workspace.version_by_id(previous.version_id)
    if upstream.number > 1:
        return workspace.resolve(f"{upstream.model}@{upstream.number - 1}")
    raise UsageError(
        f"{upstream.ref} is the first version of {upstream.model!r}: nothing to replace "
        "(pass --replaces REF to say which version it supersedes)"
    )


def build_plan(workspace: Workspace, upstream: str, replaces: str | None = None) -> CascadePlan:
    """Plan the cascade for the new version `upstream` (e.g. `base@2`).

    `replaces` is the version it supersedes (default: the previous version).
    """
    new = workspace.resolve(upstream)
    old = workspace.resolve(replaces) if replaces else default_replaced(workspace, new)
    if old.id == new.id:
        raise UsageError(f"{new.ref} cannot replace itself")
    return plan_from_graph(
        new, old, workspace.descendants(old.ref), lambda model: workspace.resolve(model).ref
    )
