"""Logs: JSON lines with ISO UTC timestamps and static fields; card numbers and personal data never written."""

from __future__ import annotations

import io
import json
import logging
import math
import re

import structlog
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.redaction import contains_pan
from worker.logs import configure_logging, redact_processor
from worker.numbers import loggable_float, loggable_int


def test_json_lines_are_redacted_and_carry_static_fields() -> None:
    stream = io.StringIO()
    configure_logging("info", "json", stream, static={"worker_id": "w-7"})
    try:
        log = structlog.get_logger("test")
        log.info(
            "careless",
            note="card 4111 1111 1111 1111 declined; call +1 (415) 555-2671 or mail ana@example.org",
            raw=b"pan=5555555555554444 ssn=123-45-6789",
            nested={"cvv": "123", "items": ["4012888888881881"]},
            password="hunter2",
            ratio=1795890853.7745175,
            fraction=0.000123456789012345,
            offsets={"transactions[3]": "123456-123519"},
        )
        logging.getLogger("kafka.client").warning("from stdlib 4111111111111111")
    finally:
        structlog.reset_defaults()
        logging.getLogger().handlers.clear()
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    first, second = lines
    assert not contains_pan(stream.getvalue())
    assert not re.search(r"\d{12}", stream.getvalue())
    assert first["worker_id"] == "w-7" and first["level"] == "info"
    assert first["timestamp"].endswith("Z")
    assert first["note"] == "card 4111 11** **** 1111 declined; call [PHONE] or mail [EMAIL]"
    assert first["raw"] == "pan=555555******4444 ssn=[SSN]"
    assert first["nested"] == {"cvv": "[REDACTED]", "items": ["401288******1881"]}
    assert first["password"] == "[REDACTED]"
    assert first["ratio"] == 1795890853.7745175  # no 12-digit run in it: kept exactly
    assert first["fraction"] == 0.00012345679
    assert first["offsets"] == {"transactions[3]": "123456-123519"}
    assert second["event"] == "from stdlib 411111******1111" and second["worker_id"] == "w-7"


def test_integers_that_pass_for_card_numbers_are_masked() -> None:
    event = redact_processor(None, "info", {"pan": 4111111111111111, "offset": 4111111111111112, "n": 7})
    assert event == {"pan": "411111******1111", "offset": 4111111111111112, "n": 7}
    assert loggable_int(-4111111111111111) == "-411111******1111"
    assert loggable_int(10**40) == 10**40  # far longer than a card number


@settings(max_examples=500, deadline=None)
@given(
    st.floats(allow_nan=False, allow_infinity=False)
    | st.floats(min_value=1e-5, max_value=1.0)
    | st.floats(min_value=1e10, max_value=1e17)
)
def test_logged_floats_never_print_a_twelve_digit_run(value: float) -> None:
    logged = loggable_float(value)
    text = json.dumps(logged)
    assert not re.search(r"\d{12}", text), text
    number = float(logged)
    assert math.isclose(number, value, rel_tol=1e-7, abs_tol=0.0)
