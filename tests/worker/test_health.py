"""The metrics exposition stays parseable and never carries a card-number-shaped digit run."""

from __future__ import annotations

import math
import re

from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.parser import text_string_to_metric_families

from schemas.redaction import contains_pan
from worker.health import exposition
from worker.numbers import exposition_number


def _sample_values(text: str) -> dict[str, float]:
    return {sample.name: sample.value for family in text_string_to_metric_families(text) for sample in family.samples}


def test_exposition_rounds_long_floats_and_stays_parseable() -> None:
    registry = CollectorRegistry()
    gauge = Gauge("riskstream_test_timestamp_seconds", "t", registry=registry)
    gauge.set(1795890853.7745175)  # repr has 17 significant digits: 7958908537745175 is Luhn-valid
    counter = Counter("riskstream_test_seconds", "s", ["topic"], registry=registry)
    counter.labels("tx 4111111111111111 ana@example.org").inc(0.1 + 0.2)  # 0.30000000000000004
    histogram = Histogram("riskstream_test_latency_seconds", "l", registry=registry)
    histogram.observe(0.0169900000002)  # the sum that once printed as 0.016990***0002
    text = exposition(registry).decode()
    assert not contains_pan(text)
    values = _sample_values(text)
    assert values["riskstream_test_timestamp_seconds"] == 1795890853.8
    assert values["riskstream_test_seconds_total"] == 0.3
    assert values["riskstream_test_latency_seconds_sum"] == 0.01699
    assert 'topic="tx 411111******1111 [EMAIL]"' in text  # label values are redacted like log lines


def test_metric_values_are_never_masked_even_when_they_look_like_card_numbers() -> None:
    registry = CollectorRegistry()
    gauge = Gauge("riskstream_test_bytes", "b", registry=registry)
    gauge.set(41111111111.0)  # 11 digits: exact
    big = Gauge("riskstream_test_big", "b", registry=registry)
    big.set(4111111111111111.0)  # 16 digits, Luhn-valid: written in exponent form, not masked
    text = exposition(registry).decode()
    assert "riskstream_test_bytes 41111111111.0" in text
    assert "*" not in text
    assert math.isclose(_sample_values(text)["riskstream_test_big"], 4111111111111111.0, rel_tol=1e-10)


_FLOATS = (
    st.floats(allow_nan=False, allow_infinity=False)
    | st.floats(min_value=0.0, max_value=1.0)  # fractions below 1, long ones included
    | st.floats(min_value=1e-6, max_value=1e-3)
    | st.floats(min_value=1e9, max_value=1e19)  # huge counters and timestamps
    | st.integers(min_value=0, max_value=10**19).map(float)
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_FLOATS, min_size=1, max_size=8), st.lists(st.floats(0.0, 1e6), max_size=5))
def test_every_exposed_value_parses_and_no_digit_run_reaches_twelve(values: list[float], observed: list[float]) -> None:
    registry = CollectorRegistry()
    gauge = Gauge("riskstream_test_value", "v", ["index"], registry=registry)
    for index, value in enumerate(values):
        gauge.labels(str(index)).set(value)
    counter = Counter("riskstream_test_events", "e", registry=registry)
    counter.inc(abs(values[0]))
    histogram = Histogram("riskstream_test_seconds", "s", registry=registry)
    for value in observed:
        histogram.observe(value)
    text = exposition(registry).decode()
    assert not re.search(r"\d{12}", text), text  # hence no Luhn-valid 12-19 digit run either
    assert not contains_pan(text)
    for line in text.splitlines():
        if line and not line.startswith("#"):
            float(line.rpartition(" ")[2])  # every sample value is a number
    parsed = {
        sample.labels.get("index"): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "riskstream_test_value"
    }
    for index, value in enumerate(values):
        assert math.isclose(parsed[str(index)], value, rel_tol=1e-10, abs_tol=0.0)


@settings(max_examples=1000, deadline=None)
@given(_FLOATS | st.sampled_from([math.inf, -math.inf, math.nan, 1.7976931348623157e308, 5e-324, -0.0]))
def test_exposition_number_is_a_number_without_a_twelve_digit_run(value: float) -> None:
    text = exposition_number(value)
    assert not re.search(r"\d{12}", text), text
    parsed = float(text)
    assert (math.isnan(parsed) and math.isnan(value)) or math.isclose(parsed, value, rel_tol=1e-10)
