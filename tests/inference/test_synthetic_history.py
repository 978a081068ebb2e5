"""The history world: determinism, time order, wire validity, labels, and fraud that history reveals."""

from __future__ import annotations

import re
from collections import Counter

import pytest

from inference.history import AccountHistory, record_of, replay
from inference.synthetic import FEATURE_NAMES, LabelledEvent
from inference.synthetic_history import HISTORY_FRAUD_PATTERNS, WorldSummary, generate_histories
from schemas import TransactionEvent, decode


@pytest.fixture(scope="module")
def world() -> list[LabelledEvent]:
    return list(generate_histories(30_000, seed=8, fraud_rate=0.03))


def _json(items: list[LabelledEvent]) -> list[str]:
    return [item.event.model_dump_json() for item in items]


def test_same_arguments_give_identical_events() -> None:
    first = list(generate_histories(2_000, seed=5, fraud_rate=0.05))
    assert _json(first) == _json(list(generate_histories(2_000, seed=5, fraud_rate=0.05)))
    assert _json(first) != _json(list(generate_histories(2_000, seed=6, fraud_rate=0.05)))


def test_exactly_count_events_in_event_time_order(world: list[LabelledEvent]) -> None:
    assert len(world) == 30_000
    times = [item.event.event_time for item in world]
    assert times == sorted(times)
    assert len({item.event.transaction_id for item in world}) == len(world)
    assert len(list(generate_histories(0))) == 0


def test_every_event_passes_the_wire_decoder_and_carries_no_pan_like_id(world: list[LabelledEvent]) -> None:
    long_digits = re.compile(r"\d{12,}")
    for item in world[::10]:
        decoded = decode(item.event.model_dump_json().encode())
        assert isinstance(decoded, TransactionEvent), decoded
        event = item.event
        for value in (event.transaction_id, event.account_id, event.merchant.merchant_id, event.device_id or ""):
            assert long_digits.search(value) is None


def test_fraud_rate_patterns_and_no_upstream_features_by_default(world: list[LabelledEvent]) -> None:
    fraud = [item for item in world if item.is_fraud]
    assert 0.02 < len(fraud) / len(world) < 0.04
    assert {item.pattern for item in fraud} == set(HISTORY_FRAUD_PATTERNS)
    assert all(item.pattern is None for item in world if not item.is_fraud)
    assert all(not item.event.features for item in world)


def test_upstream_features_are_computed_from_the_history_when_asked() -> None:
    items = list(generate_histories(3_000, seed=2, fraud_rate=0.05, upstream_features=True))
    assert all(set(item.event.features) <= set(FEATURE_NAMES) for item in items)
    assert all({"velocity_1h", "velocity_24h", "account_age_days"} <= set(item.event.features) for item in items)
    plain = list(generate_histories(3_000, seed=2, fraud_rate=0.05))
    assert [item.event.model_copy(update={"features": {}}) for item in items] == [item.event for item in plain]


def test_summary_counts_what_was_yielded() -> None:
    summary = WorldSummary()
    items = list(generate_histories(5_000, seed=1, fraud_rate=0.05, summary=summary))
    assert summary.events == len(items) and summary.fraud_events == sum(item.is_fraud for item in items)
    assert sum(summary.by_pattern.values()) == summary.fraud_events
    assert summary.accounts == 125 and set(summary.lookalike_accounts) <= {
        "traveller",
        "new_phone",
        "payday_spree",
        "subscriptions",
        "big_ticket",
        "night_gambler",
    }


def test_accounts_have_histories(world: list[LabelledEvent]) -> None:
    per_account = Counter(item.event.account_id for item in world)
    assert len(per_account) == 750
    assert sorted(per_account.values())[len(per_account) // 2] >= 20  # the median account has a history


def test_history_reveals_what_a_single_event_hides(world: list[LabelledEvent]) -> None:
    """Card testing is a burst; takeover is a device the account never used: facts about the past."""
    events = [item.event for item in world]
    summaries = replay(events, lambda event, history: history.summary(record_of(event)))
    by_kind: dict[str, list[int]] = {"card_testing": [], "legit_small_cnp": []}
    new_device: dict[str, list[bool]] = {"account_takeover": [], "legit_cnp": []}
    for item, summary in zip(world, summaries, strict=True):
        event = item.event
        small_cnp = not event.card_present and float(event.amount) < 20
        if item.pattern == "card_testing" and small_cnp:
            by_kind["card_testing"].append(summary.window_counts[0])
        elif not item.is_fraud and small_cnp:
            by_kind["legit_small_cnp"].append(summary.window_counts[0])
        if summary.new_device is not None and summary.observed >= 5:
            if item.pattern == "account_takeover":
                new_device["account_takeover"].append(summary.new_device)
            elif not item.is_fraud:
                new_device["legit_cnp"].append(summary.new_device)
    burst = sum(count >= 2 for count in by_kind["card_testing"]) / len(by_kind["card_testing"])
    quiet = sum(count >= 2 for count in by_kind["legit_small_cnp"]) / len(by_kind["legit_small_cnp"])
    assert burst > 0.6 > 0.1 > quiet
    # A takeover's first payment comes from a device new to the account; the customer's rarely do.
    takeover = sum(new_device["account_takeover"]) / len(new_device["account_takeover"])
    legit = sum(new_device["legit_cnp"]) / len(new_device["legit_cnp"])
    assert takeover > 0.15 > 0.05 > legit


def test_histories_fit_the_state_budget(world: list[LabelledEvent]) -> None:
    histories: dict[str, AccountHistory] = {}
    replay([item.event for item in world], lambda event, history: None, histories)
    sizes = [len(history.to_bytes()) for history in histories.values()]
    assert max(sizes) < 1_400
