"""The load generator behind ``riskstream produce``: synthetic (or recorded) transactions into Kafka.

Open loop: records are sent on a fixed schedule (``rate`` per second) whatever the consumers do,
with the producer's CreateTime as the Kafka timestamp and the account id as the key. A share of
records can be made *poison* on purpose (malformed JSON, schema-invalid, oversize, a full card
number in free text) to exercise the dead-letter path.
"""

from __future__ import annotations

import itertools
import json
import random
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kafka import KafkaProducer

from schemas import DecodeError, TransactionEvent, decode

POISON_KINDS = ("malformed_json", "schema_invalid", "oversize", "pan_in_text")
# A Luhn-valid test card number (Visa test range), as fraud feeds sometimes leak one into free text.
TEST_PAN = "4111 1111 1111 1111"


@dataclass(frozen=True, slots=True)
class OutgoingEvent:
    key: bytes
    value: bytes
    transaction_id: str | None
    is_fraud: bool | None
    poison: str | None


@dataclass
class ProduceReport:
    sent: int = 0
    poison: dict[str, int] = field(default_factory=dict)
    fraud: int = 0
    seconds: float = 0.0

    @property
    def rate(self) -> float:
        return self.sent / self.seconds if self.seconds > 0 else 0.0


def poison_value(kind: str, event: TransactionEvent, max_event_bytes: int) -> bytes:
    """A record value that the worker must dead-letter, derived from a valid event."""
    body = json.loads(event.model_dump_json())
    if kind == "malformed_json":
        return event.model_dump_json().encode()[:-7]
    if kind == "schema_invalid":
        body["currency"] = "ZZZ"
        body["amount"] = "-1"
        return json.dumps(body).encode()
    if kind == "oversize":
        body["merchant"]["name"] = "x" * (max_event_bytes + 1)
        return json.dumps(body).encode()
    if kind == "pan_in_text":
        body["merchant"]["name"] = f"refund to card {TEST_PAN}"
        return json.dumps(body).encode()
    raise ValueError(f"unknown poison kind {kind!r}")


