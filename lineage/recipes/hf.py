"""Reading and writing Hugging Face model directories, the only format recipes speak.

Three layouts occur in a lineage:

- `model`: `config.json` + `model.safetensors` (+ tokenizer files) — loadable by
  `transformers` as is;
- `adapter`: a PEFT LoRA directory (`adapter_config.json`, `adapter_model.safetensors`
  and `lineage_adapter.json` with the label names); it needs its base model;
- `quantized`: a `model` directory in lineage's int8 format (see `lineage.recipes.int8`).

`load_for_inference` turns any of them into a float32 torch model in eval mode. It
fails with one `WeightsError` line when the weights do not fill the model their config
describes (missing or unexpected tensors), where transformers would initialise the
gaps at random and only warn. Pickled weights (`*.bin`, `*.pt`) are refused, never
loaded.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, cast

from lineage.errors import RecipeError, WeightsError
from lineage.formats import PICKLE_SUFFIXES
from lineage.recipes.int8 import INT8_SUFFIX, is_quantized_config
from lineage.recipes.safetensors_raw import read_header

if TYPE_CHECKING:  # imported lazily: the read commands import no torch
    import torch
    from peft import PeftModel
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

log = logging.getLogger(__name__)

#: Encoder families whose layout (`encoder.layer.N`, `query`/`value` projections)
#: the training recipes rely on.
SUPPORTED_ENCODERS = ("bert", "roberta")
ADAPTER_META = "lineage_adapter.json"
WEIGHTS_FILE = "model.safetensors"

Layout = Literal["model", "adapter", "quantized"]


@dataclass(frozen=True)
class ModelInfo:
    """What a directory holds, read from its config and safetensors header only."""

    path: Path
    layout: Layout
    model_type: str | None
    has_head: bool
    labels: tuple[str, ...] | None
    config: dict[str, Any] = field(repr=False)

    @property
    def num_labels(self) -> int | None:
        return len(self.labels) if self.labels else None


@contextmanager
def quiet_transformers() -> Iterator[None]:
    """Silence transformers' load reports and progress bars; restore afterwards."""
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity(logging.ERROR)  # = set_verbosity_error(), unannotated upstream
    hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]  # unannotated upstream
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
        if bars:
            hf_logging.enable_progress_bar()  # type: ignore[no-untyped-call]  # unannotated upstream


def read_json_object(path: Path) -> dict[str, Any]:
    """A JSON object from `path`; anything else is one `WeightsError` line."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise WeightsError(f"cannot read {path}: {exc}") from None
    if not isinstance(data, dict):
        raise WeightsError(f"{path} is not a JSON object")
    return data


def safetensors_keys(path: Path) -> list[str]:
    """Tensor names in a safetensors file, from its header (no tensor is read)."""
    return list(read_header(path)[0])


def head_labels(
    config: Mapping[str, Any], shapes: Mapping[str, Sequence[int]]
) -> tuple[str, ...] | None:
    """The label names of the classification head in weights with these tensor shapes,
    or None when they have no head. `config` is the model's `config.json`."""
    if not any(k.startswith("classifier.") or ".classifier." in k for k in shapes):
        return None
    id2label = config.get("id2label") or {}
    labels = tuple(str(id2label[k]) for k in sorted(id2label, key=int))
    # transformers omits id2label when it is the default LABEL_0..N-1.
    return labels or tuple(f"LABEL_{i}" for i in range(_head_size(shapes)))


def _head_size(shapes: Mapping[str, Sequence[int]]) -> int:
    # The head's output matrix: `classifier.weight` (BERT) or `classifier.out_proj.weight`
    # (RoBERTa, after a dense layer), possibly stored as int8 codes.
    candidates = [
        k
        for k in shapes
        if "classifier" in k and k.endswith((".weight", INT8_SUFFIX)) and ".dense." not in k
    ]
    if not candidates:
        raise WeightsError("the classification head has no weight matrix")
    return int(shapes[min(candidates, key=len)][0])


def inspect_model(path: str | Path) -> ModelInfo:
    """Describe the model directory at `path`; `WeightsError` if it is not one.

    >>> from lineage.bundled import minilm_path
    >>> info = inspect_model(minilm_path())
    >>> info.layout, info.model_type, info.has_head
    ('model', 'bert', False)
    """
    path = Path(path)
    if not path.is_dir():
        raise WeightsError(f"model directory {str(path)!r} does not exist")
    if (path / "adapter_config.json").is_file():
        if not (path / "adapter_model.safetensors").is_file():
            raise WeightsError(f"adapter directory {path} has no adapter_model.safetensors")
        meta = read_json_object(path / ADAPTER_META) if (path / ADAPTER_META).is_file() else {}
        labels = meta.get("labels")
        return ModelInfo(
            path,
            "adapter",
            meta.get("base_model_type"),
            bool(labels),
            tuple(labels) if labels else None,
            read_json_object(path / "adapter_config.json"),
        )
    if not (path / "config.json").is_file():
        raise WeightsError(f"{path} is not a Hugging Face model directory (no config.json)")
    config = read_json_object(path / "config.json")
    weights = path / WEIGHTS_FILE
    if not weights.is_file():
        pickled = sorted(p.name for p in path.iterdir() if p.suffix.lower() in PICKLE_SUFFIXES)
        if pickled:
            raise WeightsError(
                f"{path} holds pickled weights ({', '.join(pickled)}); lineage never "
                "unpickles: convert them to model.safetensors"
            )
        raise WeightsError(f"{path} has no {WEIGHTS_FILE} (sharded checkpoints are not supported)")
    entries, _, _ = read_header(weights)
    labels = head_labels(config, {name: entry.get("shape", []) for name, entry in entries.items()})
    layout: Layout = "quantized" if is_quantized_config(config) else "model"
    return ModelInfo(path, layout, config.get("model_type"), labels is not None, labels, config)


