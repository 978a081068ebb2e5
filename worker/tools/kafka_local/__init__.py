"""A real single-node Apache Kafka broker (KRaft, broker+controller) on loopback, without Docker.

One launcher for developers, tests, CI, the demo, the benchmark and the fault-injection tests, split
by concern: :mod:`~worker.tools.kafka_local.jars` (the broker's jars from Maven Central, cached),
:mod:`~worker.tools.kafka_local.tls` (a self-signed certificate for ``sasl_ssl``),
:mod:`~worker.tools.kafka_local.process` (:class:`LocalKafka`: one named instance, its state and its
JVM) and :mod:`~worker.tools.kafka_local.cli` (``python ops/kafka/kafka_local.py ...``).

What a caller may rely on:

- ``start`` is idempotent: a running, healthy instance is reused and its bootstrap address returned.
  It returns only once a real kafka-python client has bootstrapped against the broker.
- An instance (name + state dir) keeps its ports, cluster id, data and credentials across
  stop/kill/start, so clients reconnect to the same address after a restart.
- Processes are only ever signalled by the pid recorded in the instance dir, after checking that
  the pid still belongs to this instance's JVM; never by name.
- Everything listens on 127.0.0.1 only.
"""

from worker.tools.kafka_local.base import KafkaLocalError, RedactedStr
from worker.tools.kafka_local.cli import main
from worker.tools.kafka_local.jars import KAFKA_VERSION, cache_root, ensure_jars
from worker.tools.kafka_local.process import APP_USER, SCRAM_MECHANISM, LocalKafka, Security, default_state_root

__all__ = [
    "APP_USER",
    "KAFKA_VERSION",
    "SCRAM_MECHANISM",
    "KafkaLocalError",
    "LocalKafka",
    "RedactedStr",
    "Security",
    "cache_root",
    "default_state_root",
    "ensure_jars",
    "main",
]
