"""lineage: model versioning and lineage-driven ModelOps.

The import name is `lineage`; the distribution is `lineage-modelops`
(`lineage.provenance.DISTRIBUTION`: the bare name `lineage` belongs to an unrelated
project on PyPI). Start at `lineage.workspace.Workspace` and the verbs in `lineage.ops`.
"""
