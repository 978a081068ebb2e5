"""Account state in the stream (worker.state): no broker, a real LMDB store in a temporary folder.

The order rule (the n-th event of an account sees its n-1 earlier ones), commits folding into the
store with the changelog position, rollback to the committed state, replay after a crash never
applying an event twice, restore from a changelog (tail only, cleared on a mismatch, tombstones),
expiry sweeps, PAN-free keys, and the Source wiring (partitions held until restored).
"""

from __future__ import annotations

import json
import queue
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from unittest.mock import MagicMock

from kafka import KafkaConsumer
from kafka.consumer.fetcher import ConsumerRecord
from kafka.structs import TopicPartition

from inference.history import AccountHistory
from schemas import TransactionEvent, decode
from tests.schemas.test_decode import valid_event
from tests.worker.fakes import FakeEngine
from worker.admission import AdmissionController
from worker.metrics import WorkerMetrics
from worker.offsets import OffsetTracker
from worker.records import ConsumedRecord
from worker.source import Source
from worker.state import OFFSET_HEADER, LocalStore, PartitionState, StateStore, state_key

TOPIC = "transactions"
CHANGELOG = "transactions.state"
TP0 = TopicPartition(TOPIC, 0)
START = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)


def event(account: str, minutes: float, amount: str = "12.50", **changes: Any) -> TransactionEvent:
    data = valid_event()
    data.update(
        transaction_id=f"tx-{account}-{minutes}",
        account_id=account,
        amount=amount,
        event_time=(START + timedelta(minutes=minutes)).isoformat(),
        **changes,
    )
    decoded = decode(json.dumps(data).encode())
    assert isinstance(decoded, TransactionEvent), decoded
    return decoded


def replayed(events: Iterable[TransactionEvent]) -> dict[str, bytes]:
    """One clean pass, one event at a time: the reference state."""
    histories: dict[str, AccountHistory] = {}
    for e in events:
        histories.setdefault(e.account_id, AccountHistory()).observe(e)
    return {account: history.to_bytes() for account, history in histories.items()}


def partition_state(tmp_path: Path, **kw: Any) -> PartitionState:
    state = PartitionState(TP0, LocalStore(tmp_path / "p0", map_size=1 << 26), capacity=32, ttl_s=30 * 86_400, **kw)
    state.restored.set()
    return state


def feed(state: PartitionState, events: list[TransactionEvent], first_offset: int = 0) -> list[int]:
    """Apply events at consecutive offsets; the ``observed`` count each one was scored against."""
    seen = []
    for offset, e in enumerate(events, start=first_offset):
        reflected, history = state.history(e.account_id)
        seen.append(history.observed)
        state.apply(e.account_id, history, e, offset, reflected)
    return seen


# -- one partition ----------------------------------------------------------------------------------


def test_each_event_sees_the_earlier_events_of_its_account_in_offset_order(tmp_path: Path) -> None:
    state = partition_state(tmp_path)
    events = [event("a", 0), event("b", 1), event("a", 2), event("a", 3), event("b", 4)]
    assert feed(state, events) == [0, 0, 1, 2, 1]
    state.commit(len(events))
    assert state.snapshot() == replayed(events)


def test_a_commit_folds_only_the_versions_below_it(tmp_path: Path) -> None:
    state = partition_state(tmp_path)
    events = [event("a", 0), event("a", 1), event("a", 2)]
    feed(state, events)
    state.commit(2)  # offsets 0 and 1 committed, 2 still in flight
    assert state.store.get("a") == (1, replayed(events[:2])["a"])
    assert state.pending() == 1
    state.commit(3)
    assert state.store.get("a") == (2, replayed(events)["a"]) and state.pending() == 0


def test_a_rollback_returns_to_the_committed_state_and_the_replay_rebuilds_the_same(tmp_path: Path) -> None:
    state = partition_state(tmp_path)
    events = [event("a", 0), event("a", 1), event("b", 2), event("a", 3)]
    feed(state, events[:2])
    state.commit(2)
    feed(state, events[2:], first_offset=2)
    state.rollback()  # a rewind: offsets 2 and 3 are replayed
    assert state.history("a")[1] == AccountHistory.from_bytes(replayed(events[:2])["a"])
    assert state.history("b")[1].observed == 0
    assert feed(state, events[2:], first_offset=2) == [0, 2]
    state.commit(4)
    assert state.snapshot() == replayed(events)


