"""decode(): every kind of bad input becomes a typed DecodeError; nothing raises; nothing leaks."""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable
from datetime import UTC, datetime
from types import UnionType
from typing import Annotated, Any, Union, get_args, get_origin

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas import DecodeError, ErrorKind, TransactionEvent, build_dead_letter, decode
from schemas.decode import (
    FREE_TEXT_FIELDS,
    IDENTIFIER_FIELDS,
    MAX_EVENT_BYTES,
    field_value,
    identifier_fields_with_pan,
)
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
    "timestamp with a space": (lambda: with_("event_time", "2026-11-28 16:59:09Z"), ErrorKind.SCHEMA_INVALID),
    "timestamp as epoch string": (lambda: with_("event_time", "1795890853"), ErrorKind.SCHEMA_INVALID),
    "timestamp as epoch number": (lambda: with_("event_time", 1795890853), ErrorKind.SCHEMA_INVALID),
    "timestamp without seconds": (lambda: with_("event_time", "2026-11-28T16:59Z"), ErrorKind.SCHEMA_INVALID),
    "timestamp on a day that does not exist": (
        lambda: with_("event_time", "2026-02-30T16:59:09Z"),
        ErrorKind.SCHEMA_INVALID,
    ),
    "zero amount": (lambda: with_("amount", 0), ErrorKind.SCHEMA_INVALID),
    "zero amount string": (lambda: with_("amount", "0.00"), ErrorKind.SCHEMA_INVALID),
    "amount not a number": (lambda: with_("amount", "abc"), ErrorKind.SCHEMA_INVALID),
    "amount in exponent form": (lambda: with_("amount", "1e3"), ErrorKind.SCHEMA_INVALID),
    "amount with spaces": (lambda: with_("amount", " 12.00"), ErrorKind.SCHEMA_INVALID),
    "amount with a sign": (lambda: with_("amount", "+12.00"), ErrorKind.SCHEMA_INVALID),
    "amount with a decimal comma": (lambda: with_("amount", "12,50"), ErrorKind.SCHEMA_INVALID),
    "amount number with too many decimals": (lambda: with_("amount", 1.00001), ErrorKind.SCHEMA_INVALID),
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
    "version as boolean": (lambda: with_("schema_version", True), ErrorKind.UNSUPPORTED_VERSION),
    "cvv field": (lambda: with_("cvv", "123"), ErrorKind.SENSITIVE_FIELD),
    "cvc2 inside card": (lambda: with_("card.cvc2", "987"), ErrorKind.SENSITIVE_FIELD),
    "pin block": (lambda: with_("pinBlock", "0412AC89ABCDEF12"), ErrorKind.SENSITIVE_FIELD),
    "full PAN in merchant name": (lambda: with_("merchant.name", f"refund to {PAN_SPACED}"), ErrorKind.PAN_DETECTED),
    "12-digit PAN in merchant name": (lambda: with_("merchant.name", "card 6759 0000 0000."), ErrorKind.PAN_DETECTED),
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
        topic="transactions",
        partition=3,
        offset=17,
        timestamp=datetime.now(UTC),
        key=PAN.encode(),
        value=payload,
        kind=result.kind,
        error=result.message,
        worker_id="w-1",
        failed_time=datetime.now(UTC),
    )
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


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (path, value)
        for path in IDENTIFIER_FIELDS
        for value in (PAN, "5555-5555-5555-4444", f"acct:{PAN}")
        if not (path == "card.token" and ":" in value)  # a token has no ':': a schema error instead
    ],
)
def test_a_pan_looking_identifier_is_scored_unless_refusal_is_asked_for(path: str, value: str) -> None:
    payload = with_(path, value)
    event = decode(payload)
    assert isinstance(event, TransactionEvent)
    assert field_value(event, path) == value  # decode does not change it; the writer masks it
    assert identifier_fields_with_pan(event) == (path,)
    refused = decode(payload, refuse_pan_in_identifiers=True)
    assert isinstance(refused, DecodeError) and refused.kind is ErrorKind.PAN_DETECTED
    assert refused.fields == (path,) and path in refused.message


def test_a_pan_in_free_text_is_refused_whatever_the_identifier_setting() -> None:
    for refuse in (False, True):
        result = decode(with_("merchant.name", f"refund {PAN}"), refuse_pan_in_identifiers=refuse)
        assert isinstance(result, DecodeError) and result.fields == ("merchant.name",)


def test_identifiers_without_a_pan_are_not_flagged() -> None:
    event = decode(json.dumps(valid_event()).encode())
    assert isinstance(event, TransactionEvent) and identifier_fields_with_pan(event) == ()


def _holds_str(annotation: Any) -> bool:
    if annotation is str:
        return True
    if get_origin(annotation) is Annotated:
        return _holds_str(get_args(annotation)[0])
    return get_origin(annotation) in (Union, UnionType) and any(_holds_str(arg) for arg in get_args(annotation))


def test_every_string_field_is_either_an_identifier_free_text_or_fully_constrained() -> None:
    """A new string field must be classified here: PAN checks only look at the listed fields."""
    constrained = {"currency", "ip_country", "merchant.mcc", "merchant.country", "card.bin", "card.last4"}
    string_fields = set()
    for name, field in TransactionEvent.model_fields.items():
        nested = getattr(field.annotation, "model_fields", None)
        if nested is not None:
            string_fields |= {f"{name}.{inner}" for inner, f in nested.items() if _holds_str(f.annotation)}
        elif _holds_str(field.annotation):
            string_fields.add(name)
    assert string_fields == set(IDENTIFIER_FIELDS) | set(FREE_TEXT_FIELDS) | constrained


def test_features_null_is_an_empty_map() -> None:
    event = decode(with_("features", None))
    assert isinstance(event, TransactionEvent) and event.features == {}
    assert decode(without("features")) == event


def test_feature_names_never_hold_a_pan() -> None:
    # Feature names are words with a letter in them (^[a-z][a-z0-9_]*$): identifiers, never a PAN.
    event = decode(with_("features", {f"x{PAN}": 1.0}))
    assert isinstance(event, TransactionEvent)


def test_amount_is_written_back_as_a_plain_decimal() -> None:
    from decimal import Decimal

    event = decode(json.dumps(valid_event()).encode())
    assert isinstance(event, TransactionEvent)
    exponent_form = event.model_copy(update={"amount": Decimal("1E+3")})
    assert json.loads(exponent_form.model_dump_json())["amount"] == "1000"
    assert decode(exponent_form.model_dump_json().encode()) == exponent_form


@pytest.mark.parametrize("amount", ["0.0001", "129.90", "1000000000", "1000000000.0000", 129.9, 1, 0.3, 1e9])
def test_accepted_amounts(amount: object) -> None:
    assert isinstance(decode(with_("amount", amount)), TransactionEvent)


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
@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=30),
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
        max_leaves=20,
    )
)
def test_decode_never_raises_on_arbitrary_json(value: object) -> None:
    result = decode(json.dumps(value).encode())
    assert isinstance(result, DecodeError)
    assert not contains_pan(result.message)
