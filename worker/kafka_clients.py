"""kafka-python clients built from the settings (connection and security in one place)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import kafka.errors as kafka_errors
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.coordinator.assignors.range import RangePartitionAssignor
from kafka.coordinator.assignors.roundrobin import RoundRobinPartitionAssignor
from kafka.structs import TopicPartition

from worker.settings import KafkaSettings, Settings


def guard_against_lost_join_results() -> None:
    """Work around a kafka-python 3.0.12 race that can leave a consumer without partitions.

    ``ensure_active_group`` loops ``while need_rejoin()`` and, when ``poll()``'s timer expires
    mid-join, leaves the join task in flight to be awaited by the next ``poll()``. But when this
    member is the group leader, computing the assignment updates the metadata snapshot that
    ``need_rejoin()`` compares against, so the next ``poll()`` sees no need to rejoin and never
    applies the finished join: no ``on_partitions_assigned``, heartbeats stay disabled, and the
    member is expelled after ``session.timeout.ms`` while believing it is in the group. Our poll
    loop uses short timeouts (backpressure and commits run between polls), which makes this
    frequent (about 1 start in 20 when the topic's metadata arrives during the first join).

    The guard: a join attempt that is still in flight, or finished but not yet applied, means the
    member still needs to (re)join. Idempotent; a no-op for library versions without the field.
    """
    from kafka.coordinator.consumer import ConsumerCoordinator

    if getattr(ConsumerCoordinator, "_riskstream_join_guard", False):
        return
    original = ConsumerCoordinator.need_rejoin

    def need_rejoin(self: ConsumerCoordinator) -> bool:
        if getattr(self, "_join_task", None) is not None:
            return True
        return bool(original(self))

    ConsumerCoordinator.need_rejoin = need_rejoin
    ConsumerCoordinator._riskstream_join_guard = True


def skip_the_coordinator_round_trip_when_connected() -> None:
    """Answer ``ensure_coordinator_ready`` on the caller's thread while the coordinator is connected.

    kafka-python 3.0.12 runs ``ensure_coordinator_ready`` as a task on its network thread and blocks
    the caller until it is done, on every ``KafkaConsumer.poll``: a wake-up of the network thread, a
    coroutine, a cross-thread event and two thread switches, to learn that a connected coordinator is
    still known. Measured on the 2-core machine with a real broker: ~78 µs of CPU per poll of a
    steady member (35 on the caller, the rest on the network thread), about a third of the poll
    thread's profile at low load.

    The task's answer is ``True`` at once when ``coordinator_id`` is set and its connection is up
    (``coordinator()`` only marks a coordinator dead when it is disconnected), so that case is
    answered here from the same two reads: the id and the connection's state. Anything else — no
    coordinator yet, a lost or backing-off connection — runs the library's own task unchanged, which
    finds or marks the coordinator as before. Reading the two values off the network thread can only
    see them a moment early, exactly as if the connection dropped just after the task had run.
    Idempotent; a no-op for library versions without these names.
    """
    from kafka.coordinator.base import BaseCoordinator

    if getattr(BaseCoordinator, "_riskstream_coordinator_fast_path", False):
        return
    original = BaseCoordinator.ensure_coordinator_ready

    def ensure_coordinator_ready(self: BaseCoordinator, timeout_ms: float | None = None) -> bool:
        coordinator_id = getattr(self, "coordinator_id", None)
        client = getattr(self, "_client", None)
        connected = getattr(client, "connected", None)
        if coordinator_id is not None and connected is not None and connected(coordinator_id):
            return True
        return bool(original(self, timeout_ms=timeout_ms))

    BaseCoordinator.ensure_coordinator_ready = ensure_coordinator_ready
    BaseCoordinator._riskstream_coordinator_fast_path = True


def register_io_waits_without_formatting_a_miss() -> None:
    """Register a socket wait without building two error messages first (kafka-python 3.0.12).

    Every wait for a socket to become readable or writable calls ``NetworkSelector.register_event``,
    and its waits are registered and unregistered one at a time, so the common case is a socket the
    selector does not hold yet. The library finds that out from ``selector.get_key`` raising
    ``KeyError``: the standard library formats ``repr(socket)`` into that error twice (mapping and
    ``get_key``), and a socket's repr asks the kernel for both of its addresses. That was about 7% of
    the producer's sender thread in a py-spy profile.

    The patch looks the file descriptor up in the selector's own map first: absent, it registers the
    wait exactly as the library's ``except KeyError`` branch does; present (a second event on the
    same socket), a closed socket, a closed selector, or one without that map, the library's method
    runs as is.
    Idempotent; a no-op for library versions without these names.
    """
    import selectors

    from kafka.net import selector as net_selector

    network_selector = getattr(net_selector, "NetworkSelector", None)
    task_type = getattr(net_selector, "Task", None)
    if network_selector is None or task_type is None:
        return
    if getattr(network_selector, "_riskstream_register_fast_path", False):
        return
    original = network_selector.register_event

    def register_event(self: Any, fileobj: Any, event: int, task: Any) -> None:
        selector = getattr(self, "_selector", None)
        fd_to_key = getattr(selector, "_fd_to_key", None)
        fileno = fileobj if isinstance(fileobj, int) else getattr(fileobj, "fileno", None)
        open_selector = selector is not None and selector.get_map() is not None  # None: closed
        if selector is not None and open_selector and isinstance(fd_to_key, dict) and fileno is not None:
            try:
                fd = fileno if isinstance(fileno, int) else fileno()
            except (OSError, ValueError):
                fd = -1
            if isinstance(fd, int) and fd >= 0 and fd not in fd_to_key:
                if not isinstance(task, task_type):
                    task = task_type(task)
                data = (task, None) if event == selectors.EVENT_READ else (None, task)
                selector.register(fileobj, event, data)
                return
        original(self, fileobj, event, task)

    network_selector.register_event = register_event
    network_selector._riskstream_register_fast_path = True


def fence_instead_of_bumping_epoch() -> None:
    """Work around kafka-python 3.0.12 bumping a *transactional* producer's epoch on its own.

    When a produce request fails with INVALID_PRODUCER_EPOCH, kafka-python classifies it as
    recoverable by a KIP-360 epoch bump and sends InitProducerId for the transactional id. For a
    zombie (frozen, its id since taken over by a new instance) that is exactly wrong: the broker
    error means another producer owns the id, and the bump fences that healthy instance instead.
    The Java client treats it as fatal (ProducerFenced) for transactional producers; so do we.
    Idempotent (non-transactional) producers keep the bump. Idempotent patch.
    """
    from kafka.producer.transaction_manager import TransactionManager

    if getattr(TransactionManager, "_riskstream_fence_guard", False):
        return
    original = TransactionManager.classify_batch_error
    fenced = (kafka_errors.InvalidProducerEpochError, kafka_errors.ProducerFencedError)

    def classify_batch_error(self: TransactionManager, error: Any, batch: Any, log_start_offset: int = -1) -> str:
        error_type = error if isinstance(error, type) else type(error)
        if self.is_transactional() and issubclass(error_type, fenced):
            return str(self.ERROR_CLASS_FATAL)
        return str(original(self, error, batch, log_start_offset=log_start_offset))

    TransactionManager.classify_batch_error = classify_batch_error
    TransactionManager._riskstream_fence_guard = True


def connection_config(kafka: KafkaSettings) -> dict[str, Any]:
    """Bootstrap, client id and security options shared by every client."""
    config: dict[str, Any] = {
        "bootstrap_servers": [s.strip() for s in kafka.bootstrap_servers.split(",") if s.strip()],
        "client_id": kafka.client_id,
        "security_protocol": kafka.security_protocol,
        "request_timeout_ms": kafka.request_timeout_ms,
    }
    if kafka.security_protocol in ("SSL", "SASL_SSL"):
        config["ssl_check_hostname"] = kafka.ssl_check_hostname
        if kafka.ssl_cafile is not None:
            config["ssl_cafile"] = str(kafka.ssl_cafile)
        if kafka.ssl_certfile is not None and kafka.ssl_keyfile is not None:
            config["ssl_certfile"] = str(kafka.ssl_certfile)
            config["ssl_keyfile"] = str(kafka.ssl_keyfile)
    if kafka.security_protocol == "SASL_SSL":
        assert kafka.sasl_password is not None  # enforced by KafkaSettings validation
        config["sasl_mechanism"] = kafka.sasl_mechanism
        config["sasl_plain_username"] = kafka.sasl_username
        config["sasl_plain_password"] = kafka.sasl_password.get_secret_value()
    return config


class UndecodableBatchError(kafka_errors.KafkaError):
    """A record batch that cannot be decompressed, with the offsets it spans (header fields)."""

    def __init__(self, base_offset: int, last_offset: int, cause: BaseException) -> None:
        super().__init__(f"record batch {base_offset}-{last_offset} cannot be decoded: {type(cause).__name__}: {cause}")
        self.base_offset = base_offset
        self.last_offset = last_offset
        self.cause = cause


#: What ``KafkaConsumer.poll`` raises for input it cannot decode (see :func:`undecodable_position`).
UNDECODABLE_ERRORS = (UndecodableBatchError, kafka_errors.UnsupportedCodecError, kafka_errors.CorruptRecordError)


def annotate_undecodable_batches() -> None:
    """Make a batch that cannot be decompressed raise :class:`UndecodableBatchError` with its offsets.

    kafka-python decompresses a v2 record batch lazily while ``poll()`` iterates it; a missing codec
    library, an unknown codec id or a corrupt body then raises from ``poll()`` with nothing saying
    which offsets the batch held (a corrupt zstd frame even raises zstandard's own error type). The
    batch header (base offset, last offset delta) is readable without decompressing, so the wrapper
    attaches it. Idempotent.
    """
    from kafka.record.default_records import DefaultRecordBatch

    if getattr(DefaultRecordBatch, "_riskstream_undecodable_guard", False):
        return
    original = DefaultRecordBatch._maybe_uncompress

    def _maybe_uncompress(self: DefaultRecordBatch) -> None:
        try:
            original(self)
        except Exception as exc:
            raise UndecodableBatchError(int(self.base_offset), int(self.last_offset), exc) from exc

    DefaultRecordBatch._maybe_uncompress = _maybe_uncompress
    DefaultRecordBatch._riskstream_undecodable_guard = True


def undecodable_position(consumer: KafkaConsumer, exc: BaseException) -> tuple[TopicPartition, int, int] | None:
    """Where the batch that made ``poll()`` raise ``exc`` lies: (partition, first, last offset).

    The consumer's fetcher keeps the records it failed on as the next in line, positioned at the first
    offset it could not return. The last offset is the batch's (from :class:`UndecodableBatchError`);
    for a batch whose checksum failed it is not known, so only that first offset is reported, and the
    next poll meets the rest of the batch again, one offset further on.
    """
    fetcher = getattr(consumer, "_fetcher", None)
    part = getattr(fetcher, "_next_partition_records", None)
    if part is None:
        return None
    tp = part.topic_partition
    first = int(part.next_fetch_offset)
    last = int(getattr(exc, "last_offset", first))
    return tp, first, max(first, last)


def leave_group_on_close(consumer: KafkaConsumer) -> None:
    """Let a static member leave its group when it closes (a graceful shutdown).

    A static member (``group_instance_id``) never sends LeaveGroup in kafka-python, as in the Java
    client: its partitions then stay unowned until ``session.timeout.ms`` passes, which makes every
    rollout and scale-down stall those partitions. After a graceful drain there is nothing to wait
    for, so the worker leaves like a dynamic member (the broker accepts LeaveGroup from a member with
    an instance id). A crash sends nothing, and a restart with the same id reclaims the partitions
    without a rebalance: that is what static membership is for.
    """
    coordinator = getattr(consumer, "_coordinator", None)
    if coordinator is not None and hasattr(coordinator, "is_dynamic_member"):
        coordinator.is_dynamic_member = lambda: True


def build_restore_consumer(settings: Settings) -> KafkaConsumer:
    """A group-less ``read_committed`` consumer that reads a state changelog (``worker.state``)."""
    annotate_undecodable_batches()
    return KafkaConsumer(
        **connection_config(settings.kafka),
        group_id=None,
        enable_auto_commit=False,
        isolation_level="read_committed",
        max_partition_fetch_bytes=8 << 20,
        fetch_max_bytes=64 << 20,
    )


def consumer_config(settings: Settings) -> dict[str, Any]:
    """kafka-python options of the worker's consumer."""
    c = settings.consumer
    config: dict[str, Any] = {
        **connection_config(settings.kafka),
        "group_id": settings.group_id,
        "enable_auto_commit": False,
        "auto_offset_reset": c.auto_offset_reset,
        "max_poll_records": c.max_poll_records,
        "max_poll_interval_ms": c.max_poll_interval_ms,
        "session_timeout_ms": c.session_timeout_ms,
        "heartbeat_interval_ms": c.heartbeat_interval_ms,
        "fetch_max_wait_ms": c.fetch_max_wait_ms,
        # read_committed: an aborted upstream transaction is never scored (exactly-once requires it).
        "isolation_level": c.isolation_level,
        # Eager assignors: a rebalance revokes everything, and the listener drains before it returns.
        "partition_assignment_strategy": (RangePartitionAssignor, RoundRobinPartitionAssignor),
    }
    if c.static_membership:
        config["group_instance_id"] = settings.worker_id
    return config


def build_consumer(settings: Settings) -> KafkaConsumer:
    guard_against_lost_join_results()
    skip_the_coordinator_round_trip_when_connected()
    register_io_waits_without_formatting_a_miss()
    annotate_undecodable_batches()
    return KafkaConsumer(**consumer_config(settings))


def producer_config(settings: Settings) -> dict[str, Any]:
    """kafka-python options of the worker's producer; the delivery guarantee adds its own
    (``worker.guarantee``: transactional ones for exactly-once)."""
    compression = settings.producer.compression_type
    config: dict[str, Any] = {
        **connection_config(settings.kafka),
        "acks": "all",
        "enable_idempotence": True,
        # One produce request in flight per broker: when a batch fails for good, nothing queued
        # behind it can overtake it, so a replay republishes in input order (per-key order).
        "max_in_flight_requests_per_connection": 1,
        "linger_ms": 1,
        "compression_type": None if compression == "none" else compression,
        # A send that cannot reach the topic fails within this long and the work is replayed.
        "max_block_ms": 10_000,
        "delivery_timeout_ms": 35_000,
    }
    return config


def build_producer(settings: Settings) -> KafkaProducer:
    """An idempotent producer with the worker's settings (not transactional)."""
    register_io_waits_without_formatting_a_miss()
    return KafkaProducer(**producer_config(settings))


def build_admin(settings: Settings) -> KafkaAdminClient:
    return KafkaAdminClient(**connection_config(settings.kafka))


def abort_producer(producer: KafkaProducer, join_timeout_s: float = 5.0) -> None:
    """Close ``producer`` without sending anything still queued in it; every pending send fails.

    After a failed send, records queued behind it must not reach the broker, or a later record of
    a key could land before the replay of an earlier one. ``KafkaProducer.close(timeout=0)`` does
    not do this in kafka-python 3.0: it flushes first, and that raises on the first unfinished
    batch before the sender is ever force-closed. So the sender thread is force-closed directly
    (it then fails its incomplete batches), and the producer closed once it has stopped.
    """
    sender = _force_close_sender(producer)
    if sender is not None:
        sender.join(join_timeout_s)
    producer.close(timeout=0)


def halt_on_failure(producer: KafkaProducer) -> Callable[[BaseException], None]:
    """An errback for a send's future that stops ``producer`` from sending anything more.

    kafka-python completes a future in its sender thread, before that thread drains the next
    batch of the same partition; force-closing the sender right there means no record queued
    behind a failed one can reach the broker (the producer fails them all), whatever the error
    was. Fatal errors already do this in kafka-python; expired or otherwise non-retriable but
    non-fatal ones do not, and would let a later record of a key land before the earlier one's
    replay.
    """

    def errback(_exc: BaseException) -> None:
        _force_close_sender(producer)

    return errback


def _force_close_sender(producer: KafkaProducer) -> Any:
    """Stop ``producer``'s sender thread without sending what is queued; returns the thread."""
    sender = getattr(producer, "_sender", None)
    if sender is None or not hasattr(sender, "force_close"):
        return None
    sender.force_close()
    return sender
