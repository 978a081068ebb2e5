"""Start-up checks against the cluster: fail fast, with one line, on what no retry can heal.

kafka-python retries every connection failure with a growing backoff, whatever its cause, and logs
each attempt: a wrong password surfaced after about 40 s and 200 log lines, first as "socket
disconnected". Before any long-lived client is built, the worker therefore

1. opens one connection to a bootstrap broker and classifies how it ends (:func:`check_connection`):
   authentication refused (exit 4, user and mechanism named, never the password), a certificate that
   does not verify (exit 5), or no broker reachable within ``kafka.startup_timeout_s`` (exit 8);
2. describes the three topics (:func:`check_topics`): the input must exist, the scores and dead-letter
   topics must exist or, with ``topics.create_missing``, are created with the input's partition count
   (exit 6 otherwise; a topic this user may not describe is exit 4). It returns their partition counts,
   which decide whether scores can keep their input's partition number (:class:`TopicLayout`).

A broker that goes away *after* start-up is retried as before: that is a fault that heals.
"""

from __future__ import annotations

import contextlib
import logging
import ssl
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import kafka.errors as kafka_errors
import structlog

from worker.errors import AuthenticationError, BrokerUnreachableError, TlsVerificationError, TopicError
from worker.kafka_clients import build_admin, connection_config
from worker.settings import KafkaSettings, Settings

log = structlog.get_logger("riskstream.preflight")

_RETRY_BACKOFF_S = (0.2, 0.5, 1.0, 2.0)
# Consecutive connections that end inside SASL authentication before it counts as refused: a broker
# closes the connection of a client whose credentials it rejected, and kafka-python often reports
# only that close ("socket disconnected"), not the rejection it raced with.
_SASL_CLOSES_MEAN_REJECTED = 2
_UNKNOWN_TOPIC = kafka_errors.UnknownTopicOrPartitionError.errno
_TOPIC_AUTHORIZATION_FAILED = kafka_errors.TopicAuthorizationFailedError.errno


@contextlib.contextmanager
def quiet_kafka_logs() -> Iterator[None]:
    """Silence kafka-python's per-attempt connection logging for the duration of a check."""
    logger = logging.getLogger("kafka")
    previous = logger.level
    logger.setLevel(logging.CRITICAL + 1)
    try:
        yield
    finally:
        logger.setLevel(previous)


def _who(kafka: KafkaSettings) -> str:
    return f"user {kafka.sasl_username!r} with {kafka.sasl_mechanism}"


