"""Per-partition commit watermarks: commit only what is contiguously done.

Batches finish out of order (a dead letter is acknowledged before the score of an earlier event,
a retried send lands after later ones), so "the highest acknowledged offset" is not safe to
commit. For each partition we keep the offsets consumed, in consumption order, and pop from the
front while the front is done; the commit point is one past the last popped offset.

Worked example, partition 3, offsets consumed 10..14::

    acks arrive for 10, 12, 13      queue: [10✓, 11, 12✓, 13✓, 14]   pop 10 -> commit 11
    ack arrives for 11              queue: [11✓, 12✓, 13✓, 14]       pop 11..13 -> commit 14
    ack arrives for 14              queue: [14✓]                      pop 14 -> commit 15

Offsets need not be consecutive (transaction markers and compaction leave holes): only the
order of consumption matters. All methods are thread-safe: the poll thread tracks, the
producer's I/O thread completes, the poll thread commits.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass, field

from kafka.structs import TopicPartition


@dataclass
class _PartitionState:
    consumed: deque[int] = field(default_factory=deque)
    outstanding: set[int] = field(default_factory=set)
    done: set[int] = field(default_factory=set)
    watermark: int | None = None  # next offset to commit (one past the last contiguous done)
    committed: int | None = None  # last watermark committed

    def advance(self) -> None:
        while self.consumed and self.consumed[0] in self.done:
            offset = self.consumed.popleft()
            self.done.discard(offset)
            self.watermark = offset + 1


class OffsetTracker:
    """Tracks in-flight offsets. Every reset starts a new *epoch*; acknowledgements carrying an
    older epoch (work abandoned by a rebalance or rewind) are ignored, so they can never move a
    watermark of the work that replaced them."""

    def __init__(self) -> None:
        self._lock = threading.Condition()
        self._partitions: dict[TopicPartition, _PartitionState] = {}
        self._pending = 0
        self._epoch = 0

    @property
    def epoch(self) -> int:
        return self._epoch

    def track(self, tp: TopicPartition, offset: int) -> int:
        """Record that ``offset`` of ``tp`` was consumed and is now in flight; returns the epoch
        to hand back to :meth:`complete`."""
        with self._lock:
            state = self._partitions.setdefault(tp, _PartitionState())
            if state.consumed and offset <= state.consumed[-1]:
                raise ValueError(f"{tp.topic}[{tp.partition}]@{offset} consumed out of order")
            state.consumed.append(offset)
            state.outstanding.add(offset)
            self._pending += 1
            return self._epoch

    def complete(self, tp: TopicPartition, offset: int, epoch: int) -> bool:
        """Mark an offset done (its score or dead letter is acknowledged). False, and no effect,
        if it is not in flight in this epoch."""
        with self._lock:
            state = self._partitions.get(tp)
            if epoch != self._epoch or state is None or offset not in state.outstanding:
                return False
            state.outstanding.discard(offset)
            state.done.add(offset)
            self._pending -= 1
            state.advance()
            if self._pending == 0:
                self._lock.notify_all()
            return True

    def committable(self) -> dict[TopicPartition, int]:
        """Partitions whose watermark moved since the last commit -> next offset to commit."""
        with self._lock:
            return {
                tp: state.watermark
                for tp, state in self._partitions.items()
                if state.watermark is not None and state.watermark != state.committed
            }

    def advance_idle(self, tp: TopicPartition, position: int) -> None:
        """Move an idle partition's watermark up to the consumer's ``position``.

        With nothing of ``tp`` in flight, every offset below the position is either done or was never
        handed to the worker: transaction markers, records of aborted transactions that
        ``read_committed`` skips, compacted gaps. Committing the position, not one past the last
        record, lets the group's committed offset reach the partition's end (lag 0, as for any
        client), instead of stopping one short of every trailing marker.
        """
        with self._lock:
            state = self._partitions.setdefault(tp, _PartitionState())
            if state.consumed:
                return
            if state.watermark is None or position > state.watermark:
                state.watermark = position

    def mark_committed(self, offsets: dict[TopicPartition, int]) -> None:
        with self._lock:
            for tp, offset in offsets.items():
                state = self._partitions.get(tp)
                if state is not None:
                    state.committed = offset

    def pending(self) -> int:
        """Events consumed and not yet done, over all partitions."""
        with self._lock:
            return self._pending

    def pending_by_partition(self) -> dict[TopicPartition, int]:
        with self._lock:
            return {tp: len(s.outstanding) for tp, s in self._partitions.items() if s.outstanding}

    def replay_points(self) -> dict[TopicPartition, int]:
        """Per partition with work in flight: the first offset not yet done, i.e. where a replay
        must start so that nothing unacknowledged is skipped."""
        with self._lock:
            return {tp: s.consumed[0] for tp, s in self._partitions.items() if s.consumed}

    def wait_drained(self, timeout_s: float) -> bool:
        """Block until nothing is in flight, or the timeout passes; True if drained."""
        with self._lock:
            return self._lock.wait_for(lambda: self._pending == 0, timeout=timeout_s)

    def reset(self) -> int:
        """Forget everything (after a rebalance or a rewind) and start a new epoch; returns it."""
        with self._lock:
            self._partitions.clear()
            self._pending = 0
            self._epoch += 1
            self._lock.notify_all()
            return self._epoch
