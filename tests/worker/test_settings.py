"""Settings: environment, TOML, validation with one readable line, secrets masked, README in sync."""

from __future__ import annotations

from pathlib import Path

import pytest

from worker.errors import ConfigError
from worker.settings import load_settings, reference_rows

README = Path(__file__).resolve().parents[2] / "README.md"


def test_environment_overrides_nested_sections(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RISKSTREAM_KAFKA__BOOTSTRAP_SERVERS", "b1:9093,b2:9093")
    monkeypatch.setenv("RISKSTREAM_BATCHING__LATENCY_BUDGET_MS", "30")
    monkeypatch.setenv("RISKSTREAM_GUARANTEE", "exactly_once")
    monkeypatch.setenv("RISKSTREAM_BACKPRESSURE__MEMORY_HEADROOM", "1GiB")
    settings = load_settings(worker_id="pod-7")
    assert settings.kafka.bootstrap_servers == "b1:9093,b2:9093"
    assert settings.batching.latency_budget_ms == 30
    assert settings.guarantee == "exactly_once"
    assert int(settings.backpressure.memory_headroom) == 1 << 30
    assert settings.transactional_id == "riskstream-riskstream-pod-7"


def test_toml_file_is_read_and_environment_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "riskstream.toml"
    config.write_text('group_id = "fraud"\n[topics]\ninput = "tx"\n[batching]\nmax_batch = 64\n')
    monkeypatch.setenv("RISKSTREAM_BATCHING__MAX_BATCH", "32")
    settings = load_settings(config)
    assert settings.group_id == "fraud" and settings.topics.input == "tx"
    assert settings.batching.max_batch == 32


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"guarantee": "maybe"}, "guarantee"),
        ({"kafka": {"security_protocol": "SASL_SSL"}}, "SASL_SSL needs sasl_mechanism, sasl_username, sasl_password"),
        ({"kafka": {"ssl_cafile": "/nonexistent/ca.pem"}}, "ssl_cafile /nonexistent/ca.pem does not exist"),
        ({"backpressure": {"max_in_flight": 10, "resume_in_flight": 10}}, "resume_in_flight must be below"),
        ({"model": {"device": "tpu"}}, "device must be"),
        ({"batching": {"latency_budget_ms": 0}}, "latency_budget_ms"),
        ({"worker_id": "has spaces"}, "worker_id"),
        ({"unknown_knob": 1}, "unknown_knob"),
        (
            {"guarantee": "exactly_once", "consumer": {"isolation_level": "read_uncommitted"}},
            "exactly_once needs consumer.isolation_level read_committed",
        ),
        ({"producer": {"compression_type": "brotli"}}, "compression_type"),
        ({"producer": {"passthrough_headers": ["x id"]}}, "is not a header name"),
    ],
)
def test_invalid_settings_fail_with_one_line(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(**overrides)
    text = str(caught.value)
    assert message in text and "\n" not in text


def test_passthrough_headers_read_from_a_comma_separated_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RISKSTREAM_PRODUCER__PASSTHROUGH_HEADERS", "x-request-id, x-correlation-id")
    assert load_settings().producer.passthrough_headers == ("x-request-id", "x-correlation-id")


def test_missing_or_broken_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "missing.toml")
    broken = tmp_path / "broken.toml"
    broken.write_text("this is = = not toml")
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_settings(broken)


def test_secrets_never_appear_in_the_redacted_view(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    settings = load_settings(
        kafka={
            "security_protocol": "SASL_SSL",
            "sasl_mechanism": "SCRAM-SHA-512",
            "sasl_username": "svc",
            "sasl_password": "s3cr3t-value",
            "ssl_cafile": str(ca),
        },
    )
    assert "s3cr3t-value" not in str(settings.redacted())
    assert "s3cr3t-value" not in repr(settings)
    assert settings.kafka.sasl_password is not None
    assert settings.kafka.sasl_password.get_secret_value() == "s3cr3t-value"


def test_every_setting_is_documented_and_in_the_readme() -> None:
    readme = README.read_text()
    for env, _default, description in reference_rows():
        assert description, f"{env} has no description"
        assert f"`{env}`" in readme, f"{env} is missing from README.md (riskstream config --reference)"
