"""Loading labelled text-classification data from TSV, CSV or JSONL files, plain texts, and carving validation
splits."""

from __future__ import annotations

import csv
import gzip
import json
import lzma
import random
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TypeVar

from service.runtime.errors import ConfigError, MissingFile

TEXT_COLUMNS = ("sentence", "text", "sentence1", "#1 String", "question", "premise")
PAIR_COLUMNS = ("sentence2", "#2 String", "text_pair", "hypothesis")
LABEL_COLUMNS = ("label", "Quality", "score", "labels")

csv.field_size_limit(sys.maxsize)
T = TypeVar("T")


@dataclass(frozen=True)
class Example:
    """One labelled input: a text, an optional second text and a label (class name or number)."""

    text: str
    label: str
    text_pair: str | None = None


COMPRESSED = {".gz": gzip.open, ".xz": lzma.open}
"""Compressed data files, read as they are: the file suffix and its opener."""


def open_text(path: Path) -> IO[str]:
    """A text file, plain, gzipped (.gz) or xz-compressed (.xz), as UTF-8 (a byte-order mark is skipped)."""
    opener = COMPRESSED.get(path.suffix)
    if opener is not None:
        return opener(path, "rt", encoding="utf-8-sig", newline="")  # type: ignore[operator, no-any-return]
    return path.open(encoding="utf-8-sig", newline="")


def format_suffix(path: Path) -> str:
    """The suffix that names a data file's format (``.tsv`` of ``train.tsv.gz``), lower case; empty without one."""
    suffixes = [s for s in path.suffixes if s not in COMPRESSED]
    return suffixes[-1].lower() if suffixes else ""


def _file_format(path: Path) -> str:
    fmt = format_suffix(path).lstrip(".")
    if fmt not in ("tsv", "csv", "jsonl", "json"):
        raise ConfigError(f"{path}: unknown data format {fmt!r}; use a .tsv, .csv or .jsonl file")
    return "jsonl" if fmt == "json" else fmt


def _rows(path: Path) -> Iterator[dict[str, str]]:
    fmt = _file_format(path)
    with open_text(path) as handle:
        if fmt == "jsonl":
            for number, line in enumerate(handle, start=1):
                if line.strip():
                    try:
                        yield {k: str(v) for k, v in json.loads(line).items()}
                    except json.JSONDecodeError as exc:
                        raise ConfigError(f"{path}:{number}: not valid JSON: {exc}") from exc
            return
        if fmt == "tsv":
            reader = csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
        else:
            reader = csv.DictReader(handle)
        yield from reader


def _pick(columns: list[str], wanted: str | None, candidates: tuple[str, ...], what: str) -> str | None:
    if wanted is not None:
        if wanted not in columns:
            raise ConfigError(f"{what} column {wanted!r} not found; the file has columns {columns}")
        return wanted
    return next((c for c in candidates if c in columns), None)


def load_examples(
    path: str | Path,
    text_column: str | None = None,
    text_pair_column: str | None = None,
    label_column: str | None = None,
) -> list[Example]:
    """Read labelled examples; column names are detected from common names unless given."""
    path = Path(path)
    if not path.is_file():
        raise MissingFile(f"data file not found: {path}")
    rows = iter(_rows(path))
    first = next(rows, None)
    if first is None:
        raise ConfigError(f"{path}: no rows")
    columns = list(first.keys())
    text_col = _pick(columns, text_column, TEXT_COLUMNS, "text")
    label_col = _pick(columns, label_column, LABEL_COLUMNS, "label")
    if text_col is None or label_col is None:
        raise ConfigError(
            f"{path}: cannot tell the text and label columns among {columns}; "
            "pass --text-column and --label-column"
        )
    pair_col = _pick(columns, text_pair_column, PAIR_COLUMNS, "text pair")
    examples = []
    for number, row in enumerate([first, *rows], start=2):
        text, label = row.get(text_col), row.get(label_col)
        if text is None or label is None or not text.strip():
            raise ConfigError(f"{path}: row {number} has no {text_col!r} or {label_col!r} value")
        pair = row.get(pair_col) if pair_col else None
        examples.append(Example(text=text.strip(), label=label.strip(), text_pair=pair.strip() if pair else None))
    return examples


def load_texts(path: str | Path, text_column: str | None = None) -> list[str]:
    """Plain texts for label-free training: a .txt file (one text a line, blank lines skipped), or every text of a
    .tsv, .csv or .jsonl file's text column (and of its pair column, when it has one)."""
    path = Path(path)
    if not path.is_file():
        raise MissingFile(f"data file not found: {path}")
    if ".txt" in path.suffixes:
        with open_text(path) as handle:
            texts = [line.strip() for line in handle if line.strip()]
    else:
        rows = list(_rows(path))
        columns = list(rows[0].keys()) if rows else []
        text_col = _pick(columns, text_column, TEXT_COLUMNS, "text")
        if text_col is None:
            raise ConfigError(f"{path}: cannot tell the text column among {columns}; pass --text-column")
        pair_col = _pick(columns, None, PAIR_COLUMNS, "text pair")
        texts = [row[c].strip() for row in rows for c in (text_col, pair_col) if c and (row.get(c) or "").strip()]
    if not texts:
        raise ConfigError(f"{path}: no texts")
    return texts


def split_validation(examples: list[T], validation_fraction: float, seed: int) -> tuple[list[T], list[T]]:
    """Carve a validation split from training examples (or groups of them) with a fixed seed: (train, validation)."""
    if not 0.0 < validation_fraction < 1.0:
        raise ConfigError("validation fraction must be between 0 and 1")
    order = list(range(len(examples)))
    random.Random(seed).shuffle(order)
    size = max(1, round(len(examples) * validation_fraction))
    held_out = set(order[:size])
    train = [e for i, e in enumerate(examples) if i not in held_out]
    validation = [examples[i] for i in sorted(held_out)]
    return train, validation


def label_names(examples: list[Example]) -> list[str]:
    """Sorted distinct labels (numeric labels sort numerically)."""
    labels = {e.label for e in examples}
    if all(label.lstrip("-").isdigit() for label in labels):
        return sorted(labels, key=int)
    return sorted(labels)