def test_after_a_crash_a_replayed_event_is_not_applied_twice(tmp_path: Path) -> None:
    """At-least-once: the store may reflect offsets past the input's commit; the replay skips them."""
    state = partition_state(tmp_path)
    events = [event("a", 0), event("a", 1), event("a", 2)]
    feed(state, events)
    state.commit(3)  # the state of offset 2 is stored ...
    state.store.close()
    again = partition_state(tmp_path)  # ... but the input commit was at 1: offsets 1 and 2 come again
    reflected, history = again.history("a")
    assert reflected == 2
    assert again.apply("a", history, events[1], 1, reflected) is None
    assert again.apply("a", history, events[2], 2, reflected) is None
    update = again.apply("a", history, event("a", 5), 3, reflected)
    assert update is not None and update.offset == 3
    assert AccountHistory.from_bytes(update.value).observed == 4


def test_the_changelog_position_moves_only_past_written_and_committed_versions(tmp_path: Path) -> None:
    state = partition_state(tmp_path)
    first, second = event("a", 0), event("b", 1)
    reflected, history = state.history("a")
    update_a = state.apply("a", history, first, 0, reflected)
    reflected, history = state.history("b")
    update_b = state.apply("b", history, second, 1, reflected)
    assert update_a is not None and update_b is not None
    state.written(update_a, 40)
    state.written(update_b, 41)
    state.commit(1)  # only offset 0: the position passes changelog offset 40, not 41
    assert state.store.position() == 41
    state.commit(2)
    assert state.store.position() == 42


def test_the_memory_cache_is_bounded_and_keeps_what_is_in_flight(tmp_path: Path) -> None:
    state = partition_state(tmp_path, cache_accounts=2)
    events = [event(f"acct-{n}", n) for n in range(5)]
    feed(state, events)
    assert len(state._live) == 5  # all in flight: none may go
    state.commit(5)
    state.history("acct-0")
    assert len(state._live) == 2
    assert state.history("acct-3")[1] == AccountHistory.from_bytes(
        replayed(events)["acct-3"]
    )  # read back from the store


def test_a_sweep_expires_accounts_idle_past_the_ttl_a_chunk_at_a_time(tmp_path: Path) -> None:
    state = partition_state(tmp_path)
    state.ttl_s = 3_600
    events = [event(f"old-{n}", n) for n in range(7)] + [event("fresh", 300)]
    feed(state, events)
    state.commit(len(events))
    state.start_sweep()
    expired = state.sweep(limit=3) + state.sweep(limit=3) + state.sweep(limit=3)
    assert sorted(expired) == sorted(f"old-{n}" for n in range(7))
    assert set(state.snapshot()) == {"fresh"}
    assert state.sweep() == []  # the sweep is over until the next one starts


def test_a_card_number_used_as_an_account_id_never_becomes_a_key() -> None:
    key = state_key("4111111111111111", b"secret")
    assert "4111111111111111" not in key and key.startswith("pan:")
    assert key == state_key("4111111111111111", b"secret") != state_key("4111111111111111", b"other")
    assert state_key("acct-9f2c", b"secret") == "acct-9f2c"


# -- restore ------------------------------------------------------------------------------------


@dataclass
class Change:
    key: bytes
    value: bytes | None
    headers: list[tuple[str, bytes]]


