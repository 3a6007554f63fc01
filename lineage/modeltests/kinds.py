"""What each test kind measures. Each returns `(metric, value, threshold, passed, details)`.

Lower-is-better budgets (size, latency) pass when `value <= threshold`; scores
(accuracy, f1, invariance) when `value >= threshold`.
"""

from __future__ import annotations

import random
import statistics
import time
from pathlib import Path
from typing import Any

from lineage.datasets import Example, TextDataset
from lineage.errors import ModelTestError
from lineage.modeltests.declarations import (
    AccuracyParams,
    DataParams,
    F1Params,
    InvarianceParams,
    LatencyParams,
    NoRegressionParams,
    SizeParams,
    UserParams,
    resolve_user_test,
)
from lineage.modeltests.outcome import TestOutcome
from lineage.modeltests.perturb import PERTURBATIONS
from lineage.modeltests.predictor import Predictor
from lineage.recipes.hf import inspect_model, load_for_inference, safetensors_keys
from lineage.recipes.training import accuracy, encode, macro_f1, no_grad

Measured = tuple[str, float | None, float | None, bool, dict[str, Any]]

_FALLBACK_TEXTS = [
    "The quick brown fox jumps over the lazy dog.",
    "Lineage keeps track of how every model was made.",
    "This sentence is here to time a forward pass.",
]


def _examples(data: TextDataset, p: DataParams) -> tuple[Example, ...]:
    examples = data.split(p.split)
    return examples[: p.max_examples] if p.max_examples else examples


def score(
    model_dir: Path, base_dir: Path | None, data: TextDataset, p: DataParams, metric: str
) -> tuple[float, dict[str, Any]]:
    """Accuracy or macro-F1 of the model on the params' split."""
    predictor = Predictor(model_dir, base_dir, data, max_length=p.max_length)
    examples = _examples(data, p)
    pred = predictor.predict([e.text for e in examples])
    gold = [e.label for e in examples]
    value = accuracy(pred, gold) if metric == "accuracy" else macro_f1(pred, gold, len(data.labels))
    details = {
        "examples": len(examples),
        "split": p.split,
        "dataset": data.name,
        "data_fingerprint": data.fingerprint,
        "predictor": predictor.mode,
    }
    if predictor.note:
        details["note"] = predictor.note
    return value, details


def run_accuracy(
    model_dir: Path,
    parent_dir: Path | None,
    data: TextDataset,
    p: AccuracyParams | F1Params,
    metric: str,
) -> Measured:
    value, details = score(model_dir, parent_dir, data, p, metric)
    return metric, value, p.threshold, value >= p.threshold, details


def run_no_regression(
    model_dir: Path, parent_dir: Path | None, data: TextDataset, p: NoRegressionParams
) -> Measured:
    value, details = score(model_dir, parent_dir, data, p, p.metric)
    if parent_dir is None:
        details["skipped"] = "no parent to compare against"
        return p.metric, value, None, True, details
    # An adapter's parent is its base; the parent itself is scored as what it is.
    parent_value, parent_details = score(parent_dir, None, data, p, p.metric)
    threshold = parent_value - p.max_drop
    details |= {
        "parent_value": parent_value,
        "parent_predictor": parent_details["predictor"],
        "max_drop": p.max_drop,
    }
    return p.metric, value, threshold, value >= threshold - 1e-12, details


def run_invariance(
    model_dir: Path, parent_dir: Path | None, data: TextDataset, p: InvarianceParams
) -> Measured:
    predictor = Predictor(model_dir, parent_dir, data, max_length=p.max_length)
    texts = [e.text for e in _examples(data, p)]
    base = predictor.predict(texts)
    per_kind: dict[str, float] = {}
    unchanged = total = 0
    for name in p.perturbations:
        rng = random.Random(f"{p.seed}-{name}")
        perturbed = [PERTURBATIONS[name](t, rng, p.rate) for t in texts]
        pred = predictor.predict(perturbed)
        same = sum(int(a == b) for a, b in zip(base, pred, strict=True))
        per_kind[name] = same / len(texts) if texts else 1.0
        unchanged += same
        total += len(texts)
    value = unchanged / total if total else 1.0
    details = {"per_perturbation": per_kind, "examples": len(texts), "predictor": predictor.mode}
    return "unchanged_fraction", value, p.threshold, value >= p.threshold, details


