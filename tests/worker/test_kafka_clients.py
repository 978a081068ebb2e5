"""Our guards over kafka-python behaviour, checked on the library's own objects (no broker)."""

from __future__ import annotations

import selectors
import socket

import kafka.errors as kafka_errors
import pytest
from kafka import KafkaConsumer
from kafka.net.selector import NetworkSelector, Task
from kafka.producer.transaction_manager import TransactionManager

from worker.guarantee import AtLeastOnce, ExactlyOnce
from worker.kafka_clients import (
    consumer_config,
    fence_instead_of_bumping_epoch,
    producer_config,
    register_io_waits_without_formatting_a_miss,
    skip_the_coordinator_round_trip_when_connected,
)
from worker.settings import load_settings


def test_a_transactional_producer_is_fenced_instead_of_bumping_its_epoch() -> None:
    fence_instead_of_bumping_epoch()
    fence_instead_of_bumping_epoch()  # idempotent
    transactional = TransactionManager(transactional_id="riskstream-w1", api_version=(4, 1))
    idempotent = TransactionManager(api_version=(4, 1))
    for error in (kafka_errors.InvalidProducerEpochError, kafka_errors.InvalidProducerEpochError("x")):
        # A zombie's epoch bump would fence the instance that now owns the transactional id.
        assert transactional.classify_batch_error(error, None) == TransactionManager.ERROR_CLASS_FATAL
    # Everything else is left to kafka-python: an idempotent producer still recovers by a bump...
    assert idempotent.classify_batch_error(kafka_errors.InvalidProducerEpochError, None) == (
        TransactionManager.ERROR_CLASS_NEEDS_EPOCH_BUMP
    )
    # ...and a transactional one still aborts on an ordinary non-retriable error.
    assert transactional.classify_batch_error(kafka_errors.MessageSizeTooLargeError, None) == (
        TransactionManager.ERROR_CLASS_ABORTABLE
    )


def test_consumer_and_producer_follow_the_interop_settings() -> None:
    settings = load_settings(worker_id="pod-3")
    consumer = consumer_config(settings)
    assert consumer["isolation_level"] == "read_committed"  # an aborted upstream transaction is never read
    assert consumer["group_instance_id"] == "pod-3"  # static membership: a restart reclaims its partitions
    assert producer_config(settings)["compression_type"] == "zstd"

    dynamic = load_settings(
        consumer={"static_membership": False, "isolation_level": "read_uncommitted"},
        producer={"compression_type": "none"},
    )
    assert "group_instance_id" not in consumer_config(dynamic)
    assert consumer_config(dynamic)["isolation_level"] == "read_uncommitted"
    assert producer_config(dynamic)["compression_type"] is None
    eos = load_settings(guarantee="exactly_once", worker_id="pod-3", group_id="g")
    transactional = ExactlyOnce.producer_settings(eos)
    assert transactional["transactional_id"] == "riskstream-g-pod-3"
    assert AtLeastOnce.producer_settings(settings) == {}


def test_a_connected_coordinator_is_confirmed_without_a_network_round_trip(monkeypatch: pytest.MonkeyPatch) -> None:
    skip_the_coordinator_round_trip_when_connected()
    skip_the_coordinator_round_trip_when_connected()  # idempotent
    consumer = KafkaConsumer(bootstrap_servers="127.0.0.1:1", api_version=(4, 1), group_id="g")
    try:
        coordinator = consumer._coordinator
        tasks: list[object] = []
        # The library's own path: a task on the network thread, which finds no coordinator here in time.
        monkeypatch.setattr(coordinator._net, "run", lambda coro, *args: tasks.append(coro) or False)
        connected: set[int] = set()
        monkeypatch.setattr(coordinator._client, "connected", lambda node_id: node_id in connected)

        assert coordinator.coordinator_id is None
        assert coordinator.ensure_coordinator_ready(timeout_ms=0) is False
        assert len(tasks) == 1  # no coordinator yet: looked up as before

        coordinator.coordinator_id = 7
        assert coordinator.ensure_coordinator_ready(timeout_ms=0) is False
        assert len(tasks) == 2  # known but not connected: the library decides (it may mark it dead)

        connected.add(7)
        assert coordinator.ensure_coordinator_ready(timeout_ms=0) is True
        assert len(tasks) == 2  # known and connected: answered on the caller's thread
    finally:
        monkeypatch.undo()
        consumer.close(autocommit=False)


class _CountedSocket:
    """A socket end whose repr is counted (the library's miss path formats it into a KeyError)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.reprs = 0

    def fileno(self) -> int:
        return self.sock.fileno()

    def __repr__(self) -> str:
        self.reprs += 1
        return f"<counted {self.sock.fileno()}>"


def test_a_socket_wait_is_registered_as_the_library_does_without_formatting_a_miss() -> None:
    register_io_waits_without_formatting_a_miss()
    register_io_waits_without_formatting_a_miss()  # idempotent
    net = NetworkSelector()
    left, right = socket.socketpair()
    try:
        counted = _CountedSocket(left)
        reader, writer = Task(lambda: None), Task(lambda: None)

        net.register_event(counted, selectors.EVENT_READ, reader)  # not held yet: the common case
        assert counted.reprs == 0  # the library builds two KeyError messages with repr() here
        key = net._selector.get_key(counted)
        assert (key.events, key.data) == (selectors.EVENT_READ, (reader, None))

        net.register_event(counted, selectors.EVENT_WRITE, writer)  # already held: the library's own path
        key = net._selector.get_key(counted)
        assert (key.events, key.data) == (selectors.EVENT_READ | selectors.EVENT_WRITE, (reader, writer))
        with pytest.raises(RuntimeError, match="EVENT_READ already registered"):
            net.register_event(counted, selectors.EVENT_READ, reader)
        counted.reprs = 0  # that error names the socket, as it should

        net.unregister_event(counted, selectors.EVENT_READ | selectors.EVENT_WRITE)
        plain = lambda: None  # noqa: E731 - a bare callable is wrapped in a Task, as by the library
        net.register_event(counted, selectors.EVENT_WRITE, plain)
        key = net._selector.get_key(counted)
        assert key.events == selectors.EVENT_WRITE and key.data[0] is None and isinstance(key.data[1], Task)
        net.unregister_event(counted, selectors.EVENT_WRITE)
        assert counted.reprs == 0
        net.close()
        with pytest.raises(RuntimeError, match="Selector is closed"):  # the library's own error
            net.register_event(counted, selectors.EVENT_READ, reader)
    finally:
        net.close()
        left.close()
        right.close()
