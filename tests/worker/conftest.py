"""Fixtures shared by the worker tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.worker.harness import Topics, worker_settings
from worker.engine import LoadedEngine, load_engine


@pytest.fixture(scope="session")
def engine(serving_model: Path, kafka: Any) -> LoadedEngine:
    """The real scorer (tiny trained model), loaded and warmed up once for the in-process tests."""
    settings = worker_settings(
        kafka.bootstrap_servers,
        Topics("unused", "unused", "unused", "unused"),
        model={"dir": str(serving_model), "device": "cpu"},
    )
    return load_engine(settings)