def _tls_problem(exc: BaseException) -> str | None:
    """The TLS verification failure behind ``exc``, if that is what it is."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLCertVerificationError):
            return seen.verify_message or str(seen)
        text = str(seen)
        if "CERTIFICATE_VERIFY_FAILED" in text or "Hostname mismatch" in text:
            return text.split("] ", 1)[-1] if "] " in text else text
        seen = seen.__cause__ or seen.__context__
    return None


def _attempt(config: dict[str, Any], timeout_s: float) -> tuple[BaseException | None, bool]:
    """One connection to the first bootstrap broker; returns (how it failed or None, past ApiVersions)."""
    from kafka.admin import KafkaAdminClient
    from kafka.net.compat import KafkaNetClient

    client = KafkaNetClient(**{**KafkaAdminClient.DEFAULT_CONFIG, **config})
    try:
        node = client.cluster.bootstrap_brokers()[0].node_id
        client.maybe_connect(node)
        conn = client._manager._conns.get(node)
        if conn is None:
            return kafka_errors.KafkaConnectionError("no connection could be started"), False
        client._net.poll(timeout_ms=int(timeout_s * 1000), future=conn.init_future)
        future = conn.init_future
        if not future.is_done:
            return kafka_errors.KafkaTimeoutError("connection setup timed out"), False
        if future.succeeded():
            return None, True
        return future.exception, conn.broker_version_data is not None
    finally:
        client.close()


def check_connection(kafka: KafkaSettings) -> None:
    """Connect once to a bootstrap broker; raise a ``StartupCheckError`` for a failure no retry heals."""
    config = connection_config(kafka)
    servers: list[str] = config["bootstrap_servers"]
    deadline = time.monotonic() + kafka.startup_timeout_s
    sasl = kafka.security_protocol == "SASL_SSL"
    closes_in_sasl = 0
    attempt = 0
    last: BaseException | None = None
    with quiet_kafka_logs():
        while True:
            server = servers[attempt % len(servers)]
            remaining = deadline - time.monotonic()
            error, past_api_versions = _attempt({**config, "bootstrap_servers": [server]}, max(0.5, remaining))
            if error is None:
                return
            last = error
            if isinstance(error, kafka_errors.SaslAuthenticationFailedError):
                raise AuthenticationError(
                    f"Kafka authentication failed at {server}: the broker refused {_who(kafka)} "
                    "(check RISKSTREAM_KAFKA__SASL_USERNAME, __SASL_PASSWORD and __SASL_MECHANISM)"
                )
            if isinstance(error, kafka_errors.UnsupportedSaslMechanismError):
                raise AuthenticationError(
                    f"Kafka authentication failed at {server}: the broker does not offer {kafka.sasl_mechanism} "
                    "(set RISKSTREAM_KAFKA__SASL_MECHANISM to one it enables)"
                )
            tls = _tls_problem(error)
            if tls is not None:
                raise TlsVerificationError(
                    f"TLS verification of the broker at {server} failed: {tls} (set RISKSTREAM_KAFKA__SSL_CAFILE to "
                    "the CA bundle that signed the brokers' certificates; keep hostname verification on)"
                )
            if sasl and past_api_versions and isinstance(error, kafka_errors.KafkaConnectionError):
                closes_in_sasl += 1
                if closes_in_sasl >= _SASL_CLOSES_MEAN_REJECTED:
                    raise AuthenticationError(
                        f"Kafka authentication failed at {server}: the broker closed the connection while "
                        f"authenticating {_who(kafka)} (check RISKSTREAM_KAFKA__SASL_USERNAME, __SASL_PASSWORD "
                        "and __SASL_MECHANISM)"
                    )
            else:
                closes_in_sasl = 0
            if time.monotonic() >= deadline:
                break
            time.sleep(_RETRY_BACKOFF_S[min(attempt, len(_RETRY_BACKOFF_S) - 1)])
            attempt += 1
    detail = str(last)
    if not detail.startswith(type(last).__name__):
        detail = f"{type(last).__name__}: {detail}"
    raise BrokerUnreachableError(
        f"no Kafka broker reachable at {', '.join(servers)} within {kafka.startup_timeout_s:g}s "
        f"({detail}; check RISKSTREAM_KAFKA__BOOTSTRAP_SERVERS and __SECURITY_PROTOCOL)"
    )


@dataclass(frozen=True, slots=True)
class TopicLayout:
    """Partition counts of the worker's topics, as found (or created) at start-up."""

    input_partitions: int
    scores_partitions: int
    dead_letter_partitions: int

    def co_partitioned(self, output_partitions: int) -> bool:
        """Whether an output topic can take each result on its input's partition number."""
        return output_partitions == self.input_partitions


def check_topics(settings: Settings) -> TopicLayout:
    """Describe the input, scores and dead-letter topics; create the outputs when allowed."""
    topics = settings.topics
    names = [topics.input, topics.scores, topics.dead_letters]
    with quiet_kafka_logs():
        admin = build_admin(settings)
        try:
            found = {entry["name"]: entry for entry in admin.describe_topics(names)}
            partitions = _partition_counts(settings, names, found)
            if topics.input not in partitions:
                raise TopicError(
                    f"the input topic {topics.input!r} does not exist (RISKSTREAM_TOPICS__INPUT names it; "
                    "the producers of transaction events create it)"
                )
            missing = [name for name in names[1:] if name not in partitions]
            if missing and not topics.create_missing:
                raise TopicError(
                    f"topic {', '.join(repr(n) for n in missing)} does not exist: create it with "
                    f"{partitions[topics.input]} partitions like {topics.input!r}, or set "
                    "RISKSTREAM_TOPICS__CREATE_MISSING=true"
                )
            if missing:
                specs = {
                    name: {"num_partitions": partitions[topics.input], "replication_factor": -1} for name in missing
                }
                with contextlib.suppress(kafka_errors.TopicAlreadyExistsError):  # created meanwhile: fine
                    admin.create_topics(specs, wait_for_metadata=True)
                log.info("created missing topics", topics=missing, partitions=partitions[topics.input])
                for name in missing:
                    partitions[name] = partitions[topics.input]
        finally:
            admin.close()
    layout = TopicLayout(partitions[topics.input], partitions[topics.scores], partitions[topics.dead_letters])
    for name, count in (
        (topics.scores, layout.scores_partitions),
        (topics.dead_letters, layout.dead_letter_partitions),
    ):
        if not layout.co_partitioned(count):
            log.warning(
                "output topic is not co-partitioned with the input: its records are placed by key hash",
                topic=name,
                partitions=count,
                input_partitions=layout.input_partitions,
            )
    return layout


