"""Account history: windows by event time, ring order, seen sets, TTL, serialization, replay order."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from inference.history import (
    DEVICE_SLOTS,
    HISTORY_FORMAT_VERSION,
    NO_COUNTRY,
    TTL_SECONDS,
    WINDOWS,
    AccountHistory,
    HistoryFormatError,
    TransactionRecord,
    country_code,
    digest,
    float32,
    how_code,
    record_of,
    replay,
)
from inference.synthetic_history import generate_histories
from schemas import CardRef, Channel, EntryMode, Merchant, TransactionEvent
from schemas.redaction import mask_identifier

T0 = 1_767_571_200  # 2026-01-05T00:00Z


def _record(
    at: int,
    amount: float = 20.0,
    *,
    device: int = 7,
    merchant: int = 11,
    country: str = "DE",
    ip: str | None = "DE",
    how: int | None = None,
) -> TransactionRecord:
    return TransactionRecord(
        at,
        float32(amount),
        5411,
        country_code(country),
        NO_COUNTRY if ip is None else country_code(ip),
        how_code(Channel.ECOMMERCE, EntryMode.CREDENTIAL_ON_FILE, False) if how is None else how,
        device,
        merchant,
    )


def _event(
    at: datetime, *, account: str = "acct-a", device: str | None = "dev-a", amount: str = "12.50"
) -> TransactionEvent:
    return TransactionEvent(
        transaction_id=f"txn-{int(at.timestamp())}",
        event_time=at,
        account_id=account,
        amount=Decimal(amount),
        currency="EUR",
        merchant=Merchant(merchant_id="mer-a", mcc="5411", country="DE"),
        channel=Channel.ECOMMERCE,
        entry_mode=EntryMode.CREDENTIAL_ON_FILE,
        card_present=False,
        card=CardRef(token="tok_abcdefgh", bin="411111", last4="1111"),
        device_id=device,
        ip_country="DE",
    )


def _window_reference(times: list[int], query: int) -> list[int]:
    """The documented window rule, computed from the raw times: a window at ``query`` holds the
    events whose bucket lies in (max(q, L) - n, min(q, L)], L being the newest event's bucket."""
    newest = max(times)
    counts = []
    for _, seconds, buckets in WINDOWS:
        width = seconds // buckets
        q, latest = query // width, newest // width
        low, high = max(q, latest) - buckets, min(q, latest)
        counts.append(sum(1 for t in times if low < t // width <= high))
    return counts


def test_a_cold_history_reads_as_nothing_seen() -> None:
    history = AccountHistory()
    summary = history.summary(_record(T0))
    assert summary.observed == 0 and summary.since_previous_s is None and summary.rows == ()
    assert summary.window_counts == (0, 0, 0, 0)
    assert summary.new_device and summary.new_merchant and summary.new_merchant_country and summary.new_ip_country
    assert history.expired(datetime.fromtimestamp(T0, UTC))


def test_windows_count_and_sum_the_past_by_event_time() -> None:
    history = AccountHistory()
    for offset, amount in ((0, 10.0), (120, 20.0), (700, 30.0), (4_000, 40.0), (90_000, 50.0)):
        history.observe_record(_record(T0 + offset, amount))
    query = _record(T0 + 90_100)
    summary = history.summary(query)
    assert list(summary.window_counts) == _window_reference([0, 120, 700, 4_000, 90_000], 90_100)
    assert summary.window_counts == (1, 1, 1, 5)  # 10 min / 1 h / 24 h see only the last one; 7 d all
    assert summary.window_sums[3] == pytest.approx(150.0)
    assert summary.since_previous_s == 100
    assert summary.observed == 5 and summary.tenure_s == 90_100


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.integers(min_value=0, max_value=20 * 86_400), min_size=1, max_size=60),
    st.integers(min_value=-86_400, max_value=21 * 86_400),
)
def test_windows_follow_the_documented_rule_in_any_arrival_order(offsets: list[int], query: int) -> None:
    history = AccountHistory()
    for offset in offsets:
        history.observe_record(_record(T0 + offset))
    expected = _window_reference([T0 + offset for offset in offsets], T0 + query)
    assert list(history.summary(_record(T0 + query)).window_counts) == expected


