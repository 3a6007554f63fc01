"""Workspace verbs that are bigger than one method: each module one verb, taking the
workspace as its first argument (as `dvc/repo/*.py`)."""
