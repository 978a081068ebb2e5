"""Shared fixtures: a real Kafka broker and factories for topics, producers and consumers.

Broker, in this order (the ``kafka`` fixture):
1. ``KAFKA_BOOTSTRAP_SERVERS`` if set (an existing PLAINTEXT cluster);
2. testcontainers' Kafka module in KRaft mode, if a Docker engine answers (and the container starts);
3. otherwise the project's own launcher ``worker.tools.kafka_local`` (instance ``pytest``, free ports),
   stopped at the end of the session if this session started it. A broker already running under that
   name (``kafka_local.py start --name pytest --port 0``) is reused and left running: a fast inner loop.

``kafka_sasl_ssl`` always uses the launcher (SASL_SSL + SCRAM-SHA-512, instance ``pytest-sasl``).

Tests that use any broker fixture get the ``integration`` marker automatically, so
``pytest -m "not integration"`` needs no broker.
"""

import contextlib
import logging
import os
import shutil
import subprocess
import time
import uuid
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

# kafka-python 3.0.12 calls importlib.resources.read_text/open_text (deprecated) while importing, which
# `filterwarnings = error` turns into a collection error for every test module importing kafka (or a
# package that does). Import it once here, before any test module, with only that warning silenced;
# later imports hit sys.modules and warn no more.
with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message=r"\w+ is deprecated\. Use files\(\) instead", category=DeprecationWarning)
    from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
    from kafka.errors import KafkaError

    from worker.tools import kafka_local

REPO_ROOT = Path(__file__).resolve().parent.parent
BROKER_FIXTURES = frozenset({"kafka", "kafka_sasl_ssl", "topic_factory", "producer_factory", "consumer_factory"})
BROKER_START_TIMEOUT_S = 180.0  # the first run also downloads the broker jars
TESTCONTAINERS_IMAGE = os.environ.get("RISKSTREAM_TEST_KAFKA_IMAGE", "confluentinc/cp-kafka:7.9.0")

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class KafkaCluster:
    """A reachable broker: its bootstrap address and the kafka-python security kwargs to use.

    ``local`` is the ``kafka_local.LocalKafka`` running it when the project's launcher does (fault
    tests use it to kill and restart the broker), None for an external or containerised broker.
    """

    bootstrap_servers: str
    local: Any = None
    client_config: dict[str, Any] = field(default_factory=dict)

    def config(self, **overrides: Any) -> dict[str, Any]:
        """kafka-python kwargs for a client of this cluster: bootstrap + security + ``overrides``."""
        return {"bootstrap_servers": self.bootstrap_servers, **self.client_config, **overrides}


