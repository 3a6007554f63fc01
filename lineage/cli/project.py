"""Find the Prefect project (`flows/`, `tasks/`, `deployments.yaml`) and the image build
(`containers/`) that the `cascade`, `emit` and `image` commands drive.

They live next to the `lineage` package in a checkout, not inside it: they are the
project Prefect deploys (`prefect deploy --prefect-file deployments.yaml`), and names
like `tasks` must not land in site-packages. `$LINEAGE_PROJECT_DIR` points at another
checkout.
"""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path
from types import ModuleType

import lineage
from lineage.errors import OrchestrationError

PROJECT_ENV = "LINEAGE_PROJECT_DIR"


def project_root() -> Path:
    """The checkout holding `flows/` and `tasks/` (`OrchestrationError` if none)."""
    given = os.environ.get(PROJECT_ENV)
    candidate = Path(given) if given else Path(lineage.__file__).resolve().parents[1]
    if (candidate / "flows" / "cascade.py").is_file() and (candidate / "tasks").is_dir():
        return candidate
    raise OrchestrationError(
        f"the lineage Prefect project (flows/, tasks/) is not at {candidate}: run from a "
        f"checkout of lineage (`pip install -e .`) or set {PROJECT_ENV} to one"
    )


def load(module: str) -> ModuleType:
    """Import `module` (e.g. `flows.cascade`) from the project checkout."""
    root = str(project_root())
    if root not in sys.path:
        sys.path.insert(0, root)
    return importlib.import_module(module)
