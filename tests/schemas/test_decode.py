"""decode(): every kind of bad input becomes a typed DecodeError; nothing raises; nothing leaks."""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas import DecodeError, ErrorKind, TransactionEvent, build_dead_letter, decode
from schemas.decode import MAX_EVENT_BYTES
from schemas.redaction import contains_pan

PAN = "4111111111111111"  # a Luhn-valid test PAN
PAN_SPACED = "5555 5555 5555 4444"


def valid_event() -> dict[str, Any]:
    return {
        "schema_version": 1,
        "transaction_id": "txn-0001",
        "event_time": "2026-11-28T16:59:09.123+01:00",
        "account_id": "acct-42",
        "amount": "129.90",
        "currency": "EUR",
        "merchant": {"merchant_id": "m-77", "mcc": "5411", "country": "DE", "name": "Corner Shop"},
        "channel": "pos",
        "entry_mode": "chip",
        "card_present": True,
        "card": {"token": "tok_9fK2mQ7xZ1", "bin": "411111", "last4": "1111"},
        "device_id": "dev-1",
        "ip_country": "DE",
        "features": {"velocity_1h": 2, "amount_zscore": -0.4},
    }


def with_(path: str, value: Any) -> bytes:
    event = valid_event()
    target = event
    *parents, leaf = path.split(".")
    for part in parents:
        target = target[part]
    target[leaf] = value
    return json.dumps(event).encode()


def without(path: str) -> bytes:
    event = valid_event()
    target = event
    *parents, leaf = path.split(".")
    for part in parents:
        target = target[part]
    del target[leaf]
    return json.dumps(event).encode()


def nested(depth: int) -> bytes:
    return ("[" * depth + "]" * depth).encode()


BAD_INPUTS: dict[str, tuple[Callable[[], bytes | None], ErrorKind]] = {
    "tombstone": (lambda: None, ErrorKind.EMPTY),
    "zero bytes": (lambda: b"", ErrorKind.EMPTY),
    "oversize": (lambda: b"{" + b" " * MAX_EVENT_BYTES + b"}", ErrorKind.TOO_LARGE),
    "gzip body": (lambda: gzip.compress(json.dumps(valid_event()).encode()), ErrorKind.COMPRESSED),
    "non-utf8 bytes": (lambda: b'{"transaction_id": "\xff\xfe"}', ErrorKind.NOT_UTF8),
    "malformed json": (lambda: b'{"transaction_id": "t1",', ErrorKind.MALFORMED_JSON),
    "trailing garbage": (lambda: json.dumps(valid_event()).encode() + b"}}", ErrorKind.MALFORMED_JSON),
    "deeply nested json": (lambda: nested(10_000), ErrorKind.TOO_DEEP),
    "json array": (lambda: b"[1, 2, 3]", ErrorKind.NOT_AN_OBJECT),
    "json string": (lambda: b'"hello"', ErrorKind.NOT_AN_OBJECT),
    "missing field": (lambda: without("amount"), ErrorKind.SCHEMA_INVALID),
    "missing nested field": (lambda: without("merchant.mcc"), ErrorKind.SCHEMA_INVALID),
    "extra field": (lambda: with_("loyalty_tier", "gold"), ErrorKind.SCHEMA_INVALID),
    "wrong type (bool as amount)": (lambda: with_("amount", True), ErrorKind.SCHEMA_INVALID),
    "wrong type (string as bool)": (lambda: with_("card_present", "yes"), ErrorKind.SCHEMA_INVALID),
    "wrong type (number as id)": (lambda: with_("account_id", 42), ErrorKind.SCHEMA_INVALID),
    "naive timestamp": (lambda: with_("event_time", "2026-11-28T16:59:09"), ErrorKind.SCHEMA_INVALID),
    "unparseable timestamp": (lambda: with_("event_time", "yesterday"), ErrorKind.SCHEMA_INVALID),
    "zero amount": (lambda: with_("amount", 0), ErrorKind.SCHEMA_INVALID),
    "negative amount": (lambda: with_("amount", "-5.00"), ErrorKind.SCHEMA_INVALID),
    "NaN amount": (lambda: with_("amount", "NaN"), ErrorKind.SCHEMA_INVALID),
    "infinite amount": (lambda: with_("amount", "Infinity"), ErrorKind.SCHEMA_INVALID),
    "huge amount": (lambda: with_("amount", "1e15"), ErrorKind.SCHEMA_INVALID),
    "too many decimals": (lambda: with_("amount", "1.000001"), ErrorKind.SCHEMA_INVALID),
    "bad currency": (lambda: with_("currency", "ZZZ"), ErrorKind.SCHEMA_INVALID),
    "lowercase currency": (lambda: with_("currency", "eur"), ErrorKind.SCHEMA_INVALID),
    "bad mcc": (lambda: with_("merchant.mcc", "54a1"), ErrorKind.SCHEMA_INVALID),
    "bad country": (lambda: with_("merchant.country", "XX"), ErrorKind.SCHEMA_INVALID),
    "bad ip country": (lambda: with_("ip_country", "Germany"), ErrorKind.SCHEMA_INVALID),
    "unknown channel": (lambda: with_("channel", "carrier_pigeon"), ErrorKind.SCHEMA_INVALID),
    "NaN feature (non-standard literal)": (
        lambda: with_("features", {"velocity_1h": float("nan")}),  # json.dumps writes NaN
        ErrorKind.SCHEMA_INVALID,
    ),
    "non-finite feature (string)": (lambda: with_("features", {"velocity_1h": "inf"}), ErrorKind.SCHEMA_INVALID),
    "too many features": (lambda: with_("features", {f"f{i}": 1.0 for i in range(65)}), ErrorKind.SCHEMA_INVALID),
    "overlong id": (lambda: with_("transaction_id", "t" * 65), ErrorKind.SCHEMA_INVALID),
    "control char in name": (lambda: with_("merchant.name", "Shop\x00"), ErrorKind.SCHEMA_INVALID),
    "unsupported version": (lambda: with_("schema_version", 2), ErrorKind.UNSUPPORTED_VERSION),
    "cvv field": (lambda: with_("cvv", "123"), ErrorKind.SENSITIVE_FIELD),
    "cvc2 inside card": (lambda: with_("card.cvc2", "987"), ErrorKind.SENSITIVE_FIELD),
    "pin block": (lambda: with_("pinBlock", "0412AC89ABCDEF12"), ErrorKind.SENSITIVE_FIELD),
    "full PAN as card token": (lambda: with_("card.token", PAN), ErrorKind.PAN_DETECTED),
    "full PAN in merchant name": (lambda: with_("merchant.name", f"refund to {PAN_SPACED}"), ErrorKind.PAN_DETECTED),
    "full PAN as transaction id": (lambda: with_("transaction_id", PAN), ErrorKind.PAN_DETECTED),
    "full PAN as feature name": (lambda: with_("features", {f"x{PAN}": 1.0}), ErrorKind.PAN_DETECTED),
    "full PAN as extra field name": (lambda: with_(PAN, 1), ErrorKind.SCHEMA_INVALID),
    "full PAN as extra field value": (lambda: with_("pan", PAN), ErrorKind.SCHEMA_INVALID),
}