def require_encoder(
    path: Path, recipe_id: str, *, allow: tuple[Layout, ...] = ("model",)
) -> ModelInfo:
    """`inspect_model`, then `RecipeError` unless the recipe can train this parent."""
    try:
        info = inspect_model(path)
    except WeightsError as exc:
        raise RecipeError(f"recipe {recipe_id!r}: parent {exc}") from None
    if info.layout not in allow:
        hint = {
            "adapter": "merge the adapter first (lora with merge=true) or derive from its base",
            "quantized": "derive from the float model instead",
        }.get(info.layout, "")
        raise RecipeError(
            f"recipe {recipe_id!r} cannot use parent {path}: "
            f"it is a {info.layout} directory; {hint}"
        )
    if info.model_type not in SUPPORTED_ENCODERS:
        raise RecipeError(
            f"recipe {recipe_id!r} cannot use parent {path}: architecture "
            f"{info.model_type!r} is not supported (supported: {', '.join(SUPPORTED_ENCODERS)})"
        )
    return info


def load_tokenizer(*candidates: Path | None) -> PreTrainedTokenizerBase:
    """The tokenizer of the first directory in `candidates` that has one."""
    from transformers import AutoTokenizer

    for path in candidates:
        if path is not None and (
            (path / "tokenizer.json").is_file() or (path / "vocab.txt").is_file()
        ):
            with quiet_transformers():
                return AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    names = ", ".join(str(p) for p in candidates if p is not None)
    raise WeightsError(f"no tokenizer files in {names}")


def load_classifier(
    path: Path, labels: tuple[str, ...], *, info: ModelInfo | None = None
) -> PreTrainedModel:
    """Load `path` as a sequence classifier for `labels`.

    A parent that already has a head for exactly these labels keeps it (continued
    fine-tuning); otherwise a fresh head is initialised from the current torch seed.
    """
    from transformers import AutoModelForSequenceClassification

    info = info or inspect_model(path)
    id2label = dict(enumerate(labels))
    same_head = info.has_head and info.labels == tuple(labels)
    if info.has_head and not same_head:
        log.warning(
            "parent %s has a head for %s; re-initialising it for %s", path, info.labels, labels
        )
    with quiet_transformers():
        model: PreTrainedModel = AutoModelForSequenceClassification.from_pretrained(
            str(path),
            num_labels=len(labels),
            id2label=id2label,
            label2id={v: k for k, v in id2label.items()},
            ignore_mismatched_sizes=True,
            local_files_only=True,
        )
    if info.has_head and not same_head:
        for module in model.get_submodule("classifier").modules():
            reset = getattr(module, "reset_parameters", None)
            if reset is not None:
                reset()
    return model


def load_plain(path: Path, info: ModelInfo | None = None) -> PreTrainedModel:
    """Load a `model` directory as what it is: classifier if it has a head, else encoder.

    `WeightsError` if its weights do not fill the model its config describes: a tensor
    left to random initialisation is a wrong model, not a warning.
    """
    from transformers import AutoModel, AutoModelForSequenceClassification

    info = info or inspect_model(path)
    cls = AutoModelForSequenceClassification if info.has_head else AutoModel
    model: PreTrainedModel
    with quiet_transformers():
        model, loading = cls.from_pretrained(
            str(path), local_files_only=True, output_loading_info=True
        )
    require_complete(
        path,
        loading.get("missing_keys", ()),
        loading.get("unexpected_keys", ()),
        encoder_only=not info.has_head,
    )
    return model


#: Tensors an encoder without a head (`AutoModel`) may lack or carry harmlessly: the
#: pretraining heads of BERT (`cls.`) and RoBERTa (`lm_head.`) are not part of it, and
#: its pooler is never used by lineage, which mean-pools the hidden states.
_ENCODER_UNEXPECTED_OK = ("cls.", "lm_head.")
_ENCODER_MISSING_OK = ("pooler.",)


