"""Start-up checks: what no retry can heal fails fast, with one line and its own exit code.

Each case runs ``riskstream worker`` as a real process, as an operator (or Kubernetes) would, and
reads what it printed. No model is needed: the checks run before the model is loaded.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.worker.fakes import fake_loaded
from tests.worker.harness import Topics, running_worker, worker_settings
from worker.errors import EXIT_AUTHENTICATION, EXIT_TLS, EXIT_TOPICS, EXIT_UNREACHABLE
from worker.tools.kit import settings_env

REPO_ROOT = Path(__file__).resolve().parents[2]

SYSTEM_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")


def _run_worker(settings: dict[str, Any], timeout_s: float = 60.0) -> tuple[int, float, list[str]]:
    """Run a worker to its exit: (exit code, seconds, every line it printed)."""
    values = {**settings, "observability": {"metrics_port": 0, "metrics_host": "127.0.0.1", "log_format": "json"}}
    env = {k: v for k, v in os.environ.items() if not k.startswith("RISKSTREAM_")}
    env.update(settings_env(values))
    env["RISKSTREAM_MODEL__DIR"] = str(REPO_ROOT / ".cache" / "no-model-needed")
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "worker", "worker"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
    lines = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    return result.returncode, time.monotonic() - started, lines


def _error_lines(lines: list[str]) -> list[str]:
    """Lines reporting an error: the command's ``error:`` line and log lines at error level or above."""
    found = []
    for line in lines:
        if line.startswith("error:"):
            found.append(line)
            continue
        try:
            level = json.loads(line).get("level")
        except ValueError:
            found.append(line)  # anything else unstructured (a traceback) counts against the check
            continue
        if level in ("error", "critical", "warning"):
            found.append(line)
    return found


def _sasl_settings(cluster: Any, **kafka: Any) -> dict[str, Any]:
    config = cluster.client_config
    return {
        "kafka": {
            "bootstrap_servers": cluster.bootstrap_servers,
            "security_protocol": "SASL_SSL",
            "sasl_mechanism": config["sasl_mechanism"],
            "sasl_username": config["sasl_plain_username"],
            "sasl_password": str(config["sasl_plain_password"]),
            "ssl_cafile": config["ssl_cafile"],
            **kafka,
        },
        "topics": {"input": f"tx-{uuid.uuid4().hex}"},
        "group_id": f"startup-{uuid.uuid4().hex[:8]}",
    }


def test_a_wrong_password_fails_fast_with_one_line_naming_authentication(kafka_sasl_ssl: Any) -> None:
    wrong = f"wrong-{uuid.uuid4().hex}"
    code, seconds, lines = _run_worker(_sasl_settings(kafka_sasl_ssl, sasl_password=wrong))
    assert code == EXIT_AUTHENTICATION, lines
    errors = _error_lines(lines)
    assert len(errors) == 1, errors
    assert "authentication failed" in errors[0].lower()
    assert "riskstream" in errors[0] and "SCRAM-SHA-512" in errors[0]  # the user and the mechanism
    assert seconds < 15, f"took {seconds:.1f}s"
    real = str(kafka_sasl_ssl.client_config["sasl_plain_password"])
    assert all(wrong not in line and real not in line for line in lines)


@pytest.mark.skipif(not SYSTEM_CA_BUNDLE.is_file(), reason="no system CA bundle on this machine")
def test_an_unverifiable_broker_certificate_fails_with_one_line(kafka_sasl_ssl: Any) -> None:
    code, _seconds, lines = _run_worker(_sasl_settings(kafka_sasl_ssl, ssl_cafile=str(SYSTEM_CA_BUNDLE)))
    assert code == EXIT_TLS, lines
    errors = _error_lines(lines)
    assert len(errors) == 1 and "TLS verification" in errors[0] and "certificate verify failed" in errors[0], errors


def test_a_missing_input_topic_fails_with_one_line_naming_it(kafka: Any) -> None:
    topic = f"tx-missing-{uuid.uuid4().hex}"
    code, _seconds, lines = _run_worker(
        {"kafka": {"bootstrap_servers": kafka.bootstrap_servers}, "topics": {"input": topic}}
    )
    assert code == EXIT_TOPICS, lines
    errors = _error_lines(lines)
    assert len(errors) == 1 and topic in errors[0] and "does not exist" in errors[0], errors


def test_missing_output_topics_fail_unless_creating_them_is_allowed(
    kafka: Any, topic_factory: Callable[..., str]
) -> None:
    input_topic = topic_factory(3, prefix="tx")
    scores, dlq = f"scores-{uuid.uuid4().hex}", f"dlq-{uuid.uuid4().hex}"
    settings = {
        "kafka": {"bootstrap_servers": kafka.bootstrap_servers},
        "topics": {"input": input_topic, "scores": scores, "dead_letters": dlq},
    }
    code, _seconds, lines = _run_worker(settings)
    assert code == EXIT_TOPICS, lines
    errors = _error_lines(lines)
    assert len(errors) == 1 and scores in errors[0] and dlq in errors[0] and "CREATE_MISSING" in errors[0], errors

    topics = Topics(input_topic, scores, dlq, f"startup-{uuid.uuid4().hex[:8]}")
    base = worker_settings(kafka.bootstrap_servers, topics)
    created = base.model_copy(update={"topics": base.topics.model_copy(update={"create_missing": True})})
    with running_worker(created, fake_loaded()):
        pass
    from kafka import KafkaAdminClient

    admin = KafkaAdminClient(**kafka.config())
    try:
        described = {entry["name"]: len(entry["partitions"]) for entry in admin.describe_topics([scores, dlq])}
        admin.delete_topics([scores, dlq], raise_errors=False)
    finally:
        admin.close()
    assert described == {scores: 3, dlq: 3}


@pytest.mark.integration
def test_no_broker_at_all_fails_after_the_startup_timeout() -> None:
    code, seconds, lines = _run_worker({"kafka": {"bootstrap_servers": "127.0.0.1:1", "startup_timeout_s": 2}})
    assert code == EXIT_UNREACHABLE, lines
    errors = _error_lines(lines)
    assert len(errors) == 1 and "no Kafka broker reachable" in errors[0], errors
    assert seconds < 30


def test_a_signal_while_the_model_loads_exits_at_once(
    kafka: Any, topic_factory: Callable[..., str], serving_model: Path, tmp_path: Path
) -> None:
    """SIGTERM before the pipeline runs (a pod deleted while it warms up): nothing was consumed, so the
    worker leaves at once with 0 instead of finishing its warm-up first."""
    import signal

    from tests.worker.harness import make_topics
    from worker.tools.kit import WorkerProcess

    topics = make_topics(topic_factory, 1)
    settings = {
        "kafka": {"bootstrap_servers": kafka.bootstrap_servers},
        "topics": {"input": topics.input, "scores": topics.scores, "dead_letters": topics.dead_letters},
        "group_id": topics.group,
        "model": {"dir": str(serving_model), "device": "cpu"},
    }
    worker = WorkerProcess(settings, tmp_path / "worker.log")
    try:
        worker.wait_for_log("metrics and probes listening", timeout_s=60)
        worker.signal(signal.SIGTERM)
        signalled = time.monotonic()
        assert worker.wait(30) == 0, worker.tail()
        seconds = time.monotonic() - signalled
    finally:
        worker.stop()
    log = worker.log_path.read_text()
    # The signal came as the probes opened, seconds before the model is loaded and warmed up.
    assert "worker started" not in log and "signal received during start-up: exiting" in log, log[-2000:]
    assert seconds < 10, seconds
