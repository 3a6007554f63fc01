"""Turning any lineage model directory into `predict(texts) -> label ids`.

- A model with a classification head predicts with it. Its labels are matched to
  the data set's by name; when the names differ but the counts agree (a head saved
  with default `LABEL_0..N` names), by position.
- An embedding-only model (no head, e.g. MiniLM or a distilled encoder) gets a
  nearest-centroid probe: mean-pooled, L2-normalised embeddings of the data set's
  train split (first 512 examples) give one centroid per label, and a text takes
  the label of the most similar centroid. This measures how well the embedding
  separates the classes without training anything, so it is deterministic and
  comparable between a parent and its child.
- A LoRA adapter directory is loaded on its base (`base_dir`, the parent).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from lineage.datasets import TextDataset
from lineage.recipes.hf import load_for_inference
from lineage.recipes.training import embed, no_grad, predict_logits

if TYPE_CHECKING:
    import torch

PROBE_EXAMPLES = 512


class Predictor:
    """Predicts the data set's label ids for texts.

    >>> from lineage.bundled import minilm_path
    >>> from lineage.datasets import load_dataset
    >>> p = Predictor(minilm_path(), None, load_dataset("topic"))
    >>> p.mode
    'centroid'
    """

    def __init__(
        self, model_dir: Path, base_dir: Path | None, data: TextDataset, *, max_length: int = 64
    ) -> None:
        self.model, self.tokenizer, self.info = load_for_inference(model_dir, base_dir)
        self.data = data
        self.max_length = max_length
        self.note = ""
        self._map: list[int] | None = None
        self._centroids: torch.Tensor | None = None
        labels = self.info.labels
        if labels and set(data.labels) <= set(labels):
            index = {name: i for i, name in enumerate(data.labels)}
            self._map = [index.get(name, -1) for name in labels]
            self.mode = "head"
        elif labels and len(labels) == len(data.labels):
            self._map = list(range(len(labels)))
            self.mode = "head"
            self.note = "head labels differ from the data set's; matched by position"
        else:
            self.mode = "centroid"
            if labels:
                self.note = "head labels do not fit the data set; used a nearest-centroid probe"
            self._centroids = self._fit_centroids()

    def _fit_centroids(self) -> torch.Tensor:
        import torch

        train = self.data.split("train")[:PROBE_EXAMPLES]
        emb = embed(self.model, self.tokenizer, [e.text for e in train], max_length=self.max_length)
        labels = torch.tensor([e.label for e in train])
        cents = torch.zeros(len(self.data.labels), emb.shape[-1])
        for c in range(len(self.data.labels)):
            if (labels == c).any():
                cents[c] = emb[labels == c].mean(0)
        return torch.nn.functional.normalize(cents, dim=-1)

    @no_grad
    def predict(self, texts: Sequence[str]) -> list[int]:
        """Label ids (indices into `data.labels`); -1 for a head label the data lacks."""
        if not texts:
            return []
        if self._map is not None:
            logits = predict_logits(self.model, self.tokenizer, texts, max_length=self.max_length)
            return [self._map[i] for i in logits.argmax(-1).tolist()]
        assert self._centroids is not None
        emb = embed(self.model, self.tokenizer, texts, max_length=self.max_length)
        return (emb @ self._centroids.T).argmax(-1).tolist()
