"""librdkafka clients (confluent-kafka) for interoperability tests: what most bank services run.

Their defaults differ from kafka-python's where it matters: keyed records are placed with CRC32
(``consistent_random``), producers usually compress, consumers read ``read_committed``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from confluent_kafka import Consumer, Producer, TopicPartition


def producer(bootstrap: str, **conf: Any) -> Producer:
    return Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "linger.ms": 5, **conf})


def produce_all(
    client: Producer, topic: str, records: Iterable[tuple[bytes | None, bytes, list[tuple[str, bytes]] | None]]
) -> int:
    """Produce (key, value, headers) records and wait until every one is acknowledged; returns the count."""
    failures: list[str] = []

    def delivered(error: Any, _message: Any) -> None:
        if error is not None:
            failures.append(str(error))

    count = 0
    for key, value, headers in records:
        while True:
            try:
                client.produce(topic, value=value, key=key, headers=headers, on_delivery=delivered)
                break
            except BufferError:  # the local queue is full: serve delivery reports, then retry
                client.poll(0.05)
        client.poll(0)
        count += 1
    remaining = client.flush(60)
    assert remaining == 0, f"{remaining} records still unacknowledged"
    assert not failures, failures[:3]
    return count


@contextmanager
def reader(bootstrap: str, topic: str, partitions: int) -> Iterator[Consumer]:
    """A group-less read_committed librdkafka consumer assigned to every partition from the start."""
    client = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "unused",
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
            "auto.offset.reset": "earliest",
        }
    )
    try:
        client.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
        yield client
    finally:
        client.close()


def read_all(bootstrap: str, topic: str, partitions: int, expected: int, timeout_s: float = 60.0) -> list[Any]:
    """Messages of ``topic`` until ``expected`` have been read (or the timeout passes)."""
    import time

    messages: list[Any] = []
    deadline = time.monotonic() + timeout_s
    with reader(bootstrap, topic, partitions) as client:
        while len(messages) < expected and time.monotonic() < deadline:
            for message in client.consume(num_messages=1000, timeout=0.5):
                if message.error() is None:
                    messages.append(message)
    return messages
