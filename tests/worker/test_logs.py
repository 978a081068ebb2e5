"""Logs: JSON lines with ISO UTC timestamps and static fields, and PANs masked whatever the call site."""

from __future__ import annotations

import io
import json
import logging

import structlog

from schemas.redaction import contains_pan
from worker.logs import configure_logging


def test_json_lines_are_redacted_and_carry_static_fields() -> None:
    stream = io.StringIO()
    configure_logging("info", "json", stream, static={"worker_id": "w-7"})
    try:
        log = structlog.get_logger("test")
        log.info(
            "careless",
            note="card 4111 1111 1111 1111 declined",
            raw=b"pan=5555555555554444",
            nested={"cvv": "123", "items": ["4012888888881881"]},
            password="hunter2",
            ratio=1795890853.7745175,
        )
        logging.getLogger("kafka.client").warning("from stdlib 4111111111111111")
    finally:
        structlog.reset_defaults()
        logging.getLogger().handlers.clear()
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    first, second = lines
    assert not contains_pan(stream.getvalue())
    assert first["worker_id"] == "w-7" and first["level"] == "info"
    assert first["timestamp"].endswith("Z")
    assert first["note"] == "card 4111 11** **** 1111 declined"
    assert first["nested"]["cvv"] == "[REDACTED]"
    assert first["password"] == "[REDACTED]"
    assert first["ratio"] == 1795890853.77
    assert second["event"] == "from stdlib 411111******1111" and second["worker_id"] == "w-7"
