"""Every private kafka-python name riskstream's workarounds rely on, checked on the installed version.

The worker patches or reads internals of kafka-python 3.0.x (``worker/kafka_clients.py``,
``worker/guarantee.py``, ``worker/preflight.py``, ``worker/source.py``); pyproject pins the versions
they were verified on. An upgrade that renames one must fail here, loudly and by name, not later as a
lost partition, an unordered replay or a fenced healthy instance. No broker is needed.
"""

from __future__ import annotations

import threading
from importlib.metadata import version

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.coordinator.consumer import ConsumerCoordinator
from kafka.net import selector as net_selector
from kafka.net.compat import KafkaNetClient
from kafka.producer.transaction_manager import TransactionalRequestResult, TransactionManager
from kafka.record.default_records import DefaultRecordBatch

from worker.costs import io_stage

UNREACHABLE = {"bootstrap_servers": "127.0.0.1:1", "api_version": (4, 1)}


def _missing(obj: object, names: tuple[str, ...]) -> list[str]:
    return [
        f"{type(obj).__name__ if not isinstance(obj, type) else obj.__name__}.{name}"
        for name in names
        if not hasattr(obj, name)
    ]


def test_the_installed_kafka_python_is_the_verified_series() -> None:
    assert version("kafka-python").startswith("3.0."), version("kafka-python")


def test_class_level_internals_exist() -> None:
    missing = [
        *_missing(ConsumerCoordinator, ("need_rejoin",)),  # guard_against_lost_join_results
        *_missing(TransactionManager, ("classify_batch_error", "is_transactional", "ERROR_CLASS_FATAL")),
        *_missing(DefaultRecordBatch, ("_maybe_uncompress", "base_offset", "last_offset")),  # undecodable batches
        *_missing(KafkaNetClient, ("maybe_connect", "close", "cluster")),  # preflight
        *_missing(net_selector, ("NetworkSelector", "Task")),  # register_io_waits_without_formatting_a_miss
        *_missing(net_selector.NetworkSelector, ("register_event",)),
    ]
    assert not missing, f"kafka-python internals gone: {missing}"
    assert isinstance(KafkaAdminClient.DEFAULT_CONFIG, dict)


def test_instance_internals_exist() -> None:
    producer = KafkaProducer(**UNREACHABLE, transactional_id="internals-check")
    consumer = KafkaConsumer(**UNREACHABLE, group_id="g", group_instance_id="i")
    try:
        missing = [
            *_missing(producer, ("_sender", "_transaction_manager")),
            *_missing(producer._sender, ("force_close", "wakeup", "join")),  # halt_on_failure, abort_producer
            *_missing(
                producer._transaction_manager,  # fatal-state checks and the abort with the current epoch
                ("has_fatal_error", "_last_error", "begin_abort", "producer_id_and_epoch"),
            ),
            # ExactlyOnce._transactional_request: the bounded waits for AddOffsetsToTxn and EndTxn
            *_missing(producer._transaction_manager, ("send_offsets_to_transaction", "begin_commit")),
            # ExactlyOnce._add_partitions: every partition of a step in one AddPartitionsToTxn
            *_missing(producer._transaction_manager, ("maybe_add_partition_to_transaction",)),
            *_missing(consumer, ("_fetcher", "_coordinator")),
            *_missing(consumer._fetcher, ("_next_partition_records",)),  # undecodable_position
            *_missing(consumer._coordinator, ("is_dynamic_member", "_join_task")),  # leave_group_on_close, join guard
            # skip_the_coordinator_round_trip_when_connected
            *_missing(consumer._coordinator, ("ensure_coordinator_ready", "coordinator_id", "_client")),
            *_missing(consumer._coordinator._client, ("connected",)),
        ]
        # ExactlyOnce.open_producer lowers the sender's own copy of retry_backoff_ms
        sender_config = getattr(producer._sender, "config", None)
        if not isinstance(sender_config, dict) or "retry_backoff_ms" not in sender_config:
            missing.append("Sender.config['retry_backoff_ms']")
    finally:
        producer.close(timeout=0)
        consumer.close(autocommit=False)
    assert not missing, f"kafka-python internals gone: {missing}"


def test_the_selector_keeps_its_map_by_file_descriptor() -> None:
    net = net_selector.NetworkSelector()
    try:
        # register_io_waits_without_formatting_a_miss looks a descriptor up here (it falls back if absent)
        assert isinstance(getattr(net._selector, "_fd_to_key", None), dict)
    finally:
        net.close()


def test_a_transactional_result_wait_reports_a_timeout_by_returning_false() -> None:
    result = TransactionalRequestResult()
    assert result.wait(timeout_ms=0) is False  # not done: the bounded wait keeps checking
    result.done()
    assert result.wait(timeout_ms=0) is True


def test_the_preflight_connection_internals_exist() -> None:
    client = KafkaNetClient(**{**KafkaAdminClient.DEFAULT_CONFIG, "bootstrap_servers": ["127.0.0.1:1"]})
    try:
        node = client.cluster.bootstrap_brokers()[0].node_id
        client.maybe_connect(node)
        conn = client._manager._conns.get(node)
        assert conn is not None and hasattr(conn, "init_future") and hasattr(conn, "broker_version_data")
        assert hasattr(client._net, "poll")
    finally:
        client.close()


def test_the_io_threads_are_named_as_the_stage_accounting_expects() -> None:
    """``worker/costs.py`` finds kafka-python's I/O threads by name: every one of a real producer's
    and consumer's threads must count to a stage (an unmatched name would drop its CPU from the table)."""
    before = {thread.ident for thread in threading.enumerate()}
    producer = KafkaProducer(**UNREACHABLE, client_id="riskstream")
    consumer = KafkaConsumer(**UNREACHABLE, client_id="riskstream", group_id="g")
    try:
        consumer.poll(timeout_ms=0)  # starts the consumer's network thread if it is started lazily
        names = sorted(thread.name for thread in threading.enumerate() if thread.ident not in before)
    finally:
        producer.close(timeout=0)
        consumer.close(autocommit=False)
    stages = {name: io_stage(name) for name in names}
    assert "producer_io" in stages.values() and "network_io" in stages.values(), stages
    assert None not in stages.values(), f"kafka-python threads no stage counts: {stages}"
