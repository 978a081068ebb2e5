"""What one Kafka transaction costs with kafka-python: the measurement behind exactly-once's retry backoff.

A transactional producer runs ``--transactions`` transactions back to back (or ``--gap-ms`` apart),
each one record plus a consumer-group offset, as a publish step of ``worker.guarantee.ExactlyOnce``
does: ``begin_transaction``, ``send``, ``send_offsets_to_transaction``, wait for the ack,
``commit_transaction``. It prints, per sender retry backoff, the mean/p50/p90 wall time of the phases
and how many transactional requests per transaction the coordinator answered with
CONCURRENT_TRANSACTIONS (the previous transaction's markers not yet written), and the load average.

Run against the local broker (``python ops/kafka/kafka_local.py start --name dev``), nothing else
running::

    .venv/bin/python benchmarks/transaction_loop.py --bootstrap 127.0.0.1:9092 --backoff-ms 10,2
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import uuid
from typing import Any

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient, NewTopic
from kafka.producer import transaction_manager
from kafka.structs import OffsetAndMetadata

_CONCURRENT_TRANSACTIONS = 51  # the error code


class _Retries:
    """Counts transactional responses carrying CONCURRENT_TRANSACTIONS (wraps the handlers' on_complete)."""

    def __init__(self) -> None:
        self.count = 0
        handler = transaction_manager.TxnRequestHandler
        original = handler.on_complete

        def on_complete(this: Any, correlation_id: int, response: Any) -> Any:
            if f"error_code={_CONCURRENT_TRANSACTIONS}" in str(response):
                self.count += 1
            return original(this, correlation_id, response)

        handler.on_complete = on_complete  # type: ignore[method-assign]


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * share))]


def run(bootstrap: str, backoff_ms: int, transactions: int, gap_ms: float, retries: _Retries) -> dict[str, Any]:
    topic = f"txn-loop-{uuid.uuid4().hex[:8]}"
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    admin.create_topics([NewTopic(topic, 4, 1)])
    admin.close()
    producer = KafkaProducer(bootstrap_servers=bootstrap, transactional_id=topic, retry_backoff_ms=10)
    producer._sender.config["retry_backoff_ms"] = backoff_ms  # what ExactlyOnce.open_producer sets
    producer.init_transactions()
    consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=topic, enable_auto_commit=False)
    consumer.poll(timeout_ms=2000)
    group = consumer.group_metadata()
    warmup = max(1, transactions // 10)
    phases: dict[str, list[float]] = {"offsets": [], "ack": [], "commit": [], "total": []}
    retries_before = 0
    try:
        for index in range(warmup + transactions):
            if index == warmup:
                retries_before = retries.count
            partition = index % 4
            started = time.perf_counter()
            producer.begin_transaction()
            future = producer.send(topic, b"x", partition=partition)
            producer.send_offsets_to_transaction(
                {TopicPartition(topic, partition): OffsetAndMetadata(index, "", -1)}, group
            )
            offsets_added = time.perf_counter()
            future.get(timeout=30)
            acknowledged = time.perf_counter()
            producer.commit_transaction()
            committed = time.perf_counter()
            if index >= warmup:
                phases["offsets"].append(offsets_added - started)
                phases["ack"].append(acknowledged - offsets_added)
                phases["commit"].append(committed - acknowledged)
                phases["total"].append(committed - started)
            if gap_ms:
                time.sleep(gap_ms / 1000)
    finally:
        producer.close(timeout=10)
        consumer.close(autocommit=False)
    return {
        "backoff_ms": backoff_ms,
        "phases_ms": {
            name: {
                "mean": statistics.mean(values) * 1000,
                "p50": _percentile(values, 0.5) * 1000,
                "p90": _percentile(values, 0.9) * 1000,
            }
            for name, values in phases.items()
        },
        "concurrent_per_txn": (retries.count - retries_before) / transactions,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bootstrap", default="127.0.0.1:9092")
    parser.add_argument("--backoff-ms", default="10,2", help="sender retry backoffs to compare, comma-separated")
    parser.add_argument("--transactions", type=int, default=300)
    parser.add_argument("--gap-ms", type=float, default=0.0, help="pause between transactions")
    args = parser.parse_args()
    retries = _Retries()
    print(f"load average at start: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"{args.transactions} one-record transactions, {args.gap_ms:g} ms apart, per sender retry backoff:")
    print(
        "| backoff ms | offsets mean/p50/p90 | ack mean | commit mean | total mean/p50/p90 "
        "| CONCURRENT_TRANSACTIONS/txn |"
    )
    print("|--:|--:|--:|--:|--:|--:|")
    for backoff in (int(value) for value in args.backoff_ms.split(",")):
        result = run(args.bootstrap, backoff, args.transactions, args.gap_ms, retries)
        p = result["phases_ms"]
        print(
            f"| {backoff} | {p['offsets']['mean']:.1f}/{p['offsets']['p50']:.1f}/{p['offsets']['p90']:.1f} "
            f"| {p['ack']['mean']:.1f} | {p['commit']['mean']:.1f} "
            f"| {p['total']['mean']:.1f}/{p['total']['p50']:.1f}/{p['total']['p90']:.1f} "
            f"| {result['concurrent_per_txn']:.2f} |"
        )
    print(f"load average at end: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
