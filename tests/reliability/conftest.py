"""Fixtures for the fault-injection scenarios: dedicated brokers (they get killed), the summary table."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.reliability.harness import ROWS, SCENARIOS, Cluster, render_table

SUMMARY_PATH = Path(__file__).resolve().parents[2] / ".cache" / "reliability-summary.md"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/reliability/" in str(item.fspath).replace("\\", "/"):
            item.add_marker(pytest.mark.reliability)
            item.add_marker(pytest.mark.slow)
            item.add_marker(pytest.mark.integration)


@pytest.fixture(autouse=True)
def _no_worker_outlives_its_test() -> Iterator[None]:
    yield
    while SCENARIOS:
        SCENARIOS.pop().cleanup()


@pytest.fixture(scope="session")
def fault_broker(kafka_launcher: Any) -> Iterator[Cluster]:
    """A plaintext broker of our own: scenarios may hard-kill and restart it."""
    local = kafka_launcher.LocalKafka(name="pytest-faults", port=0)
    local.start(timeout=180)
    try:
        yield Cluster(local.bootstrap_servers, local.client_config(), local)
    finally:
        local.stop()


@pytest.fixture(scope="session")
def secured_cluster(kafka_sasl_ssl: Any) -> Cluster:
    """The SASL_SSL broker (ACLs enforced), as seen by the application user."""
    return Cluster(kafka_sasl_ssl.bootstrap_servers, kafka_sasl_ssl.client_config, kafka_sasl_ssl.local)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not ROWS:
        return
    table = render_table(ROWS)
    terminalreporter.write_sep("=", "reliability summary (fault -> events, lost, duplicates, max recovery time)")
    terminalreporter.write_line(table)
    SUMMARY_PATH.parent.mkdir(parents=True, exist_ok=True)
    SUMMARY_PATH.write_text(table + "\n")
