"""riskstream against the clients banks run: librdkafka producers and consumers on the real broker.

Compressed input (every codec), aborted upstream transactions, librdkafka's own partitioner, W3C
trace context, and input the worker cannot decode. The worker runs in-process with a fake model:
what is tested is the stream, not the scores.
"""

from __future__ import annotations

import json
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from inference.synthetic import generate
from tests.worker import rdkafka
from tests.worker.fakes import fake_loaded
from tests.worker.harness import (
    Topics,
    make_topics,
    produce_events,
    running_worker,
    wait_committed,
    wait_until,
    worker_settings,
)
from worker.app import Worker
from worker.errors import EXIT_UNDECODABLE
from worker.tools.produce import outgoing_events
from worker.tools.verify import outcome_counts, read_topic, verify


def _records(count: int, seed: int) -> Iterator[tuple[bytes, bytes, None]]:
    events = outgoing_events(((item.event, item.is_fraud) for item in generate(count, seed=seed)), seed=seed)
    for item in events:
        yield item.key, item.value, None


def _verified(kafka: Any, topics: Topics, sent: int) -> None:
    report = verify(
        kafka.config(),
        input_topic=topics.input,
        scores_topic=topics.scores,
        dead_letter_topic=topics.dead_letters,
        group_id=topics.group,
    )
    assert report.inputs == sent, report.summary()
    assert report.lost == [] and report.duplicates == 0, report.summary()
    assert report.scores == sent and report.order_violations == [], report.summary()
    assert report.committed_behind == {}, report.committed_behind


@pytest.mark.parametrize("codec", ["lz4", "zstd", "snappy", "gzip"])
def test_compressed_input_from_librdkafka_is_scored_completely(
    kafka: Any, topic_factory: Callable[..., str], codec: str
) -> None:
    topics = make_topics(topic_factory, 3)
    client = rdkafka.producer(kafka.bootstrap_servers, **{"compression.type": codec, "linger.ms": 20})
    sent = rdkafka.produce_all(client, topics.input, _records(1500, seed=11))
    with running_worker(worker_settings(kafka.bootstrap_servers, topics), fake_loaded()):
        wait_committed(kafka.config(), topics, timeout_s=60)
    _verified(kafka, topics, sent)


def test_a_topic_that_recompresses_with_zstd_is_read(
    kafka: Any, topic_factory: Callable[..., str], producer_factory: Callable[..., Any]
) -> None:
    """The broker recompresses an uncompressed producer's batches when the topic says so."""
    input_topic = topic_factory(2, prefix="tx", configs={"compression.type": "zstd"})
    topics = Topics(
        input_topic,
        topic_factory(2, prefix="scores"),
        topic_factory(2, prefix="dlq"),
        f"riskstream-test-{uuid.uuid4().hex[:10]}",
    )
    sent = produce_events(producer_factory(), topics.input, 800, seed=12)
    with running_worker(worker_settings(kafka.bootstrap_servers, topics), fake_loaded()):
        wait_committed(kafka.config(), topics, timeout_s=60)
    _verified(kafka, topics, sent)


@pytest.mark.parametrize("guarantee", ["at_least_once", "exactly_once"])
def test_an_aborted_upstream_transaction_is_never_scored(
    kafka: Any, topic_factory: Callable[..., str], guarantee: str
) -> None:
    topics = make_topics(topic_factory, 2)
    upstream = rdkafka.producer(kafka.bootstrap_servers, **{"transactional.id": f"upstream-{uuid.uuid4().hex}"})
    upstream.init_transactions(30)
    records = list(_records(60, seed=13))
    upstream.begin_transaction()
    rdkafka.produce_all(upstream, topics.input, records[:20])
    upstream.abort_transaction(30)
    upstream.begin_transaction()
    rdkafka.produce_all(upstream, topics.input, records[20:40])
    upstream.commit_transaction(30)
    upstream.begin_transaction()
    rdkafka.produce_all(upstream, topics.input, records[40:])
    upstream.abort_transaction(30)
    committed_ids = {json.loads(value)["transaction_id"] for _, value, _ in records[20:40]}

    settings = worker_settings(kafka.bootstrap_servers, topics, guarantee=guarantee)
    with running_worker(settings, fake_loaded()):
        wait_committed(kafka.config(), topics, timeout_s=60)
    scored = [json.loads(record.value)["transaction_id"] for record in read_topic(kafka.config(), topics.scores)]
    letters = list(read_topic(kafka.config(), topics.dead_letters))
    assert sorted(scored) == sorted(committed_ids)
    assert letters == []


def test_scores_land_on_their_inputs_partition_whatever_the_upstream_partitioner(
    kafka: Any, topic_factory: Callable[..., str]
) -> None:
    """librdkafka's default partitioner (CRC32) is not kafka-python's (murmur2): the worker must not re-hash."""
    topics = make_topics(topic_factory, 8)
    client = rdkafka.producer(kafka.bootstrap_servers)  # partitioner: consistent_random (the default)
    records = list(_records(2000, seed=14))
    poison = [(key, value[:-9], None) for key, value, _ in records[:40]]  # malformed JSON: dead letters
    sent = rdkafka.produce_all(client, topics.input, [*records, *poison])
    with running_worker(worker_settings(kafka.bootstrap_servers, topics), fake_loaded()):
        wait_committed(kafka.config(), topics, timeout_s=60)
    placements: Counter[bool] = Counter()
    keys_per_output: dict[bytes, set[int]] = {}
    for topic in (topics.scores, topics.dead_letters):
        for record in read_topic(kafka.config(), topic):
            placements[json.loads(record.value)["source"]["partition"] == record.partition] += 1
            keys_per_output.setdefault(record.key, set()).add(record.partition)
    assert placements == Counter({True: sent})
    assert all(len(partitions) == 1 for partitions in keys_per_output.values())
    inputs = {record.partition for record in read_topic(kafka.config(), topics.input)}
    assert len(inputs) > 4, "the upstream spread its keys over the partitions"


