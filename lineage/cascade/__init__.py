"""The update cascade, without Prefect: planning, cache keys and per-node steps.

When an upstream model gets a new version, every descendant of the version it
replaces is re-derived with its recorded recipe, tested and gated. This package
decides *what* to do (`plan`, pure; `build` loads the versions to plan from), how to
recognise work already done (`cache`) and how to do one node (`node`); the Prefect
project's `flows/cascade.py` decides *when*, and `settings` holds the choice of task
runner both the CLI and the flow check.

>>> from lineage.ops.add import commit
>>> _ = commit(ws, "base", source=make_tiny_model(tmp / "base2", num_labels=2, seed=2))
>>> plan = build_plan(ws, "base@2")
>>> plan.replaces, [node.model for node in plan.skipped]
('base@1', ['ft'])
>>> plan.skipped[0].reason
'no recipe recorded (registered from weights), so it cannot be re-derived'
"""

from lineage.cascade.build import build_plan
from lineage.cascade.cache import cache_key
from lineage.cascade.plan import CascadePlan, PlanNode, PlanParent, plan_from_graph

__all__ = [
    "CascadePlan",
    "PlanNode",
    "PlanParent",
    "build_plan",
    "cache_key",
    "plan_from_graph",
]
