"""The metrics exposition stays parseable and never carries a card-number-shaped digit run."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.parser import text_string_to_metric_families

from schemas.redaction import contains_pan
from worker.health import exposition


def test_exposition_rounds_long_floats_and_stays_parseable() -> None:
    registry = CollectorRegistry()
    gauge = Gauge("riskstream_test_timestamp_seconds", "t", registry=registry)
    gauge.set(1795890853.7745175)  # repr has 17 significant digits: 7958908537745175 is Luhn-valid
    counter = Counter("riskstream_test_seconds", "s", ["topic"], registry=registry)
    counter.labels("tx-4111111111111111").inc(0.1 + 0.2)  # 0.30000000000000004
    text = exposition(registry).decode()
    assert not contains_pan(text)
    values = {sample.name: sample.value for family in text_string_to_metric_families(text) for sample in family.samples}
    assert values["riskstream_test_timestamp_seconds"] == 1795890853.77
    assert values["riskstream_test_seconds_total"] == 0.3
    assert "411111******1111" in text  # label values are masked like log lines