def test_an_output_topic_with_another_partition_count_is_placed_by_key(
    kafka: Any, topic_factory: Callable[..., str], producer_factory: Callable[..., Any]
) -> None:
    topics = Topics(
        topic_factory(4, prefix="tx"),
        topic_factory(3, prefix="scores"),
        topic_factory(4, prefix="dlq"),
        f"riskstream-test-{uuid.uuid4().hex[:10]}",
    )
    sent = produce_events(producer_factory(), topics.input, 600, seed=15)
    with running_worker(worker_settings(kafka.bootstrap_servers, topics), fake_loaded()):
        wait_committed(kafka.config(), topics, timeout_s=60)
    _verified(kafka, topics, sent)
    used = {record.partition for record in read_topic(kafka.config(), topics.scores)}
    assert used == {0, 1, 2}


def test_trace_context_and_configured_headers_pass_through(kafka: Any, topic_factory: Callable[..., str]) -> None:
    topics = make_topics(topic_factory, 2)
    trace = [
        ("traceparent", b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
        ("tracestate", b"congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"),
        ("baggage", b"tenant=acme,region=eu-west-1"),
        ("x-request-id", b"req-7f3a9c"),
        ("x-not-passed", b"internal"),
    ]
    records = [(key, value, trace) for key, value, _ in _records(300, seed=16)]
    records += [(b"acct-poison", b"{not json", trace)]
    sent = rdkafka.produce_all(rdkafka.producer(kafka.bootstrap_servers), topics.input, records)
    settings = worker_settings(kafka.bootstrap_servers, topics, producer={"passthrough_headers": ["x-request-id"]})
    with running_worker(settings, fake_loaded()):
        wait_committed(kafka.config(), topics, timeout_s=60)
    expected = trace[:4]
    outcomes = 0
    for topic, count in ((topics.scores, 300), (topics.dead_letters, 1)):
        for message in rdkafka.read_all(kafka.bootstrap_servers, topic, 2, expected=count):
            ours = ("riskstream-", "content-type")
            assert [(name, value) for name, value in message.headers() if not name.startswith(ours)] == expected
            outcomes += 1
    assert outcomes == sent


def _without_zstd(monkeypatch: pytest.MonkeyPatch) -> None:
    """As if the zstd library were missing: every zstd batch is one the worker cannot decode."""
    import kafka.codec

    monkeypatch.setattr(kafka.codec, "has_zstd", lambda: False)


def test_an_undecodable_batch_becomes_dead_letters_with_coordinates(
    kafka: Any, topic_factory: Callable[..., str], monkeypatch: pytest.MonkeyPatch
) -> None:
    topics = make_topics(topic_factory, 1)
    plain = rdkafka.produce_all(rdkafka.producer(kafka.bootstrap_servers), topics.input, _records(50, seed=17))
    zstd = rdkafka.producer(kafka.bootstrap_servers, **{"compression.type": "zstd", "linger.ms": 50})
    undecodable = rdkafka.produce_all(zstd, topics.input, _records(120, seed=18))
    after = rdkafka.produce_all(rdkafka.producer(kafka.bootstrap_servers), topics.input, _records(50, seed=19))
    settings = worker_settings(kafka.bootstrap_servers, topics, producer={"compression_type": "lz4"})
    _without_zstd(monkeypatch)
    with running_worker(settings, fake_loaded()) as worker:
        consumed = worker.metrics.registry.get_sample_value
        wait_until(lambda: (consumed("riskstream_events_consumed_total") or 0) >= 220, 60, "every offset consumed")
        wait_committed(kafka.config(), topics, timeout_s=60)
    monkeypatch.undo()  # the checks below read the zstd input again
    letters = [json.loads(record.value) for record in read_topic(kafka.config(), topics.dead_letters)]
    assert {letter["error_type"] for letter in letters} == {"undecodable_batch"}
    assert sorted(letter["source"]["offset"] for letter in letters) == list(range(plain, plain + undecodable))
    assert all(letter["payload"] == "" and "zstd" in letter["error"] for letter in letters)
    counts = outcome_counts(kafka.config(), [topics.scores, topics.dead_letters])
    assert sorted(counts.values()) == [1] * (plain + undecodable + after)


def test_an_undecodable_batch_stops_the_worker_when_told_to(
    kafka: Any, topic_factory: Callable[..., str], monkeypatch: pytest.MonkeyPatch
) -> None:
    topics = make_topics(topic_factory, 1)
    zstd = rdkafka.producer(kafka.bootstrap_servers, **{"compression.type": "zstd"})
    rdkafka.produce_all(zstd, topics.input, _records(30, seed=20))
    settings = worker_settings(
        kafka.bootstrap_servers, topics, consumer={"undecodable_batch": "stop"}, producer={"compression_type": "none"}
    )
    _without_zstd(monkeypatch)
    worker = Worker(settings, fake_loaded())
    assert worker.run() == EXIT_UNDECODABLE
    assert list(read_topic(kafka.config(), topics.scores)) == []