def test_there_are_at_least_twenty_kinds_of_bad_input() -> None:
    assert len(BAD_INPUTS) >= 20
    assert len({kind for _, kind in BAD_INPUTS.values()}) >= 10


@pytest.mark.parametrize("name", sorted(BAD_INPUTS))
def test_bad_input_returns_a_typed_error(name: str) -> None:
    make, expected = BAD_INPUTS[name]
    result = decode(make())
    assert isinstance(result, DecodeError), result
    assert result.kind is expected, result
    assert result.message


@pytest.mark.parametrize("name", sorted(BAD_INPUTS))
def test_error_text_and_dead_letter_never_hold_a_pan(name: str) -> None:
    payload = BAD_INPUTS[name][0]()
    result = decode(payload)
    assert isinstance(result, DecodeError)
    letter = build_dead_letter(
        topic="transactions", partition=3, offset=17, timestamp=datetime.now(UTC), key=PAN.encode(), value=payload,
        kind=result.kind, error=result.message, worker_id="w-1", failed_time=datetime.now(UTC),
    )  # fmt: skip
    wire = letter.model_dump_json()
    assert not contains_pan(result.message)
    assert not any(contains_pan(field) for field in result.fields)
    assert not contains_pan(wire), wire
    # Sensitive authentication data never survives into the dead letter.
    assert '"123"' not in letter.payload and "0412AC89ABCDEF12" not in letter.payload
    assert "987" not in letter.payload


def test_error_messages_do_not_echo_input_values() -> None:
    result = decode(with_("merchant.name", "Shop\x00 secret-marker"))
    assert isinstance(result, DecodeError)
    assert "secret-marker" not in result.message
    result = decode(with_("currency", "QQQ"))
    assert isinstance(result, DecodeError) and "QQQ" not in result.message


def test_oversize_is_rejected_before_parsing() -> None:
    # Invalid UTF-8 and malformed JSON, but too large: the size check must answer first.
    result = decode(b"\xff" * (MAX_EVENT_BYTES + 1))
    assert isinstance(result, DecodeError) and result.kind is ErrorKind.TOO_LARGE
    assert decode(b"{}", max_bytes=1) == DecodeError(ErrorKind.TOO_LARGE, "record value is 2 bytes; the limit is 1")


def test_valid_event_decodes_to_the_model() -> None:
    result = decode(json.dumps(valid_event()).encode())
    assert isinstance(result, TransactionEvent)
    assert str(result.amount) == "129.90"
    assert result.event_time.utcoffset() is not None


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=512))
def test_decode_never_raises_on_arbitrary_bytes(data: bytes) -> None:
    result = decode(data)
    assert isinstance(result, TransactionEvent | DecodeError)


@settings(max_examples=200, deadline=None)
@given(st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=30),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
                    max_leaves=20))  # fmt: skip
def test_decode_never_raises_on_arbitrary_json(value: object) -> None:
    result = decode(json.dumps(value).encode())
    assert isinstance(result, DecodeError)
    assert not contains_pan(result.message)