def test_out_of_order_events_never_give_negative_delays() -> None:
    history = AccountHistory()
    history.observe_record(_record(T0 + 3_600))
    history.observe_record(_record(T0))  # older, arrives later
    summary = history.summary(_record(T0 + 60))
    assert summary.since_previous_s == 0  # the newest seen is later than this event: clamped
    assert all(row[0] >= 0 for row in summary.rows)
    assert [row.time for row in history.ring] == [T0, T0 + 3_600]  # the ring is in time order
    assert history.newest == T0 + 3_600  # the newest time never moves back


def test_the_ring_keeps_the_latest_capacity_transactions_by_time() -> None:
    history = AccountHistory(capacity=4)
    for offset in (10, 20, 30, 40, 50):
        history.observe_record(_record(T0 + offset, amount=float(offset)))
    assert [row.time - T0 for row in history.ring] == [20, 30, 40, 50]
    history.observe_record(_record(T0 + 5))  # older than a full ring's oldest: not kept there
    assert [row.time - T0 for row in history.ring] == [20, 30, 40, 50]
    history.observe_record(_record(T0 + 35, amount=35.0))
    assert [row.time - T0 for row in history.ring] == [30, 35, 40, 50]
    history.observe_record(_record(T0 + 35, amount=36.0))  # equal times keep arrival order
    assert [row.amount_usd for row in history.ring if row.time == T0 + 35] == [35.0, 36.0]
    assert history.observed == 8
    assert [row[0] for row in history.summary(_record(T0 + 60), rows=2).rows] == [20, 10]


def test_seen_sets_flag_first_use_device_age_and_distinct_counts() -> None:
    history = AccountHistory()
    history.observe_record(_record(T0, device=1, merchant=100, country="DE", ip="DE"))
    later = _record(T0 + 7_200, device=1, merchant=101, country="FR", ip=None)
    summary = history.summary(later)
    assert summary.new_device is False and summary.device_age_s == 7_200
    assert summary.new_merchant and summary.new_merchant_country and summary.new_ip_country is None
    history.observe_record(later)
    summary = history.summary(_record(T0 + 7_300, device=2, merchant=100, country="DE", ip="US"))
    assert summary.new_device is True and summary.device_age_s is None
    assert not summary.new_merchant and not summary.new_merchant_country and summary.new_ip_country is True
    assert (summary.distinct_merchants_24h, summary.distinct_merchant_countries_24h, summary.distinct_devices_24h) == (
        2,
        2,
        1,
    )
    assert history.summary(_record(T0 + 2 * 86_400, device=0)).distinct_merchants_24h == 0
    assert history.summary(_record(T0 + 2 * 86_400, device=0)).new_device is None


def test_seen_sets_are_bounded_and_forget_the_least_recently_used() -> None:
    history = AccountHistory()
    for device in range(1, DEVICE_SLOTS + 2):
        history.observe_record(_record(T0 + device, device=device))
    assert history.summary(_record(T0 + 100, device=1)).new_device is True  # evicted: new again
    assert history.summary(_record(T0 + 100, device=DEVICE_SLOTS + 1)).new_device is False
    assert len(history.to_bytes()) < 1_000


def test_amount_z_score_is_on_the_log_scale_of_the_account() -> None:
    history = AccountHistory()
    assert history.summary(_record(T0, 20.0)).amount_z is None
    for offset, amount in enumerate((18.0, 22.0, 20.0, 19.0, 21.0)):
        history.observe_record(_record(T0 + offset * 600, amount))
    usual = history.summary(_record(T0 + 4_000, 20.0)).amount_z
    large = history.summary(_record(T0 + 4_000, 400.0)).amount_z
    assert usual is not None and large is not None and abs(usual) < 1.0 < 5.0 < large


def test_ttl_expires_idle_accounts_and_restarts_them() -> None:
    history = AccountHistory()
    history.observe_record(_record(T0))
    start = datetime.fromtimestamp(T0, UTC)
    assert not history.expired(start + timedelta(seconds=TTL_SECONDS))
    assert history.expired(start + timedelta(seconds=TTL_SECONDS + 1))
    late = _record(T0 + TTL_SECONDS + 1)
    assert history.summary(late).observed == 0  # reads as cold, swept or not
    history.observe_record(late)
    assert history.observed == 1 and len(history.ring) == 1


