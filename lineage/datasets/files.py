"""Users' data sets from CSV or JSONL files with columns `text` and `label`.

An optional `split` column (`train`, `validation`, `test`) assigns examples to
splits; without it the rows are split 80/10/10 by a seeded shuffle. Every problem
is a `DataError` with one line naming the file and what is wrong with it.

>>> import tempfile, pathlib
>>> p = pathlib.Path(tempfile.mkdtemp()) / "d.csv"
>>> _ = p.write_text("text,label\\ngood,pos\\nbad,neg\\nok,pos\\n")
>>> load_file(p).labels
('neg', 'pos')
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from lineage.datasets.base import SPLITS, TextDataset
from lineage.errors import DataError

REQUIRED_COLUMNS = ("text", "label")

#: One row as read from the file (column name to value), with its line number.
Record = tuple[int, dict[str, Any]]


def load_file(path: str | Path) -> TextDataset:
    """Read a `.csv`, `.jsonl` or `.json` (JSON lines) file into a `TextDataset`."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"data file {str(path)!r} does not exist")
    suffix = path.suffix.lower()
    if suffix == ".csv":
        records, columns = _read_csv(path)
    elif suffix in (".jsonl", ".json", ".ndjson"):
        records, columns = _read_jsonl(path)
    else:
        raise DataError(
            f"data file {str(path)!r}: unsupported format {suffix!r} (use .csv or .jsonl)"
        )
    if not records:
        raise DataError(f"data file {str(path)!r} is empty (no rows)")
    missing = [c for c in REQUIRED_COLUMNS if c not in columns]
    if missing:
        raise DataError(
            f"data file {str(path)!r} lacks column(s) {', '.join(missing)} "
            f"(found: {', '.join(sorted(columns)) or 'none'}; need text and label)"
        )
    rows: list[tuple[str | None, str, str]] = []
    for line_no, rec in records:
        text, label = rec.get("text"), rec.get("label")
        if text is None or str(text).strip() == "":
            raise DataError(f"data file {str(path)!r}, row {line_no}: empty text")
        if label is None or str(label).strip() == "":
            raise DataError(f"data file {str(path)!r}, row {line_no}: empty label")
        split = rec.get("split")
        rows.append(
            (str(split) if split not in (None, "") else None, str(text), str(label).strip())
        )
    name = path.stem
    source = f"file:{path.name}"
    if "split" in columns:
        # str(): a missing split (None) is reported as a bad value too, and sorts with the rest.
        bad = sorted({str(s) for s, _, _ in rows if s not in SPLITS})
        if bad:
            raise DataError(
                f"data file {str(path)!r}: unknown split value(s) {', '.join(bad)} "
                f"(use {', '.join(SPLITS)})"
            )
        # Every split was checked above, so the filter only narrows the type.
        split_rows = [(s, t, lab) for s, t, lab in rows if s is not None]
        return TextDataset.from_split_rows(name, split_rows, source=source)
    return TextDataset.from_rows(name, [(t, lab) for _, t, lab in rows], source=source)


def _read_csv(path: Path) -> tuple[list[Record], set[str]]:
    try:
        with path.open(newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            columns = {c.strip() for c in (reader.fieldnames or [])}
            records = [
                (i + 2, {(k or "").strip(): v for k, v in row.items()})
                for i, row in enumerate(reader)
            ]
    except (UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"data file {str(path)!r} is not valid UTF-8 CSV: {exc}") from None
    return records, columns


def _read_jsonl(path: Path) -> tuple[list[Record], set[str]]:
    records: list[Record] = []
    columns: set[str] = set()
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as exc:
        raise DataError(f"data file {str(path)!r} is not valid UTF-8: {exc}") from None
    for i, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"data file {str(path)!r}, line {i}: not JSON ({exc.msg})") from None
        if not isinstance(rec, dict):
            raise DataError(f"data file {str(path)!r}, line {i}: expected a JSON object")
        records.append((i, rec))
        columns.update(rec)
    # A column counts as present only if every row has it (JSONL has no header).
    for _, rec in records:
        columns &= set(rec)
    return records, columns