def _partition_counts(settings: Settings, names: list[str], found: dict[str, Any]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for name in names:
        entry = found.get(name)
        code = entry["error_code"] if entry is not None else _UNKNOWN_TOPIC
        if code == _TOPIC_AUTHORIZATION_FAILED:
            kafka = settings.kafka
            who = _who(kafka) if kafka.security_protocol == "SASL_SSL" else "this client"
            raise AuthenticationError(
                f"Kafka authorization failed: {who} may not describe topic {name!r} (check its ACLs)"
            )
        if code == _UNKNOWN_TOPIC:
            continue
        if code != 0:
            raise TopicError(f"topic {name!r} cannot be described: {kafka_errors.for_code(code).__name__}")
        counts[name] = len(entry["partitions"]) if entry is not None else 0
    return counts


def changelog_topic(settings: Settings) -> str:
    return settings.state.changelog_topic or f"{settings.topics.input}.state"


def check_changelog(settings: Settings, input_partitions: int) -> None:
    """The state changelog must be compacted and have the input's partition count (created when allowed)."""
    from kafka.admin import ConfigResource, ConfigResourceType

    name = changelog_topic(settings)
    with quiet_kafka_logs():
        admin = build_admin(settings)
        try:
            entry = next(iter(admin.describe_topics([name])), None)
            code = entry["error_code"] if entry is not None else _UNKNOWN_TOPIC
            if code == _UNKNOWN_TOPIC:
                if not settings.topics.create_missing:
                    raise TopicError(
                        f"state changelog topic {name!r} does not exist: create it compacted "
                        f"(cleanup.policy=compact) with {input_partitions} partitions, or set "
                        "RISKSTREAM_TOPICS__CREATE_MISSING=true"
                    )
                spec = {"num_partitions": input_partitions, "replication_factor": -1,
                        "configs": {"cleanup.policy": "compact"}}  # fmt: skip
                with contextlib.suppress(kafka_errors.TopicAlreadyExistsError):
                    admin.create_topics({name: spec}, wait_for_metadata=True)
                log.info("created the state changelog topic", topic=name, partitions=input_partitions)
                return
            if code != 0:
                raise TopicError(
                    f"state changelog topic {name!r} cannot be described: {kafka_errors.for_code(code).__name__}"
                )
            partitions = len(entry["partitions"]) if entry is not None else 0
            resource = ConfigResource(ConfigResourceType.TOPIC, name, {"cleanup.policy": None})
            configs = admin.describe_configs([resource], config_filter="all")
            policy = str(configs.get("topic", {}).get(name, {}).get("cleanup.policy", {}).get("value", ""))
        finally:
            admin.close()
    problems = []
    if partitions != input_partitions:
        problems.append(f"{partitions} partitions, not the input's {input_partitions}")
    if "compact" not in policy.split(","):
        problems.append(f"cleanup.policy={policy or 'delete'}, not compact")
    if problems:
        raise TopicError(f"state changelog topic {name!r} does not fit: {'; '.join(problems)}")


def preflight(settings: Settings, *, state: bool = False) -> TopicLayout:
    """The checks, in order; see the module docstring. ``state``: the changelog too."""
    check_connection(settings.kafka)
    layout = check_topics(settings)
    if state:
        check_changelog(settings, layout.input_partitions)
    return layout
