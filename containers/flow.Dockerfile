# The lineage flow image: the task image plus Prefect, MLflow and the rest of the
# project's runtime dependencies, so a Prefect docker worker can run the flows in it
# (deployments.yaml, pool `lineage-docker`).
#
# Built by `containers/build.py --flow` (`make image-flow`) on the task image it has just
# built or found (TASK_IMAGE) and that image's base (BASE_IMAGE); the context holds
# wheels/ (the extra pinned wheels, built on the host: no network inside the build).
# Classic builder only, like the task image's Dockerfile.
ARG BASE_IMAGE=lineage-base:bookworm
ARG TASK_IMAGE=lineage-task:latest

# Stage 1: install the extra wheels under their own prefix, with the interpreter path the
# task image's venv has (/opt/venv/bin/python, for the console scripts). It is built on
# the base image, not the task image, so the Docker layer cache keeps it while only the
# project's source (hence the task image) changes; the final image then gets the new
# files as one layer, without the wheels or a second copy of the task image's venv.
FROM ${BASE_IMAGE} AS deps
COPY wheels/ /wheels/
RUN python3 -m venv /opt/venv \
 && /opt/venv/bin/python -m pip install --no-index --no-deps --no-cache-dir \
        --disable-pip-version-check --quiet --prefix /opt/flow /wheels/*.whl

# Stage 2: the runtime.
FROM ${TASK_IMAGE}
USER root
COPY --from=deps /opt/flow/lib/python3.11/site-packages/ /opt/venv/lib/python3.11/site-packages/
COPY --from=deps /opt/flow/bin/ /opt/venv/bin/
# /opt/lineage is the flows' working directory in deployments.yaml: the Prefect project
# (flows/, tasks/, deployments.yaml), copied, not installed, so that the entrypoint
# `flows/cascade.py:cascade_flow` resolves there. /workspace is where the worker mounts
# the workspace ($LINEAGE_WORKSPACE); the unprivileged user must be able to write it,
# since the flow writes the graph DB and the objects.
COPY project/ /opt/lineage/
RUN mkdir -p /workspace \
 && chown 10001:10001 /workspace
# MLflow imports GitPython, which warns on every import when there is no git binary.
ENV LINEAGE_WORKSPACE=/workspace \
    GIT_PYTHON_REFRESH=quiet
USER 10001:10001
WORKDIR /opt/lineage
# The import check fails the build, not the first flow run, when a dependency is missing.
# It runs as the flow's user and leaves HOME (/tmp) empty: Prefect writes its profile
# there on first import, and a file left by the build would be in every container.
RUN python -c "import flows.cascade, tasks.derive, lineage.tracking, lineage.cli.main, prefect, \
prefect_dask, mlflow, docker, psycopg, boto3, alembic, typer, rich, zstandard" \
 && rm -rf /tmp/.prefect /tmp/.cache /tmp/.config
LABEL org.opencontainers.image.title="lineage-flow" \
      org.opencontainers.image.description="Runs lineage's Prefect flows (docker work pool)"
# The task image's entrypoint runs one step; a worker sends its own command
# (`prefect flow-run execute`), which must run as given.
ENTRYPOINT []
CMD ["prefect", "version"]
