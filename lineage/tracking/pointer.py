"""The pointer model: an MLflow pyfunc whose weights stay in the lineage store.

Each lineage version is logged to MLflow as a *models-from-code* pyfunc: the
artifact holds a few lines of code (`lineage/serving_entry.py`) and a model config naming
the workspace, object store and manifest id — never the weights. Loading it
(`mlflow.pyfunc.load_model("models:/NAME@champion")`) checks the weights out of the
lineage store, verified object by object, and builds a transformers model, so a
family of 100 models costs MLflow 100 small configs, not 100 weight copies.

`predict(["some text", ...])` takes a list of strings and returns, for a sequence
classifier, a DataFrame of class probabilities with one float column per label name;
else a float32 array of L2-normalised mean-pooled embeddings (what
sentence-transformers does for MiniLM). The logged model carries that as its MLflow
signature (worked out from the version's manifest, without loading weights) with an
input example, and pip requirements pinned to the exact versions installed here.

Every layout lineage stores loads (through `lineage.recipes.hf.load_for_inference`):
float models, lineage's int8 format, and LoRA adapter directories, which are merged
onto their base (the version's first derivation parent, also read from the store).

This module logs the pointer model; what runs when MLflow loads it is
`lineage.serving`. The loader needs read access to the store (same machine, shared
folder or the same S3 bucket); the workspace root is used when present so derivable
versions can be re-materialised, else the store is read directly by manifest id.
"""

from __future__ import annotations

import json
import logging
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from lineage.provenance import DISTRIBUTION, WEIGHT_LIBRARIES, package_version

#: The models-from-code file MLflow copies into each pointer model and runs on load (a
#: file path, not an import: what it runs is `lineage.serving`, the layer above this).
ENTRY_FILE = Path(__file__).parents[1] / "serving_entry.py"
INPUT_EXAMPLE = ["a short text to classify or embed", "another one"]


def pointer_requirements() -> list[str]:
    """The pointer model's pip requirements: lineage (under its distribution name,
    never the bare `lineage`, an unrelated PyPI project) and the libraries that load
    its weights, each pinned to the version installed here.

    Given to MLflow explicitly, so MLflow does not import the model in a subprocess to
    infer them (slow, and it would load weights).
    """
    pins = [f"{DISTRIBUTION}=={package_version()}"]
    for package in WEIGHT_LIBRARIES:
        try:
            # Local labels (`2.13.0+cpu`) name a build, not a release: `==2.13.0` matches it.
            pins.append(f"{package}=={version(package).split('+')[0]}")
        except PackageNotFoundError:
            continue
    return pins


def output_labels(workspace: Any, version: Any) -> tuple[str, ...] | None:
    """The label names a version's classifier predicts, from its manifest and small
    config files only (no weights are read); None for an embedding model."""
    from lineage.recipes.hf import ADAPTER_META, WEIGHTS_FILE, head_labels
    from lineage.store.reader import read_bytes

    store = workspace.store
    manifest = store.get_manifest(version.manifest_id)
    files = {entry.path: entry for entry in manifest.files}

    def read_json(name: str) -> dict[str, Any]:
        entry = files.get(name)
        if entry is None or entry.object is None:
            return {}
        data = json.loads(read_bytes(store, entry.object, entry.size).tobytes())
        return data if isinstance(data, dict) else {}

    if "adapter_config.json" in files:
        labels = read_json(ADAPTER_META).get("labels")
        return tuple(str(label) for label in labels) if labels else None
    weights = files.get(WEIGHTS_FILE)
    shapes = {t.name: t.shape for t in weights.tensors} if weights else {}
    return head_labels(read_json("config.json"), shapes)


def pointer_signature(workspace: Any, version: Any) -> Any:
    """The MLflow signature of `version`'s pointer model: a list of strings in; the
    probability of each label out (one named column per label), or for an embedding
    model a float32 matrix of one row per text."""
    import numpy as np
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, DataType, Schema, TensorSpec

    labels = output_labels(workspace, version)
    if labels:
        outputs = Schema([ColSpec(DataType.float, label) for label in labels])
    else:
        outputs = Schema([TensorSpec(np.dtype(np.float32), (-1, -1))])
    return ModelSignature(inputs=Schema([ColSpec(DataType.string)]), outputs=outputs)


def pointer_config(workspace: Any, version: Any) -> dict[str, str]:
    """The model config stored in MLflow for `version`: where to find its weights
    (and, for a LoRA adapter version, its base: the first derivation parent)."""
    config = {
        "lineage_ref": version.ref,
        "manifest_id": version.manifest_id,
        "workspace": str(workspace.root),
        "store_url": workspace.store_url,
    }
    parents = version.derivation_parents
    if parents:
        base = workspace.version_by_id(parents[0].version_id)
        config["base_ref"] = base.ref
        config["base_manifest_id"] = base.manifest_id
    return config


#: MLflow loggers that speak while a pointer model is saved, about nothing a lineage
#: user can act on: the example-vs-signature check (INFO) and requirements that differ
#: from this environment (a source checkout has no installed distribution to match).
_LOG_TIME_CHATTER = ("mlflow.pyfunc", "mlflow.models", "mlflow.utils.requirements_utils")


@contextmanager
def _quiet(names: tuple[str, ...]) -> Iterator[None]:
    """Only errors from these loggers while the block runs (CLI output stays one line)."""
    loggers = [logging.getLogger(name) for name in names]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def log_pointer_model(
    client: Any,
    experiment_id: str,
    workspace: Any,
    version: Any,
    *,
    name: str,
    tags: dict[str, str],
    run_id: str | None = None,
) -> Any:
    """Log `version`'s pointer model as a LoggedModel of `experiment_id` (an output of
    `run_id` when given) through `client` alone; returns the READY `LoggedModel`.

    The model is saved to a scratch folder with `mlflow.pyfunc.save_model` and uploaded
    with the client, so no process-wide MLflow state (active run, tracking URI) is
    touched. MLflow's serving-input check is not run: it would load the model, i.e.
    check the weights out of the store and import torch on every registration; the
    input example is still checked against the signature when the model is saved.
    """
    import mlflow.pyfunc
    from mlflow.entities import LoggedModelOutput, LoggedModelStatus
    from mlflow.models import Model

    config = pointer_config(workspace, version)
    logged = client.create_logged_model(
        experiment_id,
        name=name,
        source_run_id=run_id,
        tags=tags,
        params=config,
        model_type="lineage-pointer",
    )
    try:
        with tempfile.TemporaryDirectory(prefix="lineage-pointer-") as scratch:
            local = Path(scratch) / "model"
            description = Model(
                artifact_path=logged.artifact_location,
                model_uuid=logged.model_id,
                run_id=run_id,
                model_id=logged.model_id,
            )
            with _quiet(_LOG_TIME_CHATTER):
                mlflow.pyfunc.save_model(
                    path=str(local),
                    mlflow_model=description,
                    python_model=str(ENTRY_FILE),
                    model_config=config,
                    pip_requirements=pointer_requirements(),
                    signature=pointer_signature(workspace, version),
                    input_example=INPUT_EXAMPLE,
                )
            client.log_model_artifacts(logged.model_id, str(local))
        if run_id is not None:
            client.log_outputs(run_id, [LoggedModelOutput(logged.model_id, step=0)])
    except BaseException:
        client.finalize_logged_model(logged.model_id, LoggedModelStatus.FAILED)
        raise
    return client.finalize_logged_model(logged.model_id, LoggedModelStatus.READY)
