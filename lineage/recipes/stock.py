"""Making a checked-out version load with stock Hugging Face tools.

What lineage stores is not always what `from_pretrained` understands:

- an int8 version (`quantize` with `dtype="int8"`) holds `X.weight_int8` codes and
  `X.weight_scale` scales (`lineage.recipes.int8`). Stock transformers would not find
  `X.weight` and would silently initialise it at random. `make_loadable` writes the
  dequantized float32 weights instead: exactly the values lineage's own loader
  computes, so predictions match bit for bit.
- a LoRA adapter stores `base_model_name_or_path: null` (its base is the version's
  first derivation parent, not a path). `make_loadable` names the base ref there as
  `lineage:NAME@N` (an adapter added with a base path of its own keeps it): not a
  valid Hub id, so PEFT and transformers stop with an error that shows the ref,
  offline, instead of asking the Hub for a model called `null`.
  `attach_base` goes further: with the base model checked out next to the adapter
  (`DIR/base`), the adapter config points at it and the stock loaders
  (`AutoPeftModelForSequenceClassification`, `AutoModelForSequenceClassification`)
  load the pair offline.

Only checkouts are rewritten; the stored bytes never change (`lineage checkout --raw`
gives them back). Numpy only: store commands import no torch.

>>> import tempfile, pathlib
>>> d = pathlib.Path(tempfile.mkdtemp())
>>> make_loadable(d)  # an empty folder is a model with nothing to convert
[]
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from lineage.errors import WeightsError
from lineage.recipes.hf import ADAPTER_META, WEIGHTS_FILE, read_json_object, write_json
from lineage.recipes.int8 import (
    CONFIG_KEY,
    SCALE_SUFFIX,
    dequantize_codes,
    is_quantized_config,
    quantized_stem,
)
from lineage.recipes.safetensors_raw import (
    RawTensor,
    read_header,
    read_safetensors,
    write_safetensors,
)

#: Folder of the base model inside a `--with-base` adapter checkout.
BASE_DIR = "base"
#: Config key that tells a reader the float weights came from lineage's int8 format.
DEQUANTIZED_KEY = "lineage_dequantized"
#: Prefix of the base reference written into an adapter config. The colon makes it an
#: invalid Hub repo id, so no loader ever sends it to the network.
BASE_REF_PREFIX = "lineage:"
ADAPTER_CONFIG = "adapter_config.json"


def is_adapter_dir(directory: Path) -> bool:
    return (Path(directory) / ADAPTER_CONFIG).is_file()


def make_loadable(directory: str | Path, *, base_ref: str | None = None) -> list[str]:
    """Rewrite a checked-out version in place so stock transformers/PEFT load it.

    `base_ref` (e.g. `"base@1"`) is the version's first derivation parent; it is
    written into an adapter's config. Returns one line per change, for the user
    (empty when the folder already loads as is).
    """
    directory = Path(directory)
    if is_adapter_dir(directory):
        # An adapter added from a folder keeps the base its author named: a checkout
        # gives back the bytes that went in.
        named = read_json_object(directory / ADAPTER_CONFIG).get("base_model_name_or_path")
        if base_ref is None or named:
            return []
        reference = BASE_REF_PREFIX + base_ref
        write_adapter_base_reference(directory, reference)
        return [f"{ADAPTER_CONFIG}: base_model_name_or_path = {reference!r}"]
    config_path = directory / "config.json"
    if config_path.is_file() and is_quantized_config(read_json_object(config_path)):
        count = dequantize_checkout(directory)
        return [f"{WEIGHTS_FILE}: {count} int8 tensors dequantized to float32 (--raw: as stored)"]
    return []


def dequantize_checkout(directory: Path) -> int:
    """Replace lineage's int8 tensors in `directory` by the float32 weights they encode.

    `config.json` loses its `lineage_quantization` entry (so lineage reads the folder as
    the float model it now is) and records it under `lineage_dequantized`. Returns the
    number of weights dequantized.
    """
    config_path = directory / "config.json"
    weights = directory / WEIGHTS_FILE
    config = read_json_object(config_path)
    _, metadata, _ = read_header(weights)
    tensors = read_safetensors(weights)
    out: dict[str, RawTensor] = {}
    count = 0
    for name, tensor in tensors.items():
        if name.endswith(SCALE_SUFFIX):
            continue
        stem = quantized_stem(name)
        if stem is None:
            out[name] = tensor
            continue
        scale = tensors.get(stem + SCALE_SUFFIX)
        if scale is None or tensor.dtype != "I8" or scale.dtype != "F32":
            raise WeightsError(
                f"{weights}: int8 tensor {name!r} has no float32 scale {stem + SCALE_SUFFIX!r}"
            )
        try:
            weight = dequantize_codes(tensor.to_array(), scale.to_array())
        except ValueError as exc:
            raise WeightsError(f"{weights}: {exc}") from None
        out[stem + ".weight"] = RawTensor.from_array(weight)
        count += 1
    config[DEQUANTIZED_KEY] = config.pop(CONFIG_KEY)
    _replace(weights, lambda tmp: write_safetensors(tmp, out, metadata))
    _replace(config_path, lambda tmp: write_json(tmp, config))
    return count


def write_adapter_base_reference(adapter_dir: Path, base: str) -> None:
    """Set `base_model_name_or_path` in the adapter config (a path or a `lineage:` ref)."""
    path = Path(adapter_dir) / ADAPTER_CONFIG
    config = read_json_object(path)
    config["base_model_name_or_path"] = base
    _replace(path, lambda tmp: write_json(tmp, config))


def attach_base(adapter_dir: Path, base_dir: Path, *, recorded_path: Path | None = None) -> None:
    """Make the adapter in `adapter_dir` load on the model in `base_dir` with stock tools.

    The adapter config points at the base (`recorded_path`, absolute: the path the
    base will have when it is used; defaults to `base_dir`, which suits a folder that
    stays where it is). PEFT resolves that path from the current directory, so a
    relative one would only work from one place. The base's `config.json` gets the
    adapter's labels, so `AutoModelForSequenceClassification` builds a head of the
    right size (PEFT then loads the adapter's trained head over it); a head the base
    already had for other labels is dropped from the base's copy, as lineage's own
    loader re-initialises it too.
    """
    adapter_dir, base_dir = Path(adapter_dir), Path(base_dir)
    if not is_adapter_dir(adapter_dir):
        raise WeightsError(f"{adapter_dir} is not a LoRA adapter directory")
    if not (base_dir / "config.json").is_file():
        raise WeightsError(f"base {base_dir} is not a Hugging Face model directory")
    meta_path = adapter_dir / ADAPTER_META
    labels = read_json_object(meta_path).get("labels") if meta_path.is_file() else None
    if labels:
        _give_base_labels(base_dir, [str(label) for label in labels])
    write_adapter_base_reference(adapter_dir, str((recorded_path or base_dir).absolute()))


def _give_base_labels(base_dir: Path, labels: list[str]) -> None:
    config_path = base_dir / "config.json"
    config = read_json_object(config_path)
    config["id2label"] = {str(i): label for i, label in enumerate(labels)}
    config["label2id"] = {label: i for i, label in enumerate(labels)}
    config.pop("num_labels", None)  # transformers derives it from id2label
    _replace(config_path, lambda tmp: write_json(tmp, config))
    weights = base_dir / WEIGHTS_FILE
    if not weights.is_file():
        return
    entries, metadata, _ = read_header(weights)
    head = {name: e for name, e in entries.items() if name.startswith("classifier.")}
    sizes = {int(e["shape"][0]) for name, e in head.items() if _is_head_output(name)}
    if sizes <= {len(labels)}:
        return
    kept = {n: t for n, t in read_safetensors(weights).items() if n not in head}
    _replace(weights, lambda tmp: write_safetensors(tmp, kept, metadata))


def _is_head_output(name: str) -> bool:
    # BERT: classifier.weight/bias; RoBERTa: classifier.out_proj.*, after a dense layer.
    return name in ("classifier.weight", "classifier.bias") or name.startswith(
        "classifier.out_proj."
    )


def _replace(path: Path, write: Any) -> None:
    """Write `path` through a sibling temp file, so a failure leaves the old file."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
