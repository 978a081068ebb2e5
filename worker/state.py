"""Behavioural state in the stream: each account's history, kept per input partition, beside the scores.

Every account (the input's key: the event's ``account_id``) has an
:class:`inference.history.AccountHistory`. The poll loop reads an event's history *before* the event
(the model scores against it), then applies the event, in offset order: the n-th event of an account in
a batch sees its n-1 earlier ones, exactly as one-at-a-time processing would
(:func:`inference.history.replay`).

**Where it lives.** Each assigned partition has a local store (an LMDB environment under
``state.dir``; ``docs/state.md`` has the measurement that chose it over SQLite and RocksDB) holding the
*committed* state of its accounts, each with the input offset it reflects, and the **changelog
position**: every changelog record below it is in the store (or superseded by what the store holds).
Store content and position change together in one LMDB transaction. In memory there are only the
versions of the work in flight (*pending*: input offset, bytes, changelog offset once written) and a
bounded cache of decoded histories (``state.cache_accounts``).

**Durability** follows the delivery guarantee, through a compacted **changelog** topic with one
partition per input partition: the latest state of every account a publish step touched, keyed by the
account, with the input offset it reflects in the ``riskstream-offset`` header.

* **Exactly-once**: the changelog records are part of the transaction that publishes the scores and
  commits the offsets. State, scores and offsets move together, or not at all.
* **At-least-once**: a step's changelog records are acknowledged before any of the step's outcomes
  counts as done, so no offset is ever committed past a state update that is not written. A crash can
  leave states in the changelog that reflect offsets past the commit; on replay such an event is scored
  again but not applied again (its offset is at or below the one its state reflects), so a state never
  counts an event twice. (Its replayed score may differ: it sees a state that already includes itself.
  Duplicates are at-least-once's price anyway.)

A commit (the poll loop's at-least-once, the transaction's exactly-once) **folds** the pending versions
below the committed offsets into the store and moves the position past their changelog records. A
rewind or a rebalance (a new epoch: the work in flight is replayed) drops every pending version, so
the replay starts again from the committed state.

**Restore on assignment.** A newly assigned partition is held (paused) while a restore thread reads
its changelog partition ``read_committed`` from the store's position until the consumer's position
reaches the end offset (never a particular last record: transaction markers occupy offsets), then
released. A pod restarted on the same volume reads only the tail; a new one reads it all. A store
written for another changelog, state format or capacity, or whose position the changelog no longer
has (a recreated topic), is cleared first. ``/readyz`` says "restoring" meanwhile;
``riskstream_state_restore_*`` metrics say how fast. Revoke stops a restore and closes the store.

**Expiry.** Accounts idle (event time) longer than the model's TTL are swept out of the store a few
hundred at a time by the poll loop, and tombstoned in the changelog with the next publish step. Expiry
is housekeeping only: a history whose newest event is older than the TTL starts afresh anyway, so an
expired account that comes back from an older changelog record changes no score.

**Keys.** The changelog (and store) key is the account id, except that an account id holding a card
number is replaced by a keyed BLAKE2b digest of it (``state.key_secret``), so no PAN reaches the
changelog or the disk.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import struct
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog
from kafka.structs import TopicPartition

from schemas.redaction import contains_pan
from worker.metrics import WorkerMetrics

if TYPE_CHECKING:
    from inference.history import AccountHistory
    from worker.records import ConsumedRecord

log = structlog.get_logger("riskstream.state")

OFFSET_HEADER = "riskstream-offset"
STORE_FORMAT = 1
_POSITION = b"\x00position"
_META = b"\x00meta"
_OFFSET = struct.Struct("<q")
_RESTORE_POLL_MS = 200
_RESTORE_WRITE_EVERY = 10_000
_SWEEP_CHUNK = 500
_GAUGE_INTERVAL_S = 2.0


def state_key(account_id: str, secret: bytes) -> str:
    """The changelog key of an account: its id, or a keyed digest of it when the id holds a card number."""
    if contains_pan(account_id):
        return "pan:" + hashlib.blake2b(account_id.encode(), key=secret[:64], digest_size=16).hexdigest()
    return account_id


@dataclass(frozen=True, slots=True)
class StateUpdate:
    """What a consumed record changed: its account's state after it, for the changelog."""

    key: str
    value: bytes
    offset: int
    """The input offset the state reflects (the ``riskstream-offset`` header)."""