def wait_for_bootstrap(cluster: KafkaCluster, timeout: float = 60.0) -> None:
    """Retry a real client bootstrap (metadata with at least one broker) until ``timeout``."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        remaining_ms = max(1000, int((deadline - time.monotonic()) * 1000))
        try:
            admin = KafkaAdminClient(**cluster.config(bootstrap_timeout_ms=min(remaining_ms, 10_000)))
        except KafkaError as exc:
            last_error = exc
        else:
            try:
                if admin.describe_cluster().get("brokers"):
                    return
            except KafkaError as exc:
                last_error = exc
            finally:
                admin.close()
        time.sleep(0.5)
    raise RuntimeError(f"no Kafka client could bootstrap from {cluster.bootstrap_servers}: {last_error}")


def _docker_engine_answers() -> bool:
    docker = shutil.which("docker")
    if docker is None:
        return False
    try:
        result = subprocess.run(
            [docker, "info", "--format", "{{.ServerVersion}}"],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return result.returncode == 0 and bool(result.stdout.strip())


@contextlib.contextmanager
def _testcontainers_kafka() -> Iterator[KafkaCluster]:
    # The Docker SDK and testcontainers may warn on import/start; none of that is ours to fail on.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from testcontainers.community.kafka import KafkaContainer

        container = (
            KafkaContainer(TESTCONTAINERS_IMAGE)
            .with_kraft()
            .with_env("KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR", "1")
            .with_env("KAFKA_TRANSACTION_STATE_LOG_MIN_ISR", "1")
            .with_env("KAFKA_AUTO_CREATE_TOPICS_ENABLE", "false")
        )
        try:
            container.start(timeout=int(BROKER_START_TIMEOUT_S))
        except Exception:
            with contextlib.suppress(Exception):
                container.stop()
            raise
    try:
        yield KafkaCluster(bootstrap_servers=container.get_bootstrap_server())
    finally:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            container.stop()


@contextlib.contextmanager
def _launcher_kafka(name: str, security: str) -> Iterator[KafkaCluster]:
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if worker:  # one broker per xdist worker, so no worker stops another's broker
        name = f"{name}-{worker}"
    local = kafka_local.LocalKafka(name=name, port=0, security=security)
    started_here = not local.is_running()
    bootstrap = local.start(timeout=BROKER_START_TIMEOUT_S)
    try:
        yield KafkaCluster(bootstrap_servers=bootstrap, local=local, client_config=local.client_config())
    finally:
        if started_here:
            local.stop()


@pytest.fixture(scope="session")
def kafka_launcher() -> ModuleType:
    """The ``worker.tools.kafka_local`` package (``LocalKafka``, ``ensure_jars``, ...)."""
    return kafka_local


@pytest.fixture(scope="session")
def kafka() -> Iterator[KafkaCluster]:
    """A PLAINTEXT Kafka broker for the whole session (see the module docstring for which one)."""
    with contextlib.ExitStack() as stack:
        cluster: KafkaCluster | None = None
        external = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "").strip()
        if external:
            cluster = KafkaCluster(bootstrap_servers=external)
        elif _docker_engine_answers():
            try:
                cluster = stack.enter_context(_testcontainers_kafka())
            except Exception as exc:  # e.g. the image cannot be pulled here
                log.warning("testcontainers' Kafka did not start (%s); using worker.tools.kafka_local", exc)
        if cluster is None:
            cluster = stack.enter_context(_launcher_kafka("pytest", "plaintext"))
        wait_for_bootstrap(cluster)
        yield cluster


@pytest.fixture(scope="session")
def kafka_sasl_ssl() -> Iterator[KafkaCluster]:
    """A SASL_SSL (SCRAM-SHA-512, TLS with hostname verification) broker from the launcher.

    ``client_config`` authenticates as the application user; its password is a ``RedactedStr``.
    """
    with _launcher_kafka("pytest-sasl", "sasl_ssl") as cluster:
        yield cluster


class _Admins:
    """One KafkaAdminClient per cluster, created on first use, closed at teardown."""

    def __init__(self) -> None:
        self._clients: dict[str, Any] = {}

    def get(self, cluster: KafkaCluster) -> Any:
        admin = self._clients.get(cluster.bootstrap_servers)
        if admin is None:
            admin = KafkaAdminClient(**cluster.config(client_id=f"test-admin-{uuid.uuid4().hex[:8]}"))
            self._clients[cluster.bootstrap_servers] = admin
        return admin

    def close(self) -> None:
        for admin in self._clients.values():
            with contextlib.suppress(Exception):
                admin.close()
        self._clients.clear()


def _cluster_for(request: pytest.FixtureRequest, cluster: Any) -> KafkaCluster:
    """``cluster`` may be a KafkaCluster, a ``kafka_local.LocalKafka`` (e.g. a test's own broker), or
    None for the session's ``kafka`` fixture, resolved lazily so that a test that only uses
    ``kafka_sasl_ssl`` does not start the plaintext broker."""
    if cluster is None:
        return request.getfixturevalue("kafka")
    if isinstance(cluster, KafkaCluster):
        return cluster
    return KafkaCluster(
        bootstrap_servers=cluster.bootstrap_servers, local=cluster, client_config=cluster.client_config()
    )


@pytest.fixture
def topic_factory(request: pytest.FixtureRequest) -> Iterator[Callable[..., str]]:
    """``topic_factory(partitions=1, *, configs=None, prefix="test", cluster=None) -> topic name``.

    ``cluster`` (here and in the other factories): a ``KafkaCluster``, a ``LocalKafka``, or None for
    the session's ``kafka`` broker.

    Creates a uniquely named topic (``<prefix>-<uuid>``) and returns once metadata shows a leader for
    every partition. Topics are deleted at teardown (best effort).
    """
    admins = _Admins()
    created: list[tuple[KafkaCluster, str]] = []

    def create(
        partitions: int = 1,
        *,
        configs: dict[str, str] | None = None,
        prefix: str = "test",
        cluster: Any = None,
    ) -> str:
        target = _cluster_for(request, cluster)
        name = f"{prefix}-{uuid.uuid4().hex}"
        spec: dict[str, Any] = {"num_partitions": partitions, "replication_factor": -1}
        if configs:
            spec["configs"] = dict(configs)
        admins.get(target).create_topics({name: spec}, wait_for_metadata=True)
        created.append((target, name))
        return name

    yield create

    for target, name in created:
        try:
            admins.get(target).delete_topics([name], raise_errors=False)
        except Exception as exc:  # the broker may be down after a fault test; the topic is unique anyway
            log.debug("could not delete topic %s: %s", name, exc)
    admins.close()


@pytest.fixture
def producer_factory(request: pytest.FixtureRequest) -> Iterator[Callable[..., Any]]:
    """``producer_factory(*, cluster=None, **kafka_python_kwargs) -> KafkaProducer``; closed at teardown."""
    producers: list[Any] = []

    def create(*, cluster: Any = None, **overrides: Any) -> Any:
        producer = KafkaProducer(**_cluster_for(request, cluster).config(**overrides))
        producers.append(producer)
        return producer

    yield create

    for producer in producers:
        try:
            producer.close(timeout=5)
        except Exception as exc:
            log.debug("producer close failed: %s", exc)


@pytest.fixture
def consumer_factory(request: pytest.FixtureRequest) -> Iterator[Callable[..., Any]]:
    """``consumer_factory(*topics, cluster=None, **kafka_python_kwargs) -> KafkaConsumer``.

    Defaults: a unique ``group_id`` and ``auto_offset_reset="earliest"`` (pass ``group_id=None`` for a
    group-less consumer). Closed at teardown without a final auto-commit.
    """
    consumers: list[Any] = []

    def create(*topics: str, cluster: Any = None, **overrides: Any) -> Any:
        settings: dict[str, Any] = {
            "group_id": f"test-{uuid.uuid4().hex}",
            "auto_offset_reset": "earliest",
            **overrides,
        }
        consumer = KafkaConsumer(*topics, **_cluster_for(request, cluster).config(**settings))
        consumers.append(consumer)
        return consumer

    yield create

    for consumer in consumers:
        try:
            consumer.close(autocommit=False, timeout_ms=5000)
        except Exception as exc:
            log.debug("consumer close failed: %s", exc)


# kafka-python 3.0.12 leaks sockets in two situations that broker tests provoke on purpose:
# - every failed connection attempt (kafka/net/inet.py never closes the socket): clients of a broker that is
#   down or restarting;
# - a client whose constructor raises (e.g. bootstrap timeout) never closes its selector's wakeup socketpair.
# The garbage collector reports them as ResourceWarning at some later moment - in another test, or at session
# end - which `filterwarnings = error` turns into a failure there. Ignore exactly these two signatures (a TCP
# socket that never got a peer: no raddr; an AF_UNIX socketpair end), session-wide, as ini-level filters.
KAFKA_PYTHON_SOCKET_LEAKS = (
    r"ignore:unclosed <socket\.socket fd=\d+, family=2, type=1, proto=6, laddr=\([^)]*\)>:ResourceWarning",
    r"ignore:unclosed <socket\.socket fd=\d+, family=1, type=1, proto=0>:ResourceWarning",
)


def pytest_configure(config: pytest.Config) -> None:
    for leak in KAFKA_PYTHON_SOCKET_LEAKS:
        config.addinivalue_line("filterwarnings", leak)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if BROKER_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.integration)


# -- a trained model for the worker and reliability tests -------------------------------------------------

MODEL_CACHE = REPO_ROOT / ".cache" / "test-models"


def _inference_source_digest() -> str:
    """Changes whenever the model code changes, so a cached test model is never stale."""
    import hashlib

    digest = hashlib.sha256()
    for path in sorted((REPO_ROOT / "inference").glob("*.py")):
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


@pytest.fixture(scope="session")
def serving_model() -> Path:
    """A ``riskstream train --preset tiny`` checkpoint for tests that run the real scorer.

    ``RISKSTREAM_TEST_MODEL_DIR`` points at an existing one; otherwise it is trained once (tens of
    seconds) and cached under ``.cache/test-models/`` keyed by the inference code's digest.
    """
    override = os.environ.get("RISKSTREAM_TEST_MODEL_DIR")
    if override:
        return Path(override)
    target = MODEL_CACHE / f"tiny-{_inference_source_digest()}"
    if not (target / "riskstream.json").exists():
        from inference.train import train

        train(target, preset="tiny", seed=0)
    return target


@pytest.fixture(scope="session")
def serving_history_model() -> Path:
    """A ``riskstream train --preset tiny-sequence`` checkpoint: a model that reads account history,
    so the worker keeps state (``worker.state``). Cached like :func:`serving_model`."""
    override = os.environ.get("RISKSTREAM_TEST_HISTORY_MODEL_DIR")
    if override:
        return Path(override)
    target = MODEL_CACHE / f"tiny-sequence-{_inference_source_digest()}"
    if not (target / "riskstream.json").exists():
        from inference.train import train

        train(target, preset="tiny-sequence", seed=0)
    return target
