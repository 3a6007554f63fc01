"""What runs when MLflow loads a lineage pointer model: check the version's weights out
of the lineage store and predict on texts (see `lineage.tracking.pointer`, which logs
it, for the format and the signature).

`python -c "import mlflow; mlflow.pyfunc.load_model('models:/NAME@champion')"` ends up
in `install_pointer_model` here, through the `serving_entry.py` MLflow copied into
the logged model.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any


def checkout_weights(
    config: dict[str, Any],
    out_dir: Path,
    *,
    ref_key: str = "lineage_ref",
    manifest_key: str = "manifest_id",
) -> Path:
    """Write the Hugging Face directory of the version a pointer config names to
    `out_dir` (`ref_key`/`manifest_key` pick the version itself or its base)."""
    from lineage.errors import StoreError

    ref, manifest_id = config[ref_key], config[manifest_key]
    root = config.get("workspace")
    if root and (Path(root) / ".lineage").is_dir():
        from lineage.workspace import Workspace

        workspace = Workspace.open(root)
        try:
            version = workspace.resolve(ref)
            if version.manifest_id != manifest_id:
                raise StoreError(
                    f"{ref} in {root} has manifest {version.manifest_id}, "
                    f"but the MLflow model points at {manifest_id}"
                )
            # Through ops, so derivable versions are re-materialised.
            from lineage.ops.checkout import checkout as checkout_version

            return checkout_version(workspace, ref, out_dir, force=True)
        finally:
            workspace.close()
    from lineage.store import ObjectStore, checkout

    store = ObjectStore.open(config["store_url"])
    checkout(store, store.get_manifest(manifest_id), out_dir)
    return out_dir


def load_text_model(config: dict[str, Any], scratch: Path) -> TextModel:
    """Check out the version (and its base, for an adapter) and load it in memory."""
    directory = checkout_weights(config, scratch / "model")
    base = None
    if (directory / "adapter_config.json").is_file() and config.get("base_ref"):
        base = checkout_weights(
            config, scratch / "base", ref_key="base_ref", manifest_key="base_manifest_id"
        )
    return TextModel(directory, base)


def _texts(model_input: Any) -> list[str]:
    """Accept what pyfunc callers pass: a str, a list, a Series or a one-column frame."""
    if isinstance(model_input, str):
        return [model_input]
    if hasattr(model_input, "columns"):  # pandas DataFrame
        column = "text" if "text" in model_input.columns else model_input.columns[0]
        return [str(item) for item in model_input[column].tolist()]
    if hasattr(model_input, "tolist"):  # Series, ndarray
        return [str(item) for item in model_input.tolist()]
    return [str(item) for item in model_input]


class TextModel:
    """Any lineage model directory (float, LoRA adapter + base, int8) as a text model."""

    def __init__(self, directory: Path, base: Path | None = None) -> None:
        import torch

        from lineage.recipes.hf import load_for_inference

        self.model, self.tokenizer, info = load_for_inference(directory, base)
        #: The classifier's label names (the columns of `predict_labeled`), or None.
        self.labels = info.labels
        self._torch = torch

    def predict(self, texts: list[str]) -> Any:
        torch = self._torch
        batch = self.tokenizer(
            texts, padding=True, truncation=True, max_length=128, return_tensors="pt"
        )
        with torch.no_grad():
            output = self.model(**batch)
        if getattr(output, "logits", None) is not None:
            return torch.softmax(output.logits, dim=-1).float().numpy()
        mask = batch["attention_mask"].unsqueeze(-1).to(output.last_hidden_state.dtype)
        pooled = (output.last_hidden_state * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        return torch.nn.functional.normalize(pooled, dim=-1).float().numpy()

    def predict_labeled(self, texts: list[str]) -> Any:
        """`predict`, with a classifier's probabilities as a DataFrame whose columns are
        the label names (what the pointer model's signature promises)."""
        out = self.predict(texts)
        if not self.labels or out.shape[1] != len(self.labels):
            return out
        import pandas as pd

        return pd.DataFrame(out, columns=list(self.labels))


def make_pointer_model() -> Any:
    """The pyfunc instance that MLflow's models-from-code loader expects.

    The class is built here, not at module top, because lineage imports MLflow
    only inside functions.
    """
    from mlflow.pyfunc.model import PythonModel

    class LineagePointerModel(PythonModel):
        """Loads a lineage version's weights from the store and predicts on texts."""

        # predict takes texts in several shapes (see `_texts`): no MLflow schema
        # validation from its type hints (which MLflow would otherwise warn about).
        _skip_type_hint_validation = True

        def load_context(self, context: Any) -> None:
            config = dict(context.model_config or {})
            with tempfile.TemporaryDirectory(prefix="lineage-pointer-") as scratch:
                # Weights are read into memory here, so the checkout can go.
                self._model = load_text_model(config, Path(scratch))
            self.ref = config.get("lineage_ref", "")

        # Unannotated on purpose: MLflow infers a schema from predict's hints at log
        # time and warns about ones it cannot use.
        def predict(self, context, model_input, params=None):  # type: ignore[no-untyped-def]
            return self._model.predict_labeled(_texts(model_input))

    return LineagePointerModel()


def install_pointer_model() -> None:
    """Hand MLflow the pointer model (called by `serving_entry.py` when MLflow runs it)."""
    import mlflow.models

    mlflow.models.set_model(make_pointer_model())
