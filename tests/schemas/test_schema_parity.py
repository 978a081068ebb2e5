"""The published JSON Schema says what decode() enforces: one probe corpus, the same verdict from both.

A producer that validates against ``schemas/json/transaction_event.v1.json`` (JSON Schema Draft
2020-12) must not get dead letters for records the schema accepts, nor see the schema refuse what
the worker would score. Records whose only fault no JSON Schema can express are listed apart, with
why, and checked to be exactly that: valid to the schema, refused by decode.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from schemas import TransactionEvent, decode
from schemas.decode import MAX_EVENT_BYTES
from schemas.export import JSON_DIR
from tests.schemas.test_decode import valid_event

SCHEMA = json.loads((JSON_DIR / "transaction_event.v1.json").read_text(encoding="utf-8"))
VALIDATOR = Draft202012Validator(SCHEMA)


def edit(change: Callable[[dict[str, Any]], None]) -> bytes:
    event = valid_event()
    change(event)
    return json.dumps(event, ensure_ascii=False).encode()


def setting(path: str, value: Any) -> bytes:
    def change(event: dict[str, Any]) -> None:
        *parents, leaf = path.split(".")
        for part in parents:
            event = event[part]
        event[leaf] = value

    return edit(change)


def removing(path: str) -> bytes:
    def change(event: dict[str, Any]) -> None:
        *parents, leaf = path.split(".")
        for part in parents:
            event = event[part]
        del event[leaf]

    return edit(change)


def _minimal(event: dict[str, Any]) -> None:
    for optional in ("schema_version", "device_id", "ip_country", "features"):
        del event[optional]
    del event["merchant"]["name"]


def _nulls(event: dict[str, Any]) -> None:
    event.update(device_id=None, ip_country=None, features=None)
    event["merchant"]["name"] = None


VALID: dict[str, bytes] = {
    "typical": edit(lambda event: None),
    "only required fields": edit(_minimal),
    "optional fields null, features null": edit(_nulls),
    "amount number": setting("amount", 129.9),
    "amount integer": setting("amount", 1),
    "amount smallest": setting("amount", "0.0001"),
    "amount largest": setting("amount", "1000000000"),
    "amount largest with places": setting("amount", "1000000000.0000"),
    "amount four places": setting("amount", "999999999.9999"),
    "event_time Z": setting("event_time", "2026-11-28T16:59:09Z"),
    "event_time lowercase t and z": setting("event_time", "2026-11-28t16:59:09z"),
    "event_time nanoseconds": setting("event_time", "2026-11-28T16:59:09.123456789+05:30"),
    "event_time -00:00": setting("event_time", "2026-11-28T16:59:09-00:00"),
    "schema_version 1.0": setting("schema_version", 1.0),
    "64 features": setting("features", {f"f{i}": i / 3 for i in range(64)}),
    "feature name of 64 chars": setting("features", {"f" * 64: 1}),
    "64-char id": setting("transaction_id", "t" * 64),
    "id with every allowed character": setting("account_id", "Ab0._:@/-x"),
    "unicode merchant name": setting("merchant.name", "Café Zürich 東京 🛒"),
    "merchant name of 128 chars": setting("merchant.name", "n" * 128),
    "PAN-looking account id (masked on output)": setting("account_id", "4111111111111111"),
    "every channel": setting("channel", "in_app"),
    "every entry mode": setting("entry_mode", "credential_on_file"),
    "8-digit BIN": setting("card.bin", "41111111"),
}

INVALID: dict[str, bytes] = {
    "amount letters": setting("amount", "abc"),
    "amount exponent": setting("amount", "1e3"),
    "amount leading space": setting("amount", " 12"),
    "amount sign": setting("amount", "+5"),
    "amount trailing point": setting("amount", "12."),
    "amount leading point": setting("amount", ".5"),
    "amount leading zeros": setting("amount", "007.5"),
    "amount zero string": setting("amount", "0.00"),
    "amount zero number": setting("amount", 0),
    "amount negative": setting("amount", "-1"),
    "amount negative number": setting("amount", -5),
    "amount too large": setting("amount", "1000000000.0001"),
    "amount too large number": setting("amount", 1e10),
    "amount five places": setting("amount", "1.00001"),
    "amount decimal comma": setting("amount", "12,50"),
    "amount non-ASCII digit": setting("amount", "٣"),
    "amount boolean": setting("amount", True),
    "amount null": setting("amount", None),
    "currency unknown": setting("currency", "ZZZ"),
    "currency lowercase": setting("currency", "eur"),
    "currency numeric": setting("currency", 978),
    "country unknown": setting("merchant.country", "XX"),
    "ip country a name": setting("ip_country", "Germany"),
    "event_time with space": setting("event_time", "2026-11-28 16:59:09Z"),
    "event_time epoch string": setting("event_time", "1795890853"),
    "event_time epoch number": setting("event_time", 1795890853),
    "event_time no seconds": setting("event_time", "2026-11-28T16:59Z"),
    "event_time offset without colon": setting("event_time", "2026-11-28T16:59:09+0100"),
    "event_time no offset": setting("event_time", "2026-11-28T16:59:09"),
    "event_time hour 24": setting("event_time", "2026-11-28T24:00:00Z"),
    "event_time comma fraction": setting("event_time", "2026-11-28T16:59:09,5Z"),
    "event_time year 0": setting("event_time", "0000-01-01T00:00:00Z"),
    "id empty": setting("transaction_id", ""),
    "id 65 chars": setting("transaction_id", "t" * 65),
    "id with space": setting("transaction_id", "txn 1"),
    "id non-ASCII": setting("device_id", "gerät-1"),
    "id a number": setting("account_id", 42),
    "mcc with a letter": setting("merchant.mcc", "54a1"),
    "mcc 3 digits": setting("merchant.mcc", "541"),
    "bin 5 digits": setting("card.bin", "41111"),
    "bin 9 digits": setting("card.bin", "411111111"),
    "last4 letter": setting("card.last4", "111a"),
    "token too short": setting("card.token", "tok_1"),
    "token with space": setting("card.token", "tok 12345678"),
    "channel unknown": setting("channel", "carrier_pigeon"),
    "entry mode unknown": setting("entry_mode", "telepathy"),
    "card_present string": setting("card_present", "yes"),
    "card_present number": setting("card_present", 1),
    "missing amount": removing("amount"),
    "missing merchant mcc": removing("merchant.mcc"),
    "extra field": setting("loyalty_tier", "gold"),
    "extra nested field": setting("merchant.street", "Main St 1"),
    "cvv": setting("card.cvv", "123"),
    "65 features": setting("features", {f"f{i}": 1 for i in range(65)}),
    "feature name uppercase": setting("features", {"Velocity": 1}),
    "feature name 65 chars": setting("features", {"f" * 65: 1}),
    "feature value string": setting("features", {"velocity_1h": "2"}),
    "feature value boolean": setting("features", {"velocity_1h": True}),
    "features a list": setting("features", [1, 2]),
    "schema_version 2": setting("schema_version", 2),
    "schema_version string": setting("schema_version", "1"),
    "schema_version boolean": setting("schema_version", True),
    "merchant name control character": setting("merchant.name", "Shop\x00"),
    "merchant name empty": setting("merchant.name", ""),
    "merchant name 129 chars": setting("merchant.name", "n" * 129),
    "top-level array": b"[1, 2, 3]",
    "top-level string": b'"hello"',
    "not JSON": b'{"transaction_id": "t1",',
    "NaN literal": setting("features", {"velocity_1h": float("nan")}),
    "not UTF-8": b'{"transaction_id": "\xff"}',
    # Over decode's byte limit (a transport rule); the schema's maxLength refuses it too.
    "larger than the size limit": setting("merchant.name", "x" * MAX_EVENT_BYTES),
}

#: Faults no JSON Schema can express: the schema accepts these, decode refuses them.
BEYOND_THE_SCHEMA: dict[str, tuple[bytes, str]] = {
    "PAN in merchant name": (
        setting("merchant.name", "refund to 4111 1111 1111 1111"),
        "a Luhn check is arithmetic, not a pattern",
    ),
    "30 February": (
        setting("event_time", "2026-02-30T16:59:09Z"),
        "day-of-month against month and leap year is calendar logic",
    ),
    "amount number with five places": (
        setting("amount", 1.00001),
        "multipleOf 0.0001 over binary floats wrongly rejects 0.3 in some validators, so it is left out",
    ),
    "feature beyond double range": (
        json.dumps(valid_event()).replace('"velocity_1h": 2', '"velocity_1h": 1e400').encode(),
        "1e400 is valid JSON; that it overflows a double is not a JSON Schema notion",
    ),
    "trailing newline in an id": (
        setting("transaction_id", "txn-1\n"),
        "Python's re lets $ match before a final newline (ECMA-262, the dialect the schema uses, does not)",
    ),
}


def _reject_constant(constant: str) -> None:
    raise ValueError(f"{constant} is not JSON")


def schema_accepts(raw: bytes) -> bool:
    try:
        document = json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)
    except ValueError:  # not UTF-8, not JSON, or a non-standard literal
        return False
    return VALIDATOR.is_valid(document)


def decode_accepts(raw: bytes) -> bool:
    return isinstance(decode(raw), TransactionEvent)


def test_the_corpus_is_large_enough() -> None:
    assert len(VALID) >= 20 and len(INVALID) >= 50


@pytest.mark.parametrize("name", sorted(VALID))
def test_valid_probes_pass_both(name: str) -> None:
    raw = VALID[name]
    assert (schema_accepts(raw), decode_accepts(raw)) == (True, True), decode(raw)


@pytest.mark.parametrize("name", sorted(INVALID))
def test_invalid_probes_fail_both(name: str) -> None:
    raw = INVALID[name]
    assert (schema_accepts(raw), decode_accepts(raw)) == (False, False)


@pytest.mark.parametrize("name", sorted(BEYOND_THE_SCHEMA))
def test_faults_beyond_the_schema_are_exactly_that(name: str) -> None:
    raw, _why = BEYOND_THE_SCHEMA[name]
    assert (schema_accepts(raw), decode_accepts(raw)) == (True, False)


def test_the_schema_carries_the_code_lists() -> None:
    from schemas.iso import COUNTRY_CODES, CURRENCY_CODES

    assert set(SCHEMA["properties"]["currency"]["enum"]) == CURRENCY_CODES
    assert set(SCHEMA["$defs"]["Merchant"]["properties"]["country"]["enum"]) == COUNTRY_CODES