def test_a_far_future_time_costs_one_restart_not_the_account() -> None:
    history = AccountHistory()
    history.observe_record(_record(T0))
    history.observe_record(_record(T0 + 50 * 365 * 86_400))  # a bogus year
    history.observe_record(_record(T0 + 60))
    history.observe_record(_record(T0 + 120))
    assert history.observed == 2 and history.newest == T0 + 120


def test_serialization_is_versioned_compact_and_exact() -> None:
    items = list(generate_histories(3_000, seed=4, accounts=10, fraud_rate=0.05))
    histories: dict[str, AccountHistory] = {}
    replay([item.event for item in items], lambda event, history: None, histories)
    busiest = max(histories.values(), key=lambda history: history.observed)
    data = busiest.to_bytes()
    assert data[0] == HISTORY_FORMAT_VERSION
    assert len(busiest.ring) == busiest.capacity and len(data) < 1_400
    again = AccountHistory.from_bytes(data)
    assert again.to_bytes() == data and again == busiest
    probe = record_of(items[-1].event)
    assert again.summary(probe) == busiest.summary(probe)  # memory holds exactly what is written
    again.observe_record(probe)
    busiest.observe_record(probe)
    assert again.to_bytes() == busiest.to_bytes()


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(min_value=0, max_value=40 * 86_400),
            st.floats(min_value=0.01, max_value=50_000.0),
            st.integers(min_value=0, max_value=12),
            st.integers(min_value=1, max_value=30),
        ),
        max_size=80,
    )
)
def test_any_history_survives_a_round_trip(steps: list[tuple[int, float, int, int]]) -> None:
    history = AccountHistory()
    for offset, amount, device, merchant in steps:
        history.observe_record(_record(T0 + offset, amount, device=device, merchant=merchant))
    data = history.to_bytes()
    assert AccountHistory.from_bytes(data).to_bytes() == data


def test_unknown_versions_and_damaged_bytes_are_refused_clearly() -> None:
    history = AccountHistory()
    history.observe_record(_record(T0))
    data = history.to_bytes()
    with pytest.raises(HistoryFormatError, match="unsupported account history format version 9"):
        AccountHistory.from_bytes(bytes([9]) + data[1:])
    for damaged in (b"", data[:-3], data + b"\x00", data[:40]):
        with pytest.raises(HistoryFormatError):
            AccountHistory.from_bytes(damaged)


def test_card_numbers_in_ids_are_never_kept() -> None:
    pan = "4111111111111111"
    history = AccountHistory()
    history.observe(_event(datetime.fromtimestamp(T0, UTC), device=pan))
    assert pan.encode() not in history.to_bytes()
    assert digest(pan) == digest(mask_identifier(pan))
    assert digest("4111111000071111") == digest(pan)  # another card, same BIN and last four: same digest


def test_observe_uses_reference_usd_and_whole_seconds() -> None:
    record = record_of(_event(datetime(2026, 1, 5, 10, 0, 0, 900_000, tzinfo=UTC)))
    assert record.time == int(datetime(2026, 1, 5, 10, tzinfo=UTC).timestamp())
    assert record.amount_usd == float32(12.5 * 1.08)
    assert record.channel is Channel.ECOMMERCE and record.entry_mode is EntryMode.CREDENTIAL_ON_FILE
    assert not record.card_present


def test_replay_gives_each_event_exactly_its_accounts_earlier_events() -> None:
    start = datetime.fromtimestamp(T0, UTC)
    events = [
        _event(start + timedelta(minutes=minute), account=account)
        for minute, account in enumerate(["acct-a", "acct-b", "acct-a", "acct-a", "acct-b", "acct-c"])
    ]
    seen = replay(events, lambda event, history: history.observed)
    assert seen == [0, 0, 1, 2, 1, 0]
    histories: dict[str, AccountHistory] = {}
    first = replay(events[:3], lambda event, history: history.observed, histories)
    second = replay(events[3:], lambda event, history: history.observed, histories)
    assert first + second == seen  # state carried across calls, as across micro-batches


def test_the_history_module_does_not_import_torch() -> None:
    code = "import sys, inference.history, inference.sequence; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
