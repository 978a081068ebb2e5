"""Dead letters keep only what is needed to replay a record: known fields, redacted; unknown ones by name."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas import DeadLetter, DecodeError, ErrorKind, build_dead_letter, decode
from schemas.minimise import MAX_UNKNOWN_FIELDS, MAX_VALUE_CHARS, minimise_payload
from schemas.redaction import contains_pan
from tests.schemas.test_decode import valid_event

NOW = datetime(2026, 11, 28, tzinfo=UTC)
PERSONAL = {
    "ssn": "123-45-6789",
    "customer_name": "Ana María López",
    "street": "Calle de Alcalá 42, 28014 Madrid",
    "email": "ana.lopez@example.es",
    "phone": "+34 612 345 678",
    "pan": "5555 5555 5555 4444",
}
PERSONAL_VALUES = ("123-45-6789", "Ana", "López", "Alcalá", "28014", "ana.lopez", "612 345", "5555 5555")


def letter_for(value: bytes | None, key: bytes | None = None) -> DeadLetter:
    result = decode(value)
    kind, error = (result.kind, result.message) if isinstance(result, DecodeError) else (ErrorKind.SCORING_FAILED, "")
    return build_dead_letter(
        topic="transactions",
        partition=2,
        offset=40,
        timestamp=NOW,
        key=key,
        value=value,
        kind=kind,
        error=error,
        worker_id="w-1",
        failed_time=NOW,
    )


def assert_no_personal_data(letter: DeadLetter) -> None:
    wire = letter.model_dump_json()
    for value in PERSONAL_VALUES:
        assert value not in wire, (value, wire)
    assert not contains_pan(wire)


def test_unknown_fields_are_named_never_copied() -> None:
    event: dict[str, Any] = {**valid_event(), **PERSONAL}
    event["merchant"]["street"] = "Calle de Alcalá 42"
    event["card"]["cvv"] = "123"
    letter = letter_for(json.dumps(event).encode())
    assert letter.error_type is ErrorKind.SENSITIVE_FIELD
    assert json.loads(letter.payload) == valid_event()
    assert sorted(letter.unknown_fields) == sorted([*PERSONAL, "merchant.street", "card.cvv"])
    assert letter.unknown_fields_omitted == 0 and not letter.payload_truncated
    assert_no_personal_data(letter)


def test_known_free_text_keeps_its_value_redacted() -> None:
    event = valid_event()
    event["merchant"]["name"] = "Shop, call (415) 555-2671 or shop@example.com, card 4111-1111-1111-1111"
    event["device_id"] = "4111111111111111"
    letter = letter_for(json.dumps(event).encode(), key=b"acct 4111 1111 1111 1111 ana@example.org")
    assert letter.error_type is ErrorKind.PAN_DETECTED
    kept = json.loads(letter.payload)
    assert kept["merchant"]["name"] == "Shop, call [PHONE] or [EMAIL], card 4111-11**-****-1111"
    assert kept["device_id"] == "411111******1111"
    assert letter.source.key == "acct 4111 11** **** 1111 [EMAIL]"


def test_known_fields_of_the_wrong_shape_keep_a_type_marker() -> None:
    event: dict[str, Any] = valid_event()
    event["account_id"] = {"name": "Ana María López", "ssn": "123-45-6789"}
    event["transaction_id"] = ["Ana María López"]
    event["merchant"] = "Ana María López, Calle de Alcalá 42"
    event["card"]["bin"] = 411111
    event["amount"] = 4111111111111111
    event["features"] = {"velocity_1h": "Ana María López", "Bad Name": 1, "amount_zscore": -0.4}
    letter = letter_for(json.dumps(event).encode())
    kept = json.loads(letter.payload)
    assert kept["account_id"] == "[object]" and kept["transaction_id"] == "[array]"
    assert kept["merchant"] == "[string]"
    assert kept["card"]["bin"] == 411111  # a number stays a number ...
    assert kept["amount"] == "411111******1111"  # ... unless its digits are a card number
    assert kept["features"] == {"velocity_1h": "[string]", "amount_zscore": -0.4}
    assert letter.unknown_fields == ["features.Bad Name"]
    assert_no_personal_data(letter)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        # Malformed JSON: only known members, found by pattern; the unknown ones and free text are gone.
        (
            b'{"transaction_id": "txn-1", "account_id": "4111111111111111", "customer_name": "Ana", '
            b'"merchant": {"merchant_id": "m-7", "name": "Ana\'s corner", "mcc": "5411"}, "amount": 12.5,',
            {
                "transaction_id": "txn-1",
                "account_id": "411111******1111",
                "amount": 12.5,
                "merchant": {"merchant_id": "m-7", "mcc": "5411"},
            },
        ),
        # Not UTF-8 and not parseable: the same.
        (
            b'\xff{"currency": "EUR", "street": "Calle de Alcal\xe1 42", "card": {"token": "t", "last4": "4444"',
            {"currency": "EUR", "card": {"last4": "4444"}},
        ),
        # Not an object.
        (b'"Ana Mar\xc3\xada L\xc3\xb3pez, 123-45-6789"', {}),
        (b'[{"transaction_id": "txn-9", "email": "ana@example.org"}]', {"transaction_id": "txn-9"}),
        (b"4111111111111111", {}),
    ],
)
def test_a_payload_that_is_not_an_object_keeps_only_known_members_found_by_pattern(
    raw: bytes, expected: dict[str, Any]
) -> None:
    letter = letter_for(raw)
    assert json.loads(letter.payload) == expected
    assert letter.unknown_fields == []
    assert "Ana" not in letter.model_dump_json() and "Alcal" not in letter.model_dump_json()
    assert not contains_pan(letter.model_dump_json())


def test_valid_utf8_but_invalid_json_parses_after_replacement_when_it_can() -> None:
    letter = letter_for(b'{"transaction_id": "\xff\xfe", "nickname": "Ana"}')
    assert letter.error_type is ErrorKind.NOT_UTF8
    assert json.loads(letter.payload) == {"transaction_id": "\ufffd\ufffd"}
    assert letter.unknown_fields == ["nickname"]


def test_empty_and_oversized_values() -> None:
    assert letter_for(None).payload == "" and letter_for(b"").payload == ""
    huge = minimise_payload(b'{"transaction_id": "t-1", "note": "' + b"x" * 2_000_000 + b'"}')
    assert json.loads(huge.text) == {"transaction_id": "t-1"} and huge.truncated
    long_name = valid_event()
    long_name["merchant"]["name"] = "x" * 100_000 + " 4111111111111111"
    letter = letter_for(json.dumps(long_name).encode())
    assert letter.error_type is ErrorKind.TOO_LARGE and letter.payload_truncated
    assert json.loads(letter.payload)["merchant"]["name"] == "x" * MAX_VALUE_CHARS


def test_unknown_field_names_are_bounded_and_redacted() -> None:
    event: dict[str, Any] = valid_event()
    event["4111111111111111"] = 1
    event["ana@example.org"] = 2
    event["n" * 500] = 3
    for index in range(100):
        event[f"extra_{index}"] = index
    letter = letter_for(json.dumps(event).encode())
    assert letter.unknown_fields[:3] == ["411111******1111", "[EMAIL]", "n" * 64]
    assert len(letter.unknown_fields) == MAX_UNKNOWN_FIELDS
    assert letter.unknown_fields_omitted == 103 - MAX_UNKNOWN_FIELDS


def _not_json(constant: str) -> None:
    raise AssertionError(f"{constant} is not JSON")


@settings(max_examples=200, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["transaction_id", "account_id", "merchant", "card", "features", "note", "amount"]),
        st.recursive(
            st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=40),
            lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=10), inner, max_size=3),
            max_leaves=10,
        ),
        max_size=7,
    )
)
def test_any_object_payload_becomes_a_valid_dead_letter(value: dict[str, Any]) -> None:
    raw = json.dumps(value).encode()
    letter = letter_for(raw)
    assert DeadLetter.model_validate_json(letter.model_dump_json()) == letter
    # Always a strict JSON object, even with NaN, infinities and huge numbers inside.
    kept = json.loads(letter.payload, parse_constant=_not_json)
    assert set(kept) <= set(value) - {"note"}
    assert not contains_pan(letter.model_dump_json())
