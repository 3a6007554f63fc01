"""Keep secrets out of what lineage prints and logs.

Database, MLflow and S3 URLs may carry a password (`postgresql://user:pw@host/db`);
error lines, `--json` output and logs end up in CI and Prefect logs, so every URL that
lineage prints goes through `redact_url` first.

>>> redact_url("postgresql://lineage:s3cret@db:5432/graph")
'postgresql://lineage:***@db:5432/graph'
>>> redact_url("could not connect to http://user:pw@mlflow:5000/api (refused)")
'could not connect to http://user:***@mlflow:5000/api (refused)'
>>> redact_url("s3://bucket/prefix")
's3://bucket/prefix'
"""

from __future__ import annotations

import re

# scheme://user:password@  (the password is anything up to the last '@' of the netloc)
_CREDENTIALS = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^/\s:@]*):(?P<secret>[^\s@/]*)@")


def redact_url(text: str) -> str:
    """`text` with the password of every `scheme://user:password@host` URL masked."""
    return _CREDENTIALS.sub(lambda m: f"{m.group('head')}:***@", text)
