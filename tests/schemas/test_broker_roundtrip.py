"""1,000 generated events through a real broker and back, every one valid by the wire schema."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from inference.synthetic import generate
from schemas import TransactionEvent, decode


def test_generated_events_survive_the_broker(
    topic_factory: Callable[..., str], producer_factory: Callable[..., Any], consumer_factory: Callable[..., Any]
) -> None:
    topic = topic_factory(partitions=4)
    events = [item.event for item in generate(1000, seed=7)]
    producer = producer_factory()
    for event in events:
        producer.send(topic, key=event.account_id.encode(), value=event.model_dump_json().encode())
    producer.flush()

    consumer = consumer_factory(topic, consumer_timeout_ms=10_000)
    received: dict[str, TransactionEvent] = {}
    for record in consumer:
        decoded = decode(record.value)
        assert isinstance(decoded, TransactionEvent), decoded
        assert record.key == decoded.account_id.encode()
        received[decoded.transaction_id] = decoded
        if len(received) == len(events):
            break
    assert received == {event.transaction_id: event for event in events}
