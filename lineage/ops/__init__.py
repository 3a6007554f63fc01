"""The verbs that change or inspect a workspace: one module per verb, workspace first.

DVC's `dvc/repo/*.py` style. `add` (add, commit, link), `derive` (recipes), `checkout`,
`lossy` (the guarded lossy mode), `tests` (declare, run, bisect), `promote` (promote,
rollback, the cascade's gate, promotion policy), `alias` (free-form aliases), `show`,
`storage` (stats, verify, gc, diff, likely parents). The CLI, the Prefect tasks and
your own scripts call these functions::

    from lineage.ops.add import add
    from lineage.ops.checkout import checkout
    from lineage.workspace import Workspace

    ws = Workspace.init("demo")
    add(ws, "base", source="path/to/minilm")
    checkout(ws, "base@1", "out/")

(Import the functions from their modules: this package re-exports nothing, so that a
module and the verb it is named after are never confused.)
"""
