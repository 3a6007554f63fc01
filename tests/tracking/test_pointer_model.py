"""The pointer model as MLflow users see it: exact pins under lineage's distribution
name, a signature (texts in; label probabilities or embeddings out), an input
example, and `models:/NAME@champion` predicting labelled probabilities."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from lineage.ops.add import add
from lineage.ops.promote import promote
from lineage.provenance import DISTRIBUTION, package_version
from lineage.tracking import register_version
from lineage.tracking.pointer import INPUT_EXAMPLE, pointer_requirements

from .conftest import mlflow_uri, record_results


def _model_info(ws: Any, uri: str) -> Any:
    import mlflow

    with mlflow_uri(ws):
        return mlflow.models.get_model_info(uri)


def _artifact(ws: Any, uri: str, name: str) -> str:
    import mlflow

    with mlflow_uri(ws):
        return Path(mlflow.artifacts.download_artifacts(artifact_uri=f"{uri}/{name}")).read_text()


def _requirements(ws: Any, uri: str) -> list[str]:
    text = _artifact(ws, uri, "requirements.txt")
    return [line.strip() for line in text.splitlines() if line.strip()]


def test_requirements_pin_exact_versions_and_never_the_bare_name() -> None:
    pins = pointer_requirements()
    assert pins[0] == f"{DISTRIBUTION}=={package_version()}"
    names = [pin.split("==")[0] for pin in pins]
    assert "lineage" not in names
    assert {"torch", "transformers", "peft", "safetensors"} <= set(names)
    assert all("==" in pin and "+" not in pin for pin in pins), pins


def test_classifier_pointer_has_signature_example_and_labelled_output(
    sqlite_workspace: Any, tiny_berts: dict[str, Path]
) -> None:
    import mlflow

    ws = sqlite_workspace
    add(ws, "clf", source=tiny_berts["s0"])
    register_version(ws, ws.resolve("clf@1"))
    info = _model_info(ws, "models:/clf/1")
    signature = info.signature.to_dict()
    assert '"type": "string"' in signature["inputs"]
    assert [c["name"] for c in info.signature.outputs.to_dict()] == ["LABEL_0", "LABEL_1"]
    assert info.saved_input_example_info is not None
    example = _artifact(ws, "models:/clf/1", info.saved_input_example_info["artifact_path"])
    assert json.loads(example) == INPUT_EXAMPLE

    requirements = _requirements(ws, "models:/clf/1")
    assert f"{DISTRIBUTION}=={package_version()}" in requirements
    assert not any(line.split("==")[0] == "lineage" for line in requirements)

    record_results(ws, "clf@1")
    promote(ws, "clf@1")
    with mlflow_uri(ws):
        model = mlflow.pyfunc.load_model("models:/clf@champion")
        out = model.predict(["a fine film", "dull and long"])
    assert list(out.columns) == ["LABEL_0", "LABEL_1"]
    np.testing.assert_allclose(np.asarray(out).sum(axis=1), 1.0, rtol=1e-5)


def test_adapter_and_encoder_signatures(
    sqlite_workspace: Any, tiny_family: dict[str, Path]
) -> None:
    ws = sqlite_workspace
    add(ws, "enc", source=tiny_family["base"])
    add(ws, "lora", source=tiny_family["adapter"], parents=["enc@1"], kind="adapter")
    register_version(ws, ws.resolve("enc@1"))
    register_version(ws, ws.resolve("lora@1"))
    # The adapter's labels come from its lineage_adapter.json (no weights are read).
    lora = _model_info(ws, "models:/lora/1").signature.outputs.to_dict()
    assert [c["name"] for c in lora] == ["negative", "positive"]
    # An embedding model returns a float32 matrix, one row per text.
    (encoder,) = _model_info(ws, "models:/enc/1").signature.outputs.to_dict()
    assert encoder["type"] == "tensor" and encoder["tensor-spec"]["dtype"] == "float32"