def outgoing_events(
    events: Iterable[tuple[TransactionEvent, bool | None]],
    *,
    poison_rate: float = 0.0,
    poison_kinds: tuple[str, ...] = POISON_KINDS,
    seed: int = 0,
    max_event_bytes: int = 65_536,
    restamp: bool = True,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> Iterator[OutgoingEvent]:
    """Serialize events, turning ``poison_rate`` of them to poison; ``restamp`` sets each event's
    ``event_time`` to the moment it is taken (synthetic load), otherwise the event's own time is kept."""
    if not 0 <= poison_rate <= 1:
        raise ValueError("poison_rate must be within [0, 1]")
    rng = random.Random(f"poison/{seed}")
    kinds = itertools.cycle(poison_kinds)  # rotate through the kinds, evenly
    for event, is_fraud in events:
        if restamp:
            event = event.model_copy(update={"event_time": now()})
        key = event.account_id.encode()
        if poison_rate and rng.random() < poison_rate:
            kind = next(kinds)
            yield OutgoingEvent(key, poison_value(kind, event, max_event_bytes), None, None, kind)
        else:
            yield OutgoingEvent(key, event.model_dump_json().encode(), event.transaction_id, is_fraud, None)


@dataclass(frozen=True, slots=True)
class BadLine:
    """A line of an event file that is not a transaction event: its number and why, never its content."""

    number: int
    reason: str


def read_event_file(path: Path, bad_lines: list[BadLine]) -> Iterator[tuple[TransactionEvent, bool | None]]:
    """Events (and labels, when present) of a JSON Lines file, in file order.

    Each line is a TransactionEvent v1 object, optionally with a boolean ``is_fraud`` member, or a
    labelled record ``{"event": {...}, "is_fraud": true}`` as :func:`inference.synthetic.write_jsonl`
    writes them; blank lines are skipped.

    A line that is not a valid event is skipped and appended to ``bad_lines`` with its number and the
    reason ``schemas.decode`` gives (field paths and problem kinds: never the line's content, which
    may hold personal data or a card number).
    """
    with Path(path).open("rb") as source:
        for number, line in enumerate(source, start=1):
            if not line.strip():
                continue
            parsed = _parse_event_line(line)
            if isinstance(parsed, str):
                bad_lines.append(BadLine(number, parsed))
            else:
                yield parsed


def mapped_file_events(path: Path, mapping: Any, bad_rows: Any) -> Iterator[OutgoingEvent]:
    """A bank's own file (CSV, Parquet, JSON Lines) as the bank's topic carries it: each good row as a
    JSON object of its fields, keyed by the account the ``mapping`` finds in it. Rows the mapping
    refuses go to ``bad_rows`` (``inference.data.BadRows``: by number and reason, never content).

    The records go out as they are, personal-data columns included (a worker reading them through
    the same mapping drops those); their own times stay.
    """
    from inference.data import RecordReader

    reader = RecordReader(path, mapping=mapping, labels=False)
    for record, event in reader.source_records(bad_rows):
        value = json.dumps(record, default=str, separators=(",", ":")).encode()
        yield OutgoingEvent(event.account_id.encode(), value, event.transaction_id, None, None)


def _parse_event_line(line: bytes) -> tuple[TransactionEvent, bool | None] | str:
    try:
        record = json.loads(line)
    except (ValueError, RecursionError):
        return "malformed_json: not a JSON value"
    if not isinstance(record, dict):
        return "not_an_object: a line must be a JSON object"
    label: Any = None
    if isinstance(record.get("event"), dict):
        label = record.get("is_fraud")
        record = record["event"]
    elif "is_fraud" in record:
        label = record.pop("is_fraud")
    if label is not None and not isinstance(label, bool):
        return "schema_invalid: is_fraud must be true, false or absent"
    decoded = decode(json.dumps(record).encode())
    if isinstance(decoded, DecodeError):
        return f"{decoded.kind.value}: {decoded.message}"
    return decoded, label


def synthetic_events(
    count: int,
    *,
    seed: int = 0,
    fraud_rate: float = 0.01,
    poison_rate: float = 0.0,
    poison_kinds: tuple[str, ...] = POISON_KINDS,
    max_event_bytes: int = 65_536,
    pregenerate: bool = False,
) -> Iterator[OutgoingEvent]:
    """``count`` synthetic events (labelled fraud, ``poison_rate`` of them poison), each stamped with
    the moment it is taken: the load :func:`send_paced` sends. ``pregenerate`` generates them all up
    front, so that generating never competes with sending on a clock (benchmarks)."""
    from inference.synthetic import generate

    items: Iterable[tuple[TransactionEvent, bool | None]] = (
        (item.event, item.is_fraud) for item in generate(count, seed=seed, fraud_rate=fraud_rate)
    )
    if pregenerate:
        items = list(items)
    return outgoing_events(
        items, poison_rate=poison_rate, poison_kinds=poison_kinds, seed=seed, max_event_bytes=max_event_bytes
    )


def send_paced(
    producer: KafkaProducer,
    topic: str,
    events: Iterable[OutgoingEvent],
    *,
    count: int | None,
    rate: float | None,
    on_progress: Callable[[int], None] | None = None,
    on_sent: Callable[[OutgoingEvent], None] | None = None,
    should_stop: Callable[[], bool] = lambda: False,
) -> ProduceReport:
    """Send up to ``count`` events (None: all of them) at ``rate`` per second (None: as fast as
    possible), then flush."""
    report = ProduceReport()
    started = time.perf_counter()
    pending_progress = 0
    source = iter(events)
    for index in range(count) if count is not None else itertools.count():
        if should_stop():
            break
        if rate:
            # Wait *before* taking the next event: its event_time is stamped when it is taken, so
            # it then matches the record's CreateTime instead of running ahead of it.
            delay = started + index / rate - time.perf_counter()
            if delay > 0.0005:
                time.sleep(delay)
        item = next(source, None)
        if item is None:
            break
        producer.send(topic, value=item.value, key=item.key)
        report.sent += 1
        if item.poison is not None:
            report.poison[item.poison] = report.poison.get(item.poison, 0) + 1
        elif item.is_fraud:
            report.fraud += 1
        if on_sent is not None:
            on_sent(item)
        pending_progress += 1
        if on_progress is not None and pending_progress >= 500:
            on_progress(pending_progress)
            pending_progress = 0
    producer.flush()
    if on_progress is not None and pending_progress:
        on_progress(pending_progress)
    report.seconds = time.perf_counter() - started
    return report


def load_producer_config() -> dict[str, Any]:
    """Producer options for load generation: throughput over latency, still durable."""
    return {"acks": "all", "linger_ms": 5, "enable_idempotence": True}


def measuring_producer_config() -> dict[str, Any]:
    """``riskstream produce``'s producer options without linger: a load generator that measures
    event-to-score latency must not add a batching delay of its own (under load, records still
    batch while a request is in flight)."""
    return {**load_producer_config(), "linger_ms": 0}
