"""Batch-size buckets: the power-of-two shapes the scorer runs and the batcher estimates time for.

Pure arithmetic (no torch), so the worker's batcher and the scorer share one definition.
"""

from __future__ import annotations


def bucket_sizes(max_batch: int) -> tuple[int, ...]:
    """Powers of two from 1 up to ``max_batch`` rounded down to a power of two."""
    if max_batch < 1:
        raise ValueError("max_batch must be >= 1")
    return tuple(1 << exponent for exponent in range(max_batch.bit_length()))


def bucket_for(size: int, largest: int | None = None) -> int:
    """The smallest power of two holding ``size`` items, at most ``largest`` (when given)."""
    bucket = 1 << max(0, (max(1, size) - 1).bit_length())
    return bucket if largest is None else min(bucket, largest)
