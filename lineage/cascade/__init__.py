"""The update cascade, without Prefect: planning, cache keys and per-node steps.

When an upstream model gets a new version, every descendant of the version it
replaces is re-derived with its recorded recipe, tested and gated. This package
decides *what* to do (`plan`), how to recognise work already done (`cache`) and
how to do one node (`steps`); `flows/cascade.py` decides *when*, on Prefect.

>>> from lineage.cascade import build_plan                          # doctest: +SKIP
>>> plan = build_plan(workspace, "base@2")                          # doctest: +SKIP
>>> [node.model for node in plan.to_derive]                         # doctest: +SKIP
['sentiment', 'sentiment-int8']
"""

from lineage.cascade.cache import cache_key
from lineage.cascade.plan import CascadePlan, PlanNode, PlanParent, build_plan, plan_from_graph

__all__ = [
    "CascadePlan",
    "PlanNode",
    "PlanParent",
    "build_plan",
    "cache_key",
    "plan_from_graph",
]
