"""Names of the images steps and flows run in (built by the project's `containers/`)."""

from __future__ import annotations

#: Repository of the task image: the step entry point and its libraries, nothing else.
TASK_REPOSITORY = "lineage-task"
#: The image the docker runner uses unless told otherwise (`$LINEAGE_TASK_IMAGE`).
DEFAULT_TASK_IMAGE = f"{TASK_REPOSITORY}:latest"
