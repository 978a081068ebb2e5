"""One definition of the batch-size buckets, shared by the scorer and the worker's batcher."""

from __future__ import annotations

import pytest

from inference.buckets import bucket_for, bucket_sizes


def test_buckets_are_the_powers_of_two_up_to_the_cap() -> None:
    assert bucket_sizes(1) == (1,)
    assert bucket_sizes(300) == (1, 2, 4, 8, 16, 32, 64, 128, 256)
    with pytest.raises(ValueError, match="max_batch"):
        bucket_sizes(0)


def test_a_batch_runs_in_the_smallest_bucket_that_holds_it() -> None:
    assert [bucket_for(n) for n in (0, 1, 2, 3, 4, 5, 64, 65)] == [1, 1, 2, 4, 4, 8, 64, 128]
    assert bucket_for(300, largest=256) == 256
    assert bucket_for(3, largest=256) == 4