@dataclass(frozen=True, slots=True)
class ChangelogRecord:
    """One changelog record to publish: an account's new state, or a tombstone (``value`` None)."""

    topic: str
    partition: int
    key: bytes
    value: bytes | None
    headers: list[tuple[str, bytes]]
    update: StateUpdate | None
    """What to report back once written (None for a tombstone)."""
    source: TopicPartition
    """The input partition whose state it is."""


@dataclass(slots=True)
class _Version:
    offset: int
    value: bytes
    changelog_offset: int = -1


# -- the local store ------------------------------------------------------------------------------


class LocalStore:
    """One partition's LMDB environment: account key -> (input offset, state bytes), plus the changelog
    position and what the store was written for. Every write is one LMDB transaction."""

    def __init__(self, path: Path, *, map_size: int) -> None:
        import lmdb

        path.mkdir(parents=True, exist_ok=True)
        self.path = path
        # The changelog is the source of truth: an OS crash may lose the last transactions (the next
        # restore reads a longer tail), never mix content and position (LMDB commits atomically).
        self._env = lmdb.open(str(path), map_size=map_size, sync=False, metasync=False, max_dbs=0, lock=True)
        self._lock = threading.Lock()
        self.closed = False

    def meta(self) -> dict[str, Any] | None:
        raw = self._get(_META)
        if raw is None:
            return None
        try:
            meta = json.loads(raw)
        except ValueError:
            return None
        return meta if isinstance(meta, dict) else None

    def position(self) -> int | None:
        raw = self._get(_POSITION)
        return None if raw is None else int(_OFFSET.unpack(raw)[0])

    def get(self, key: str) -> tuple[int, bytes] | None:
        raw = self._get(key.encode())
        if raw is None:
            return None
        return int(_OFFSET.unpack_from(raw)[0]), raw[_OFFSET.size :]

    def _get(self, key: bytes) -> bytes | None:
        with self._env.begin(buffers=False) as txn:
            value: bytes | None = txn.get(key)
            return value

    def write(
        self,
        puts: Sequence[tuple[str, int, bytes]] = (),
        deletes: Sequence[str] = (),
        *,
        position: int | None = None,
        meta: dict[str, Any] | None = None,
    ) -> None:
        with self._lock:
            if self.closed:
                return
            with self._env.begin(write=True) as txn:
                for key, offset, value in puts:
                    txn.put(key.encode(), _OFFSET.pack(offset) + value)
                for key in deletes:
                    txn.delete(key.encode())
                if position is not None:
                    txn.put(_POSITION, _OFFSET.pack(position))
                if meta is not None:
                    txn.put(_META, json.dumps(meta, sort_keys=True).encode())

    def clear(self) -> None:
        with self._lock, self._env.begin(write=True) as txn:
            txn.drop(self._env.open_db(), delete=False)

    def scan(self, after: bytes | None, limit: int) -> list[tuple[str, bytes]]:
        """Up to ``limit`` (key, state bytes) in key order after ``after`` (None: from the start)."""
        found: list[tuple[str, bytes]] = []
        with self._env.begin() as txn:
            cursor = txn.cursor()
            if after is None:
                more = cursor.first()
            else:
                more = cursor.set_range(after)
                if more and cursor.key() == after:
                    more = cursor.next()
            while more and len(found) < limit:
                key = bytes(cursor.key())
                if not key.startswith(b"\x00"):
                    found.append((key.decode(), bytes(cursor.value())[_OFFSET.size :]))
                more = cursor.next()
        return found

    def items(self) -> Iterator[tuple[str, int, bytes]]:
        with self._env.begin() as txn:
            for key, raw in txn.cursor():
                if not key.startswith(b"\x00"):
                    yield bytes(key).decode(), int(_OFFSET.unpack_from(raw)[0]), bytes(raw[_OFFSET.size :])

    def accounts(self) -> int:
        entries = int(self._env.stat()["entries"])
        with self._env.begin() as txn:
            entries -= sum(1 for key in (_POSITION, _META) if txn.get(key) is not None)
        return entries

    def size_bytes(self) -> int:
        stat = self._env.stat()
        return int(stat["psize"] * (stat["branch_pages"] + stat["leaf_pages"] + stat["overflow_pages"]))

    def close(self) -> None:
        with self._lock:
            if not self.closed:
                self.closed = True
                self._env.close()


