"""Prefect tasks (derive, test) and the runners that execute their steps.

`tasks.derive` and `tasks.testing` import Prefect; `tasks.step` and `tasks.runners`
do not, so a step can run in a container without the orchestrator installed.
"""
