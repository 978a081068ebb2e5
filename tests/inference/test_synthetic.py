"""The synthetic transaction generator: determinism, wire validity, labels, JSONL."""

from __future__ import annotations

import math
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from inference.reference import USD_PER_UNIT
from inference.synthetic import FRAUD_PATTERNS, LabelledEvent, generate, read_jsonl, write_jsonl
from schemas import TransactionEvent, decode


def _json(items: list[LabelledEvent]) -> list[str]:
    return [item.event.model_dump_json() for item in items]


def test_same_arguments_give_identical_events() -> None:
    first = list(generate(300, seed=5, fraud_rate=0.1))
    second = list(generate(300, seed=5, fraud_rate=0.1))
    assert _json(first) == _json(second)
    assert [(i.is_fraud, i.pattern) for i in first] == [(i.is_fraud, i.pattern) for i in second]


def test_different_seeds_give_different_events() -> None:
    assert _json(list(generate(50, seed=1))) != _json(list(generate(50, seed=2)))


def test_a_prefix_of_a_longer_run_is_the_shorter_run() -> None:
    assert _json(list(generate(40, seed=3))) == _json(list(generate(100, seed=3)))[:40]


def test_every_event_passes_the_wire_decoder(sample_events: list[LabelledEvent]) -> None:
    for item in sample_events:
        decoded = decode(item.event.model_dump_json().encode())
        assert isinstance(decoded, TransactionEvent), decoded
        assert decoded == item.event


def test_event_fields_follow_the_contract(sample_events: list[LabelledEvent]) -> None:
    ids = [item.event.transaction_id for item in sample_events]
    assert len(set(ids)) == len(ids)
    for item in sample_events:
        event = item.event
        assert len(event.features) <= 64
        assert all(math.isfinite(value) for value in event.features.values())
        assert event.card.token.startswith("tok_") and not event.card.token[4:].isdigit()
        assert len(event.card.bin) == 6 and len(event.card.last4) == 4
        assert event.amount > 0
        assert event.event_time.utcoffset() is not None


def test_fraud_rate_and_patterns() -> None:
    items = list(generate(20_000, seed=9, fraud_rate=0.05))
    fraud = [item for item in items if item.is_fraud]
    assert 0.04 < len(fraud) / len(items) < 0.06
    assert {item.pattern for item in fraud} == set(FRAUD_PATTERNS)
    assert all(item.pattern is None for item in items if not item.is_fraud)


def test_default_fraud_rate_is_about_one_percent() -> None:
    items = list(generate(20_000, seed=10))
    assert 0.006 < sum(item.is_fraud for item in items) / len(items) < 0.014


def test_zero_fraud_rate_gives_no_fraud() -> None:
    assert not any(item.is_fraud for item in generate(2_000, seed=4, fraud_rate=0.0))


def test_card_testing_looks_like_card_testing() -> None:
    testing = [item.event for item in generate(20_000, seed=6, fraud_rate=0.2) if item.pattern == "card_testing"]
    assert testing
    assert all(not event.card_present for event in testing)
    small = sum(float(event.amount) * USD_PER_UNIT[event.currency] < 16 for event in testing)
    assert small / len(testing) > 0.95


def test_event_times_lie_in_the_window() -> None:
    start = datetime(2026, 3, 2, tzinfo=UTC)
    items = list(generate(2_000, seed=8, start=start, days=2))
    times = [item.event.event_time for item in items]
    # Local midnights can lie up to 14 hours before the UTC start.
    assert all(start - timedelta(hours=14) <= moment < start + timedelta(days=2, hours=14) for moment in times)
    assert len({moment.hour for moment in times}) == 24


def test_accounts_bound_the_distinct_account_ids() -> None:
    items = list(generate(2_000, seed=8, accounts=25))
    assert len({item.event.account_id for item in items}) <= 25


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"count": -1}, "count"),
        ({"count": 1, "fraud_rate": 1.5}, "fraud_rate"),
        ({"count": 1, "days": 0}, "days"),
        ({"count": 1, "accounts": 0}, "accounts"),
        ({"count": 1, "start": datetime(2026, 1, 1)}, "timezone-aware"),
    ],
)
def test_invalid_arguments_are_rejected(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        list(generate(**kwargs))  # type: ignore[arg-type]


def test_jsonl_round_trip(tmp_path: Path, sample_events: list[LabelledEvent]) -> None:
    path = tmp_path / "events.jsonl"
    assert write_jsonl(path, sample_events[:200]) == 200
    assert list(read_jsonl(path)) == sample_events[:200]


def test_read_jsonl_names_the_bad_line(tmp_path: Path, sample_events: list[LabelledEvent]) -> None:
    path = tmp_path / "events.jsonl"
    write_jsonl(path, sample_events[:2])
    with path.open("a", encoding="utf-8") as out:
        out.write('\n{"event": {}, "is_fraud": true}\n')
    with pytest.raises(ValueError, match=r"events\.jsonl:4"):
        list(read_jsonl(path))


def test_merchants_and_patterns_are_varied(sample_events: list[LabelledEvent]) -> None:
    channels = Counter(item.event.channel for item in sample_events)
    assert len(channels) == 6
    assert len({item.event.merchant.mcc for item in sample_events}) > 20
    assert len({item.event.merchant.country for item in sample_events}) > 10
