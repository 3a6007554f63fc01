"""lineage: model versioning and lineage-driven ModelOps.

The import name is `lineage`; the distribution on PyPI is `DISTRIBUTION` (the bare
name `lineage` belongs to an unrelated project, so nothing may pin or install it).
"""

from __future__ import annotations

#: The name this project is published and installed under (`pip install ...`).
DISTRIBUTION = "lineage-modelops"
#: This source tree's version; the installed distribution's metadata wins when present.
__version__ = "0.1.0"


def installed_version() -> str:
    """The version of lineage that is running: the installed distribution's, else
    `__version__` (a source checkout on `PYTHONPATH`)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(DISTRIBUTION)
    except PackageNotFoundError:
        return __version__