# -- one partition ---------------------------------------------------------------------------------


@dataclass
class PartitionState:
    """One input partition's account state (see the module docstring). Thread-safe.

    The poll loop calls :meth:`history`, :meth:`apply`, :meth:`rollback` and :meth:`sweep`; commits
    come from the poll loop (at-least-once) or the publisher (exactly-once); :meth:`written` from the
    publisher; the restore thread fills the store before :attr:`restored` is set.
    """

    partition: TopicPartition
    store: LocalStore
    capacity: int
    ttl_s: int
    cache_accounts: int = 100_000
    restored: threading.Event = field(default_factory=threading.Event)
    cancelled: threading.Event = field(default_factory=threading.Event)
    newest_event_s: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _pending: dict[str, list[_Version]] = field(default_factory=dict)
    _live: OrderedDict[str, tuple[int, AccountHistory]] = field(default_factory=OrderedDict)
    _sweep_after: bytes | None = None
    _sweeping: bool = False

    # -- the poll loop ---------------------------------------------------------------------------

    def history(self, key: str) -> tuple[int, AccountHistory]:
        """The account's current state and the input offset it reflects (-1: none yet)."""
        from inference.history import AccountHistory, HistoryFormatError

        with self._lock:
            live = self._live.get(key)
            if live is not None:
                self._live.move_to_end(key)
                return live
        stored = self.store.get(key)
        history: AccountHistory | None = None
        offset = -1
        if stored is not None:
            try:
                history = AccountHistory.from_bytes(stored[1])
                offset = stored[0]
            except HistoryFormatError:
                log.warning("unreadable account state dropped", partition=self.partition.partition)
        if history is None or history.capacity != self.capacity:
            history = AccountHistory(self.capacity)
        with self._lock:
            self._live[key] = (offset, history)
            self._evict()
        return offset, history

    def apply(self, key: str, history: AccountHistory, event: Any, offset: int, reflected: int) -> StateUpdate | None:
        """Apply ``event`` (at input ``offset``) to ``history``, unless the state already reflects it."""
        if offset <= reflected:
            return None  # replayed after a crash (at-least-once): already counted in this state
        history.observe(event)
        value = history.to_bytes()
        self.newest_event_s = max(self.newest_event_s, event.event_time.timestamp())
        with self._lock:
            self._live[key] = (offset, history)
            self._pending.setdefault(key, []).append(_Version(offset, value))
        return StateUpdate(key, value, offset)

    def _evict(self) -> None:
        """Keep the cache of decoded histories bounded (only accounts with nothing in flight go)."""
        skipped = 0
        while len(self._live) > self.cache_accounts and skipped < len(self._live):
            key, entry = self._live.popitem(last=False)
            if key in self._pending:
                self._live[key] = entry  # in flight: its state is not in the store yet
                skipped += 1

    def rollback(self) -> None:
        """Forget the work in flight (a new epoch): the state is the committed one again."""
        with self._lock:
            for key in self._pending:
                self._live.pop(key, None)
            self._pending.clear()

    def pending(self) -> int:
        with self._lock:
            return sum(len(versions) for versions in self._pending.values())

    # -- the publisher and commits ------------------------------------------------------------------

    def written(self, update: StateUpdate, changelog_offset: int) -> None:
        """The changelog record of ``update`` is acknowledged at ``changelog_offset``."""
        with self._lock:
            for version in self._pending.get(update.key, ()):
                if version.offset == update.offset:
                    version.changelog_offset = changelog_offset

    def commit(self, next_offset: int) -> None:
        """Input offsets below ``next_offset`` are committed: fold their pending versions into the store."""
        puts: list[tuple[str, int, bytes]] = []
        position = -1
        with self._lock:
            for key in list(self._pending):
                versions = self._pending[key]
                done = 0
                while done < len(versions) and versions[done].offset < next_offset:
                    position = max(position, versions[done].changelog_offset + 1)
                    done += 1
                if not done:
                    continue
                last = versions[done - 1]
                puts.append((key, last.offset, last.value))
                if done == len(versions):
                    del self._pending[key]
                else:
                    del versions[:done]
            if puts:
                # Under the lock: a later commit must not overtake this one in the store.
                current = self.store.position() or 0
                self.store.write(puts, position=max(current, position) if position > 0 else None)
            self._evict()  # what just folded may leave the cache now

    # -- expiry -------------------------------------------------------------------------------

    def sweep(self, limit: int = _SWEEP_CHUNK) -> list[str]:
        """Go on sweeping the store for accounts idle longer than the TTL; drop them and return their keys.

        A sweep starts when :meth:`start_sweep` was called and walks the store ``limit`` accounts per
        call, so the poll loop never stalls on a large store.
        """
        from inference.history import HistoryFormatError, newest_time

        if not self._sweeping or not self.restored.is_set() or self.store.closed:
            return []
        chunk = self.store.scan(self._sweep_after, limit)
        if len(chunk) < limit:
            self._sweeping = False
            self._sweep_after = None
        else:
            self._sweep_after = chunk[-1][0].encode()
        cutoff = self.newest_event_s - self.ttl_s
        expired: list[str] = []
        with self._lock:
            for key, value in chunk:
                if key in self._pending:
                    continue
                try:
                    newest = newest_time(value)
                except HistoryFormatError:
                    newest = None
                if newest is None or newest < cutoff:
                    expired.append(key)
                    self._live.pop(key, None)
            if expired:
                self.store.write(deletes=expired)
        return expired

    def start_sweep(self) -> None:
        if self.newest_event_s and not self._sweeping:
            self._sweeping = True
            self._sweep_after = None

    # -- for checks -----------------------------------------------------------------------------

    def snapshot(self) -> dict[str, bytes]:
        """Every account's committed state (for checks: equal to a clean pass's)."""
        return {key: value for key, _offset, value in self.store.items()}


