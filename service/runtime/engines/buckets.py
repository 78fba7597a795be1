"""Shape buckets for engines compiled for static shapes: pick the nearest compiled shape and pad up to it."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from service.runtime.engines.base import EngineOptions
from service.runtime.errors import ConfigError

SMALLEST_SEQUENCE_BUCKET = 32


def default_sequence_buckets(max_length: int) -> tuple[int, ...]:
    """32, 64, 128, ... below `max_length`, then `max_length`."""
    buckets = []
    length = SMALLEST_SEQUENCE_BUCKET
    while length < max_length:
        buckets.append(length)
        length *= 2
    return (*buckets, max_length)


def checked_buckets(buckets: Iterable[int], largest: int | None, what: str) -> tuple[int, ...]:
    """Sorted unique buckets, each at least 1 and, when `largest` is given, at most `largest`; else ConfigError."""
    result = tuple(sorted(set(buckets)))
    if not result or result[0] < 1 or (largest is not None and result[-1] > largest):
        limit = f" and at most {largest}" if largest is not None else ""
        raise ConfigError(f"{what} buckets {list(result)} must be non-empty, each at least 1{limit}")
    return result


def bucket_grid(options: EngineOptions) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """The batch and sequence buckets of an engine compiled for static shapes: the options' own, else batch 1 and
    max_batch_size, and the default sequence buckets up to max_length; ConfigError when invalid."""
    batch = checked_buckets(options.batch_buckets or (1, options.max_batch_size), None, "batch")
    sequence = checked_buckets(
        options.sequence_buckets or default_sequence_buckets(options.max_length), options.max_length, "sequence"
    )
    return batch, sequence


def fitting_bucket(buckets: tuple[int, ...], size: int) -> int:
    """The smallest bucket that holds `size`; ValueError when none does."""
    for bucket in buckets:
        if bucket >= size:
            return bucket
    raise ValueError(f"size {size} exceeds the largest compiled bucket {buckets[-1]}")


def pad_2d(array: np.ndarray, rows: int, columns: int) -> np.ndarray:
    """`array` [r, c] zero-padded at the end to [rows, columns], as a contiguous int64 array."""
    padded = np.zeros((rows, columns), dtype=np.int64)
    padded[: array.shape[0], : array.shape[1]] = array
    return padded
