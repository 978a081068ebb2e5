"""Our guards over kafka-python behaviour, checked on the library's own objects (no broker)."""

from __future__ import annotations

import kafka.errors as kafka_errors
from kafka.producer.transaction_manager import TransactionManager

from worker.guarantee import AtLeastOnce, ExactlyOnce
from worker.kafka_clients import consumer_config, fence_instead_of_bumping_epoch, producer_config
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