# -- all partitions ------------------------------------------------------------------------------


class StateStore:
    """Every assigned partition's :class:`PartitionState`, their restores, and pending tombstones."""

    def __init__(
        self,
        *,
        changelog_topic: str,
        directory: Path,
        capacity: int,
        ttl_s: int,
        key_secret: bytes,
        consumer_factory: Callable[[], Any],
        metrics: WorkerMetrics,
        cache_accounts: int = 100_000,
        map_size: int = 64 << 30,
        state_format: int = 1,
        expire_interval_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.changelog_topic = changelog_topic
        self.directory = directory
        self._capacity = capacity
        self._ttl_s = ttl_s
        self._secret = key_secret
        self._consumer_factory = consumer_factory
        self._metrics = metrics
        self._cache_accounts = cache_accounts
        self._map_size = map_size
        self._meta = {"store_format": STORE_FORMAT, "state_format": state_format, "capacity": capacity}
        self._expire_interval_s = expire_interval_s
        self._clock = clock
        self._next_sweep = clock() + expire_interval_s
        self._next_gauges = 0.0
        self._partitions: dict[TopicPartition, PartitionState] = {}
        self._lock = threading.Lock()
        self._tombstones: list[tuple[TopicPartition, str]] = []
        self._restores: list[tuple[threading.Thread, list[PartitionState]]] = []
        self.failure: BaseException | None = None

    def key(self, account_id: str) -> str:
        return state_key(account_id, self._secret)

    def partition(self, tp: TopicPartition) -> PartitionState | None:
        return self._partitions.get(tp)

    def __iter__(self) -> Iterator[PartitionState]:
        return iter(list(self._partitions.values()))

    # -- assignment ---------------------------------------------------------------------------

    def assign(self, partitions: set[TopicPartition] | frozenset[TopicPartition]) -> None:
        """New partitions: open their stores, and restore them from the changelog on one thread."""
        fresh: list[PartitionState] = []
        for tp in sorted(partitions, key=lambda tp: tp.partition):
            if tp in self._partitions:
                continue
            path = self.directory / f"{self.changelog_topic}-{tp.partition}"
            store = LocalStore(path, map_size=self._map_size)
            state = PartitionState(tp, store, self._capacity, self._ttl_s, self._cache_accounts)
            self._partitions[tp] = state
            fresh.append(state)
        if fresh:
            thread = threading.Thread(target=self._restore, args=(fresh,), name="riskstream-restore", daemon=True)
            self._restores.append((thread, fresh))
            thread.start()

    def revoke(self, partitions: set[TopicPartition] | frozenset[TopicPartition]) -> None:
        """Stop their restores and close their stores (what is committed is in them already)."""
        closing = [self._partitions.pop(tp) for tp in partitions if tp in self._partitions]
        for state in closing:
            state.cancelled.set()
        for thread, states in list(self._restores):
            if any(state in closing for state in states):
                thread.join(timeout=30)
        self._restores = [(t, s) for t, s in self._restores if t.is_alive()]
        for state in closing:
            state.rollback()
            state.store.close()
            for gauge in (self._metrics.state_accounts, self._metrics.state_bytes, self._metrics.state_restore_rate):
                with contextlib.suppress(KeyError):
                    gauge.remove(state.partition.topic, str(state.partition.partition))

    def close(self) -> None:
        self.revoke(set(self._partitions))

    def restoring(self) -> list[TopicPartition]:
        """Partitions still being restored (held: the poll loop keeps them paused)."""
        return [tp for tp, state in self._partitions.items() if not state.restored.is_set()]

    def rollback(self) -> None:
        for state in self:
            state.rollback()

    def commit(self, offsets: dict[TopicPartition, int]) -> None:
        for tp, next_offset in offsets.items():
            state = self._partitions.get(tp)
            if state is not None:
                state.commit(next_offset)

    # -- the publisher ------------------------------------------------------------------------------

    def records(self, consumed: Sequence[ConsumedRecord]) -> list[ChangelogRecord]:
        """The changelog records of a publish step: pending tombstones first, then each update in order."""
        with self._lock:
            tombstones, self._tombstones = self._tombstones, []
        out = [
            ChangelogRecord(self.changelog_topic, tp.partition, key.encode(), None, [], None, tp)
            for tp, key in tombstones
        ]
        for record in consumed:
            update = record.state_update
            if update is not None:
                partition = record.tp.partition
                headers = [(OFFSET_HEADER, str(update.offset).encode())]
                out.append(
                    ChangelogRecord(
                        self.changelog_topic, partition, update.key.encode(), update.value, headers, update, record.tp
                    )
                )
        return out

    def written(self, record: ChangelogRecord, changelog_offset: int) -> None:
        """``record`` is acknowledged at ``changelog_offset`` (its version may now fold into the store)."""
        if record.update is None:
            return
        state = self._partitions.get(record.source)
        if state is not None:
            state.written(record.update, changelog_offset)
        self._metrics.state_writes.inc()

    # -- the poll loop's housekeeping -----------------------------------------------------------

    def tick(self) -> None:
        """Between polls: raise a failed restore, sweep a chunk of each store, refresh the gauges."""
        if self.failure is not None:
            raise self.failure
        now = self._clock()
        if now >= self._next_sweep:
            self._next_sweep = now + self._expire_interval_s
            for state in self:
                state.start_sweep()
        if now >= self._next_gauges:
            self._next_gauges = now + _GAUGE_INTERVAL_S
            for state in self:
                self._gauges(state)
        for state in self:
            expired = state.sweep()
            if expired:
                with self._lock:
                    self._tombstones.extend((state.partition, key) for key in expired)
                self._metrics.state_expired.inc(len(expired))

    def _gauges(self, state: PartitionState) -> None:
        if state.store.closed:
            return
        labels = (state.partition.topic, str(state.partition.partition))
        self._metrics.state_accounts.labels(*labels).set(state.store.accounts())
        self._metrics.state_bytes.labels(*labels).set(state.store.size_bytes())

    # -- restore ------------------------------------------------------------------------------

    def _restore(self, states: list[PartitionState]) -> None:
        try:
            consumer = self._consumer_factory()
            try:
                self._restore_with(consumer, states)
            finally:
                consumer.close(autocommit=False)
        except BaseException as exc:  # surfaced through tick(): no scoring on a partial state
            if not any(state.cancelled.is_set() for state in states):
                self.failure = exc
                log.exception("state restore failed", partitions=[s.partition.partition for s in states])

    def _restore_with(self, consumer: Any, states: list[PartitionState]) -> None:
        started = self._clock()
        by_tp = {TopicPartition(self.changelog_topic, s.partition.partition): s for s in states}
        tps = list(by_tp)
        consumer.assign(tps)
        begins = consumer.beginning_offsets(tps)
        ends = consumer.end_offsets(tps)
        counts = dict.fromkeys(tps, 0)
        starts: dict[TopicPartition, int] = {}
        for tp, state in by_tp.items():
            meta = {**self._meta, "changelog": tp.topic, "partition": tp.partition}
            position = state.store.position()
            if state.store.meta() != meta or position is None or not begins[tp] <= position <= ends[tp]:
                if position is not None:
                    log.warning(
                        "local state store does not match the changelog; restoring from the beginning",
                        partition=tp.partition,
                        store_position=position,
                        changelog_begin=begins[tp],
                        changelog_end=ends[tp],
                    )
                state.store.clear()
                position = begins[tp]
                state.store.write(position=position, meta=meta)
            starts[tp] = position
            consumer.seek(tp, position)
        waiting = {tp for tp in tps if starts[tp] >= ends[tp]}
        for tp in waiting:
            self._restored(by_tp[tp], 0, started, starts[tp])
        remaining = set(tps) - waiting
        puts: dict[TopicPartition, dict[str, tuple[int, bytes] | None]] = {tp: {} for tp in tps}
        while remaining:
            if any(by_tp[tp].cancelled.is_set() for tp in remaining):
                return
            for tp, batch in consumer.poll(timeout_ms=_RESTORE_POLL_MS, max_records=_RESTORE_WRITE_EVERY).items():
                pending = puts[tp]
                for record in batch:
                    key = record.key.decode() if record.key else ""
                    pending[key] = None if record.value is None else (_offset_of(record.headers), record.value)
                counts[tp] += len(batch)
            for tp in list(remaining):
                position = consumer.position(tp)
                if len(puts[tp]) >= _RESTORE_WRITE_EVERY or position >= ends[tp]:
                    self._flush(by_tp[tp], puts[tp], position)
                    puts[tp] = {}
                if position >= ends[tp]:
                    remaining.discard(tp)
                    consumer.pause(tp)
                    self._restored(by_tp[tp], counts[tp], started, starts[tp])

    @staticmethod
    def _flush(state: PartitionState, changes: dict[str, tuple[int, bytes] | None], position: int) -> None:
        puts = [(key, entry[0], entry[1]) for key, entry in changes.items() if entry is not None]
        deletes = [key for key, entry in changes.items() if entry is None]  # a missing key is no error
        state.store.write(puts, deletes, position=position)

    def _restored(self, state: PartitionState, records: int, started: float, start: int) -> None:
        seconds = max(1e-9, self._clock() - started)
        rate = records / seconds
        self._metrics.state_restore_seconds.observe(seconds)
        self._metrics.state_restored_records.inc(records)
        labels = (state.partition.topic, str(state.partition.partition))
        self._metrics.state_restore_rate.labels(*labels).set(rate)
        self._gauges(state)
        state.restored.set()
        log.info(
            "state restored",
            partition=state.partition.partition,
            from_offset=start,
            records=records,
            accounts=state.store.accounts(),
            seconds=round(seconds, 2),
            records_per_s=round(rate),
        )


def _offset_of(headers: Any) -> int:
    for name, value in headers or ():
        if name == OFFSET_HEADER:
            try:
                return int(value)
            except ValueError:
                return -1
    return -1


def store_directory(root: Path, group_id: str) -> Path:
    """Where a deployment's local stores live: one folder per consumer group under ``state.dir``."""
    safe = "".join(ch if ch.isalnum() or ch in "._-" else "_" for ch in group_id) or "riskstream"
    return root / safe
