"""Hypothesis strategies for the wire models: valid values only, built from the field rules."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal

from hypothesis import strategies as st

from schemas import (
    CardRef,
    Channel,
    DeadLetter,
    DeadLetterSource,
    Decision,
    EntryMode,
    ErrorKind,
    Merchant,
    ModelRef,
    RiskScore,
    SourceRef,
    TransactionEvent,
)
from schemas.iso import COUNTRY_CODES, CURRENCY_CODES
from schemas.redaction import contains_pan

_ID_ALPHABET = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._:@/-"
_ID_HEAD = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"

# Identifiers may look like card numbers: decode still accepts them (the writer masks them).
identifiers = st.builds(lambda head, tail: head + tail, st.sampled_from(_ID_HEAD), st.text(_ID_ALPHABET, max_size=40))
output_identifiers = st.builds(
    lambda head, tail: head + tail, st.sampled_from(_ID_HEAD + "*"), st.text(_ID_ALPHABET + "*", max_size=40)
)
countries = st.sampled_from(sorted(COUNTRY_CODES))
currencies = st.sampled_from(sorted(CURRENCY_CODES))
offsets = st.integers(min_value=-14 * 60, max_value=14 * 60).map(lambda minutes: timezone(timedelta(minutes=minutes)))
aware_datetimes = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=offsets)
amounts = st.decimals(min_value=Decimal("0.0001"), max_value=Decimal("1000000000"), places=4, allow_nan=False)
free_text = st.text(
    st.characters(blacklist_categories=("Cc", "Cs"), blacklist_characters="\x7f"), min_size=1, max_size=64
).filter(lambda value: not contains_pan(value))

merchants = st.builds(
    Merchant,
    merchant_id=identifiers,
    mcc=st.from_regex(r"\A[0-9]{4}\Z"),
    country=countries,
    name=st.none() | free_text,
)
cards = st.builds(
    CardRef,
    token=st.from_regex(r"\A[A-Za-z_-][A-Za-z0-9_-]{7,40}\Z"),
    bin=st.from_regex(r"\A[0-9]{6,8}\Z"),
    last4=st.from_regex(r"\A[0-9]{4}\Z"),
)
features = st.dictionaries(
    st.from_regex(r"\A[a-z][a-z0-9_]{0,20}\Z"),
    st.floats(allow_nan=False, allow_infinity=False),
    max_size=64,
)
transaction_events = st.builds(
    TransactionEvent,
    transaction_id=identifiers,
    event_time=aware_datetimes,
    account_id=identifiers,
    amount=amounts,
    currency=currencies,
    merchant=merchants,
    channel=st.sampled_from(Channel),
    entry_mode=st.sampled_from(EntryMode),
    card_present=st.booleans(),
    card=cards,
    device_id=st.none() | identifiers,
    ip_country=st.none() | countries,
    features=st.none() | features,
    # decode() refuses a card number (PAN) in free text (merchant names, filtered above); ids may hold one.
)
labels = st.from_regex(r"\A[A-Za-z0-9._:+-]{1,32}\Z")
topics = st.from_regex(r"\A[A-Za-z0-9._-]{1,40}\Z")
risk_scores = st.builds(
    RiskScore,
    transaction_id=output_identifiers,
    account_id=output_identifiers,
    score=st.floats(min_value=0.0, max_value=1.0),
    decision=st.sampled_from(Decision),
    model=st.builds(ModelRef, name=labels, version=labels, quantization=labels, device=labels),
    event_time=aware_datetimes,
    scored_time=aware_datetimes,
    latency_ms=st.floats(min_value=0.0, max_value=1e9),
    batch_size=st.integers(min_value=1, max_value=1 << 16),
    late=st.booleans(),
    worker_id=identifiers,
    source=st.builds(SourceRef, topic=topics, partition=st.integers(0, 10_000), offset=st.integers(0, 1 << 62)),
)
dead_letters = st.builds(
    DeadLetter,
    source=st.builds(
        DeadLetterSource,
        topic=topics,
        partition=st.integers(0, 10_000),
        offset=st.integers(0, 1 << 62),
        timestamp=st.none() | aware_datetimes,
        key=st.none() | st.text(max_size=256),
    ),
    error_type=st.sampled_from(ErrorKind),
    error=st.text(max_size=2048),
    payload=st.text(max_size=4096),
    payload_bytes=st.integers(0, 1 << 30),
    payload_truncated=st.booleans(),
    unknown_fields=st.lists(st.text(max_size=64), max_size=32),
    unknown_fields_omitted=st.integers(0, 1 << 20),
    worker_id=identifiers,
    failed_time=aware_datetimes,
)