def run_size(
    model_dir: Path, parent_dir: Path | None, data: TextDataset | None, p: SizeParams
) -> Measured:
    import torch

    inspect_model(model_dir)  # a clear error for a directory that is not a model
    from safetensors import safe_open

    files = sorted(model_dir.glob("*.safetensors"))
    # The prune mask is bookkeeping, not weights the model runs with.
    files = [f for f in files if f.name != "prune_mask.safetensors"]
    n_bytes = sum(f.stat().st_size for f in files)
    n_params = 0
    for f in files:
        with safe_open(str(f), framework="pt") as fh:
            for k in safetensors_keys(f):
                if not k.endswith(".weight_scale"):
                    shape = fh.get_slice(k).get_shape()
                    n_params += int(torch.tensor(shape).prod().item()) if shape else 1
    details = {"bytes": n_bytes, "params": n_params, "files": [f.name for f in files]}
    checks = []
    if p.max_bytes is not None:
        checks.append(("bytes", float(n_bytes), float(p.max_bytes)))
    if p.max_params is not None:
        checks.append(("params", float(n_params), float(p.max_params)))
    # Report the tightest budget (largest used fraction) as the metric.
    metric, value, threshold = max(checks, key=lambda c: c[1] / c[2])
    passed = all(v <= t for _, v, t in checks)
    return metric, value, threshold, passed, details


@no_grad
def run_latency(
    model_dir: Path, parent_dir: Path | None, data: TextDataset | None, p: LatencyParams
) -> Measured:
    import torch

    model, tokenizer, _ = load_for_inference(model_dir, parent_dir)
    if data is not None:
        texts = [e.text for e in _examples(data, p)]
    else:
        texts = (_FALLBACK_TEXTS * (1 + (p.max_examples or 8) // 3))[: p.max_examples or 8]
    prev = torch.get_num_threads()
    torch.set_num_threads(p.threads)
    try:
        for t in texts[: p.warmup]:
            model(**encode(tokenizer, [t], p.max_length))
        times = []
        for t in texts:
            enc = encode(tokenizer, [t], p.max_length)
            start = time.perf_counter()
            model(**enc)
            times.append((time.perf_counter() - start) * 1000)
    finally:
        torch.set_num_threads(prev)
    value = statistics.median(times)
    details = {
        "examples": len(times),
        "mean_ms": statistics.fmean(times),
        "threads": p.threads,
        "statistic": "median",
    }
    return "ms_per_example", value, p.max_ms, value <= p.max_ms, details


def run_user(
    model_dir: Path, parent_dir: Path | None, data: TextDataset | None, p: UserParams, name: str
) -> Measured:
    fn = resolve_user_test(p.ref, name)
    raw = fn(model_dir, parent_dir, data, dict(p.args))
    if isinstance(raw, TestOutcome):
        return raw.metric, raw.value, raw.threshold, raw.passed, raw.details
    if isinstance(raw, bool):
        return "passed", float(raw), None, raw, {}
    if isinstance(raw, int | float):
        value = float(raw)
        if p.threshold is None:
            raise ModelTestError(
                f"test {name!r}: {p.ref} returned a number but no threshold is set"
            )
        passed = value >= p.threshold if p.higher_is_better else value <= p.threshold
        return "value", value, p.threshold, passed, {}
    if isinstance(raw, dict) and "passed" in raw:
        details = {
            k: v for k, v in raw.items() if k not in ("metric", "value", "threshold", "passed")
        }
        return (
            str(raw.get("metric", "value")),
            raw.get("value"),
            raw.get("threshold", p.threshold),
            bool(raw["passed"]),
            details,
        )
    raise ModelTestError(
        f"test {name!r}: {p.ref} returned {type(raw).__name__}; expected a number, a bool, "
        "a dict with 'passed', or a TestOutcome"
    )