def require_complete(
    path: Path,
    missing: Iterable[str],
    unexpected: Iterable[str],
    *,
    encoder_only: bool = False,
) -> None:
    """`WeightsError` (one line) unless a checkpoint filled its model exactly."""
    absent = sorted(k for k in missing if not (encoder_only and k.startswith(_ENCODER_MISSING_OK)))
    extra = sorted(
        k for k in unexpected if not (encoder_only and k.startswith(_ENCODER_UNEXPECTED_OK))
    )
    if not absent and not extra:
        return
    parts = [
        f"{len(keys)} {what} ({', '.join(keys[:3])}{', ...' if len(keys) > 3 else ''})"
        for what, keys in (("missing", absent), ("unexpected", extra))
        if keys
    ]
    raise WeightsError(
        f"the weights in {path} do not match the model its config describes: "
        f"{'; '.join(parts)} tensors; refusing to initialise them at random"
    )


def load_for_inference(
    path: str | Path, base_dir: str | Path | None = None
) -> tuple[torch.nn.Module, PreTrainedTokenizerBase, ModelInfo]:
    """Load any lineage model directory as a float32 eval-mode model.

    `base_dir` is needed for an adapter directory (its base model; for a test run
    that is the parent version). Returns `(model, tokenizer, info)`.

    >>> from lineage.bundled import minilm_path
    >>> model, tok, info = load_for_inference(minilm_path())
    >>> type(model).__name__, info.has_head
    ('BertModel', False)
    """
    import torch

    path = Path(path)
    base = Path(base_dir) if base_dir is not None else None
    info = inspect_model(path)
    model = _load_layout(path, base, info).to(torch.float32).eval()
    return model, load_tokenizer(path, base), info


def _load_layout(path: Path, base: Path | None, info: ModelInfo) -> torch.nn.Module:
    # Typed as the torch module the caller runs: transformers annotates its overrides of
    # `to` and `eval` wrongly or not at all (they are still the ones called).
    if info.layout == "adapter":
        return _load_adapter_merged(path, base, info)
    if info.layout == "quantized":
        return _load_quantized(path, info)
    return load_plain(path, info)


def _load_adapter_merged(path: Path, base: Path | None, info: ModelInfo) -> PreTrainedModel:
    from peft import PeftModel, get_peft_model_state_dict

    if base is None:
        raise WeightsError(
            f"{path} is a LoRA adapter: its base model directory is needed to load it"
        )
    base_info = inspect_model(base)
    if base_info.layout != "model":
        raise WeightsError(f"base {base} of adapter {path} must be a float model directory")
    labels = info.labels
    base_model = (
        load_classifier(base, labels, info=base_info) if labels else load_plain(base, base_info)
    )
    try:
        with quiet_transformers():
            peft_model = PeftModel.from_pretrained(base_model, str(path), is_trainable=False)
    except KeyError as exc:  # PEFT looks a module's saved tensor up by name
        raise WeightsError(
            f"the weights in {path} do not match the adapter its config describes: "
            f"1 missing ({exc.args[0]}) tensors"
        ) from None
    except (RuntimeError, ValueError) as exc:  # shape mismatches, bad configs
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise WeightsError(f"cannot load adapter {path} on base {base}: {first}") from None
    # PEFT only warns about adapter tensors it did not find; an adapter whose head or
    # LoRA matrices did not load would predict with random or untrained ones.
    expected = set(get_peft_model_state_dict(peft_model))
    stored = set(safetensors_keys(path / "adapter_model.safetensors"))
    require_complete(path, expected - stored, stored - expected)
    return merged(peft_model)


def merged(peft_model: PeftModel) -> PreTrainedModel:
    """The adapter folded into its base model (`merge_and_unload`)."""
    # PEFT types the result as a plain Module; it is the transformers base model.
    return cast("PreTrainedModel", peft_model.merge_and_unload())


def _load_quantized(path: Path, info: ModelInfo) -> PreTrainedModel:
    from safetensors.torch import load_file
    from transformers import AutoConfig, AutoModel, AutoModelForSequenceClassification

    from lineage.recipes.int8 import dequantize_tensors

    with quiet_transformers():
        config = AutoConfig.from_pretrained(str(path), local_files_only=True)
        cls = AutoModelForSequenceClassification if info.has_head else AutoModel
        model: PreTrainedModel = cls.from_config(config)  # type: ignore[no-untyped-call]  # unannotated upstream
    state = dequantize_tensors(load_file(str(path / WEIGHTS_FILE)))
    missing, unexpected = model.load_state_dict(state, strict=False)
    # Non-persistent buffers (position ids) are never in a checkpoint.
    missing = [k for k in missing if not k.endswith("position_ids")]
    require_complete(path, missing, unexpected, encoder_only=not info.has_head)
    return model


def save_model(model: PreTrainedModel, out_dir: Path) -> None:
    """`save_pretrained` as safetensors, after making every tensor contiguous.

    Contiguity matters for bit-identical output: a transposed view would be
    serialised after an implicit copy whose layout is an implementation detail.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    for p in model.parameters():
        if not p.data.is_contiguous():
            p.data = p.data.contiguous()
    with quiet_transformers():
        model.save_pretrained(str(out_dir))


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Write JSON with sorted keys and a final newline (stable bytes for the store)."""
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