class FakeChangelog:
    """Changelog partitions as a group-less read_committed consumer sees them: each entry occupies one
    offset from ``begin``; ``None`` is a transaction marker (an offset no record is returned for)."""

    def __init__(self, records: dict[int, list[Change | None]], begin: int = 0) -> None:
        self.records = records
        self.begin = begin

    def factory(self) -> Any:
        changelog = self
        positions: dict[TopicPartition, int] = {}

        class Consumer:
            def assign(self, tps: list[TopicPartition]) -> None:
                positions.update(dict.fromkeys(tps, 0))

            def beginning_offsets(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
                return dict.fromkeys(tps, changelog.begin)

            def end_offsets(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
                return {tp: changelog.end(tp.partition) for tp in tps}

            def seek(self, tp: TopicPartition, offset: int) -> None:
                positions[tp] = offset

            def position(self, tp: TopicPartition) -> int:
                return positions[tp]

            def pause(self, *tps: TopicPartition) -> None:
                for tp in tps:
                    positions.pop(tp, None)

            def poll(self, timeout_ms: int, max_records: int) -> dict[TopicPartition, list[Change]]:
                out = {}
                for tp, position in list(positions.items()):
                    entries = changelog.records.get(tp.partition, [])
                    index = position - changelog.begin
                    window = entries[index : index + 3]  # a few offsets per poll, markers included
                    batch = [entry for entry in window if entry is not None]
                    if batch:
                        out[tp] = batch
                    positions[tp] = position + len(window)
                return out

            def close(self, autocommit: bool = False) -> None:
                pass

        return Consumer()

    def end(self, partition: int) -> int:
        return self.begin + len(self.records.get(partition, []))


def txn(*changes: Change) -> list[Change | None]:
    """A committed transaction's records and its marker."""
    return [*changes, None]


def change(key: str, history: AccountHistory | None, offset: int) -> Change:
    value = None if history is None else history.to_bytes()
    return Change(key.encode(), value, [(OFFSET_HEADER, str(offset).encode())])


def store(tmp_path: Path, changelog: FakeChangelog, **kw: Any) -> StateStore:
    options: dict[str, Any] = {"capacity": 32, "ttl_s": 30 * 86_400, **kw}
    return StateStore(
        changelog_topic=CHANGELOG,
        directory=tmp_path / "state",
        key_secret=b"secret",
        consumer_factory=changelog.factory,
        metrics=WorkerMetrics(),
        **options,
    )


def restored(states: StateStore, tps: set[TopicPartition]) -> None:
    states.assign(tps)
    for tp in tps:
        partition = states.partition(tp)
        assert partition is not None and partition.restored.wait(10)
    states.tick()  # a failed restore would raise here


def histories(*events: TransactionEvent) -> AccountHistory:
    history = AccountHistory()
    for e in events:
        history.observe(e)
    return history


def test_a_restore_reads_the_changelog_to_its_end_offset_with_tombstones(tmp_path: Path) -> None:
    a1, a2, b1 = event("a", 0), event("a", 1), event("b", 2)
    changelog = FakeChangelog(
        {
            0: txn(
                *[
                    change("a", histories(a1), 0),
                    change("b", histories(b1), 2),
                    change("a", histories(a1, a2), 1),
                    change("c", histories(event("c", 3)), 3),
                    change("c", None, 3),
                ]
            )
        }
    )
    states = store(tmp_path, changelog)
    restored(states, {TP0})
    partition = states.partition(TP0)
    assert partition is not None
    assert partition.snapshot() == {"a": histories(a1, a2).to_bytes(), "b": histories(b1).to_bytes()}
    assert partition.store.get("a") == (1, histories(a1, a2).to_bytes())
    assert partition.store.position() == changelog.end(0)  # past the marker, not the last record


def test_a_restart_on_the_same_store_reads_only_the_tail(tmp_path: Path) -> None:
    a1, a2 = event("a", 0), event("a", 1)
    changelog = FakeChangelog({0: txn(change("a", histories(a1), 0))})
    states = store(tmp_path, changelog)
    restored(states, {TP0})
    states.close()
    changelog.records[0] += txn(*[change("x", histories(event("x", 0)), 5)] * 3, change("a", histories(a1, a2), 1))
    again = store(tmp_path, changelog)
    restored(again, {TP0})
    partition = again.partition(TP0)
    assert partition is not None and partition.store.position() == changelog.end(0) == 7
    assert again._metrics.state_restored_records._value.get() == 4  # the tail only, not the first record
    assert partition.snapshot()["a"] == histories(a1, a2).to_bytes()


def test_a_store_the_changelog_no_longer_matches_is_cleared_first(tmp_path: Path) -> None:
    changelog = FakeChangelog({0: txn(*[change("a", histories(event("a", 0)), 0)] * 4)})
    states = store(tmp_path, changelog)
    restored(states, {TP0})
    states.close()
    recreated = FakeChangelog({0: txn(change("b", histories(event("b", 0)), 0))})  # shorter: a new topic
    again = store(tmp_path, recreated)
    restored(again, {TP0})
    partition = again.partition(TP0)
    assert partition is not None and set(partition.snapshot()) == {"b"}


def test_a_store_written_for_another_capacity_is_not_reused(tmp_path: Path) -> None:
    changelog = FakeChangelog({0: txn(change("a", histories(event("a", 0)), 0))})
    first = store(tmp_path, changelog)
    restored(first, {TP0})
    first.close()
    other = store(tmp_path, FakeChangelog({}), capacity=16)
    restored(other, {TP0})
    partition = other.partition(TP0)
    assert partition is not None and partition.snapshot() == {}


def test_changelog_records_carry_tombstones_first_then_each_update_with_its_offset(tmp_path: Path) -> None:
    states = store(tmp_path, FakeChangelog({}), expire_interval_s=0.0)
    restored(states, {TP0})
    partition = states.partition(TP0)
    assert partition is not None
    partition.ttl_s = 60
    feed(partition, [event("gone", 0)])
    partition.commit(1)
    reflected, history = partition.history("kept")
    update = partition.apply("kept", history, event("kept", 600), 1, reflected)
    states.tick()  # starts a sweep and takes the first chunk: "gone" is idle past the TTL
    consumed = ConsumedRecord(TP0, 1, 0, None, 0, 0.0, False, state_update=update)
    records = states.records([consumed])
    assert [(r.key, r.value is None) for r in records] == [(b"gone", True), (b"kept", False)]
    assert records[1].headers == [(OFFSET_HEADER, b"1")] and records[1].partition == 0
    assert states.records([]) == []  # a tombstone goes out once


# -- the poll loop with state -----------------------------------------------------------------------


class HistoryEngine(FakeEngine):
    """Records how many earlier events of its account each event was featurized against."""

    history_spec = object()

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[str, int]] = []

    def featurize(self, event: TransactionEvent, history: object = None) -> float:
        assert isinstance(history, AccountHistory)
        self.seen.append((event.transaction_id, history.observed))
        return super().featurize(event)


def consumer_for(assigned: set[TopicPartition]) -> MagicMock:
    consumer = MagicMock(spec=KafkaConsumer)
    paused: set[TopicPartition] = set()
    consumer.assignment.return_value = set(assigned)
    consumer.paused.side_effect = lambda: set(paused)
    consumer.pause.side_effect = lambda *tps: paused.update(tps)
    consumer.resume.side_effect = lambda *tps: paused.difference_update(tps)
    consumer.poll.return_value = {}
    consumer.highwater.return_value = None
    consumer.position.return_value = None
    consumer.group_metadata.return_value = "generation-7"
    return consumer


def consumer_record(offset: int, e: TransactionEvent) -> ConsumerRecord:
    value = e.model_dump_json().encode()
    key = e.account_id.encode()
    return ConsumerRecord(TOPIC, 0, -1, offset, 999_990, 0, key, value, [], None, len(key), len(value), -1)


def source_with_state(tmp_path: Path, engine: HistoryEngine) -> tuple[Source, MagicMock, StateStore]:
    consumer = consumer_for({TP0})
    states = store(tmp_path, FakeChangelog({}))
    source = Source(
        consumer=consumer,
        engine=engine,
        topic=TOPIC,
        tracker=OffsetTracker(),
        outbox=queue.SimpleQueue(),
        admission=AdmissionController(high_water=100, low_water=50, headroom_bytes=0),
        metrics=WorkerMetrics(),
        free_device_bytes=lambda: None,
        latency_budget_s=0.05,
        max_event_bytes=64 * 1024,
        max_poll_records=500,
        commits_offsets=True,
        commit_interval_s=3600.0,
        rebalance_drain_timeout_s=0.0,
        state=states,
    )
    return source, consumer, states


def test_an_assigned_partition_is_held_until_its_state_is_restored(tmp_path: Path) -> None:
    engine = HistoryEngine()
    source, consumer, states = source_with_state(tmp_path, engine)
    source.on_assigned({TP0})
    assert TP0 in consumer.paused()  # paused inside the callback, before anything is fetched
    partition = states.partition(TP0)
    assert partition is not None and partition.restored.wait(10)
    source.iteration()
    assert TP0 not in consumer.paused() and source.restoring == 0


def test_a_poll_of_one_account_is_featurized_in_offset_order(tmp_path: Path) -> None:
    engine = HistoryEngine()
    source, consumer, states = source_with_state(tmp_path, engine)
    source.on_assigned({TP0})
    partition = states.partition(TP0)
    assert partition is not None and partition.restored.wait(10)
    events = [event("a", 0), event("b", 1), event("a", 2), event("a", 3)]
    consumer.poll.return_value = {TP0: [consumer_record(n, e) for n, e in enumerate(events)]}
    source.iteration()
    assert [n for _tx, n in engine.seen] == [0, 0, 1, 2]
    taken: list[ConsumedRecord] = []
    while not source._outbox.empty():  # type: ignore[attr-defined]
        taken.append(source._outbox.get())  # type: ignore[attr-defined]
    updates = [r.state_update for r in taken]
    assert [u.offset for u in updates if u is not None] == [0, 1, 2, 3]
    assert updates[-1] is not None and updates[-1].value == replayed(events)["a"]
