"""The local broker launcher (worker.tools.kafka_local, run as ops/kafka/kafka_local.py) against real Kafka brokers."""

import json
import logging
import os
import secrets
import stat
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from kafka import KafkaAdminClient, KafkaProducer
from kafka.errors import KafkaTimeoutError, SaslAuthenticationFailedError

REPO_ROOT = Path(__file__).resolve().parents[2]


pytestmark = pytest.mark.integration


def _produce(producer: Any, topic: str, values: list[bytes]) -> None:
    for value in values:
        producer.send(topic, key=value, value=value).get(timeout=30)
    producer.flush(timeout=30)


def _consume(consumer: Any, expected: int, timeout: float = 30.0) -> list[bytes]:
    values: list[bytes] = []
    deadline = time.monotonic() + timeout
    while len(values) < expected and time.monotonic() < deadline:
        for records in consumer.poll(timeout_ms=500).values():
            values.extend(record.value for record in records)
    return values


def _broker_log_since(log_path: Path, offset: int) -> str:
    with log_path.open("rb") as handle:
        handle.seek(offset)
        return handle.read().decode("utf-8", "replace")


@pytest.fixture(scope="module")
def dedicated(kafka_launcher: ModuleType, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A broker of its own (free ports, fresh state dir) that this module may kill and restart."""
    instance = kafka_launcher.LocalKafka(
        name="restart", port=0, state_dir=tmp_path_factory.mktemp("kafka-restart") / "restart"
    )
    try:
        yield instance
    finally:
        instance.stop(kill=True)


def test_produce_and_consume(
    kafka: Any,
    topic_factory: Callable[..., str],
    producer_factory: Callable[..., Any],
    consumer_factory: Callable[..., Any],
) -> None:
    topic = topic_factory(partitions=2)
    values = [f"record-{i}".encode() for i in range(10)]
    _produce(producer_factory(), topic, values)

    consumer = consumer_factory(topic)
    assert sorted(_consume(consumer, len(values))) == sorted(values)


def test_start_is_idempotent_and_status_reports_running(dedicated: Any, kafka_launcher: ModuleType) -> None:
    bootstrap = dedicated.start(timeout=180)
    pid = dedicated.pid
    assert pid is not None
    assert bootstrap.startswith("127.0.0.1:")

    assert dedicated.start(timeout=60) == bootstrap
    assert dedicated.pid == pid
    assert dedicated.bootstrap_servers == bootstrap
    status = dedicated.status()
    assert status["state"] == "running"
    assert status["bootstrap_servers"] == bootstrap
    assert status["pid"] == pid
    assert status["listening"] is True

    # The CLI on the same instance: `start` prints only the bootstrap address; `status --json` agrees.
    cli = [sys.executable, str(REPO_ROOT / "ops" / "kafka" / "kafka_local.py")]
    where = ["--name", dedicated.name, "--state-dir", str(dedicated.instance_dir)]
    started = subprocess.run([*cli, "start", *where], capture_output=True, text=True, timeout=120, check=True)
    assert started.stdout == f"{bootstrap}\n"
    assert dedicated.pid == pid
    shown = subprocess.run([*cli, "status", "--json", *where], capture_output=True, text=True, timeout=60, check=True)
    assert json.loads(shown.stdout)["state"] == "running"
    assert json.loads(shown.stdout)["pid"] == pid


def test_hard_kill_and_restart_keeps_address_and_data(
    dedicated: Any,
    topic_factory: Callable[..., str],
    producer_factory: Callable[..., Any],
    consumer_factory: Callable[..., Any],
) -> None:
    bootstrap = dedicated.start(timeout=180)
    topic = topic_factory(cluster=dedicated)
    before = [f"before-{i}".encode() for i in range(20)]
    producer = producer_factory(cluster=dedicated)
    _produce(producer, topic, before)
    old_pid = dedicated.pid

    assert dedicated.stop(kill=True) is True
    assert not dedicated.is_running()
    assert dedicated.pid is None
    assert dedicated.status()["state"] == "stopped"

    assert dedicated.start(timeout=120) == bootstrap
    assert dedicated.pid not in (None, old_pid)

    # The producer created before the crash reconnects to the same address.
    after = [b"after-0"]
    _produce(producer, topic, after)
    consumer = consumer_factory(topic, cluster=dedicated)
    assert _consume(consumer, len(before) + len(after)) == before + after


def test_sasl_ssl_authenticated_client_produces_and_consumes(
    kafka_sasl_ssl: Any,
    topic_factory: Callable[..., str],
    producer_factory: Callable[..., Any],
    consumer_factory: Callable[..., Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="kafka")
    config = kafka_sasl_ssl.client_config
    assert config["security_protocol"] == "SASL_SSL"
    assert config["sasl_mechanism"] == "SCRAM-SHA-512"
    assert config["ssl_check_hostname"] is True
    assert Path(config["ssl_cafile"]).read_text().startswith("-----BEGIN CERTIFICATE-----")
    status = kafka_sasl_ssl.local.status()
    assert stat.S_IMODE(os.stat(status["password_file"]).st_mode) == 0o600

    topic = topic_factory(cluster=kafka_sasl_ssl)
    values = [f"secure-{i}".encode() for i in range(5)]
    _produce(producer_factory(cluster=kafka_sasl_ssl), topic, values)
    assert _consume(consumer_factory(topic, cluster=kafka_sasl_ssl), len(values)) == values

    # kafka-python's KafkaAdminClient logs its whole config at DEBUG; the launcher's RedactedStr
    # password keeps the secret out of that line.
    with KafkaAdminClient(**kafka_sasl_ssl.config()) as admin:
        assert topic in admin.list_topics()
    password = str(config["sasl_plain_password"])
    assert "Starting KafkaAdminClient with configuration" in caplog.text
    assert password not in caplog.text


def test_sasl_ssl_wrong_password_is_rejected_without_leaking_secrets(
    kafka_sasl_ssl: Any, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level(logging.DEBUG, logger="kafka")
    real_password = str(kafka_sasl_ssl.client_config["sasl_plain_password"])
    wrong_password = f"wrong-{secrets.token_urlsafe(16)}"
    broker_log = kafka_sasl_ssl.local.log_path
    log_offset = broker_log.stat().st_size

    with pytest.raises((SaslAuthenticationFailedError, KafkaTimeoutError)) as excinfo:
        KafkaProducer(
            **kafka_sasl_ssl.config(
                sasl_plain_password=wrong_password,
                client_id=f"wrong-password-{uuid.uuid4().hex[:8]}",
                bootstrap_timeout_ms=5000,
            )
        )
    # kafka-python 3.0.12 drops the broker's SaslAuthenticate error response when the broker closes
    # the connection right behind it (bytes read together with EOF are discarded), so the client only
    # sees a bootstrap timeout. The broker's log is the authority on why: authentication failed.
    if isinstance(excinfo.value, SaslAuthenticationFailedError):
        assert "authentication" in str(excinfo.value).lower()
    else:
        assert "Unable to bootstrap" in str(excinfo.value)
    reason = "invalid credentials with SASL mechanism SCRAM-SHA-512"
    deadline = time.monotonic() + 10
    while reason not in _broker_log_since(broker_log, log_offset) and time.monotonic() < deadline:
        time.sleep(0.2)
    broker_says = _broker_log_since(broker_log, log_offset)
    assert "Failed authentication" in broker_says
    assert reason in broker_says

    captured = capsys.readouterr()
    texts = {
        "exception": f"{excinfo.value!s} {excinfo.value!r} {excinfo.getrepr()!s}",
        "client logs": caplog.text + "\n".join(record.getMessage() for record in caplog.records),
        "stdout": captured.out,
        "stderr": captured.err,
        "broker log": broker_says,
    }
    for where, text in texts.items():
        assert wrong_password not in text, f"wrong password leaked into {where}"
        assert real_password not in text, f"real password leaked into {where}"
