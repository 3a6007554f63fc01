"""Prefect tasks of the cascade: derive, test and gate one node.

Thin wrappers over `lineage.cascade.node`; each returns the node's typed outcome
(`DeriveOutcome`, `NodeTests`, `GateOutcome`) wrapped with when it ran (`Timed`).
This folder is part of the Prefect project (with `flows/` and `deployments.yaml`),
not of the installed `lineage` package.
"""
