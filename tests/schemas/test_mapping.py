"""Mapping files: load-time validation, conversions, typed per-record errors that never carry values."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas import Channel, EntryMode, TransactionEvent
from schemas.mapping import (
    CURRENCY_EXPONENTS,
    EventMapping,
    LabelledEvent,
    MappingError,
    Problem,
    RecordError,
    load_mapping,
    parse_json_object,
    parse_mapping,
)

# A minimal JSON mapping over a flat record; tests add or replace lines.
BASE_FIELDS = """
[fields]
transaction_id = "id"
event_time = { path = "ts", convert = "epoch_seconds" }
account_id = "acct"
amount = { path = "minor", convert = "minor_units" }
currency = "ccy"
channel = { path = "chan", map = { P = "pos", E = "ecommerce" } }
entry_mode = { value = "chip" }
card_present = { path = "cp", true_values = ["Y"], false_values = ["N"] }
merchant.merchant_id = "mid"
merchant.mcc = { path = "cat", map = "categories", fallback = "5999" }
merchant.country = { path = "mctry", case = "upper" }
card.token = "tok"
card.bin = { path = "masked", slice = [0, 6] }
card.last4 = { path = "masked", slice = [-4] }
ip_country = { path = "ip", case = "upper", optional = true }
features.velocity_1h = "v1h"
"""
BASE = (
    'version = 1\nformat = "json"\ndrop = ["name", "ssn"]\n[maps.categories]\n"Grocery Stores" = "5411"\n' + BASE_FIELDS
)


def record(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "id": "T1",
        "ts": 1_767_600_000,  # 2026-01-05T08:00:00Z
        "acct": "A-17",
        "minor": 12345,
        "ccy": "EUR",
        "chan": "E",
        "cp": "N",
        "mid": "M9",
        "cat": "Grocery Stores",
        "mctry": "de",
        "tok": "tok_abcdefgh",
        "masked": "411111******1234",
        "ip": "fr",
        "v1h": "3",
        "name": "Zebulon Quackenbush",
        "ssn": "078-05-1120",
    }
    base.update(changes)
    return {key: value for key, value in base.items() if value is not ...}


def mapping(text: str = BASE) -> EventMapping:
    return parse_mapping(text, source="m.toml")


def event(result: TransactionEvent | RecordError) -> TransactionEvent:
    assert isinstance(result, TransactionEvent), result
    return result


def error(result: TransactionEvent | RecordError) -> RecordError:
    assert isinstance(result, RecordError), result
    return result


def test_a_record_becomes_the_wire_event() -> None:
    mapped = event(mapping().apply(record()))
    assert mapped.transaction_id == "T1"
    assert mapped.event_time == datetime(2026, 1, 5, 8, 0, tzinfo=UTC)
    assert mapped.amount == Decimal("123.45") and mapped.currency == "EUR"
    assert mapped.channel is Channel.ECOMMERCE and mapped.entry_mode is EntryMode.CHIP
    assert mapped.card_present is False
    assert (mapped.merchant.mcc, mapped.merchant.country) == ("5411", "DE")
    assert (mapped.card.bin, mapped.card.last4) == ("411111", "1234")
    assert mapped.ip_country == "FR"
    assert mapped.features == {"velocity_1h": 3.0}
    # The wire form of a mapped event decodes like any producer's event.
    from schemas import decode

    assert decode(mapped.model_dump_json().encode()) == mapped


@pytest.mark.parametrize(
    ("currency", "minor", "expected"),
    [("JPY", 12345, "12345"), ("EUR", 12345, "123.45"), ("BHD", 12345, "12.345"), ("CLF", 12345, "1.2345")],
)
def test_minor_units_use_the_currency_exponent(currency: str, minor: int, expected: str) -> None:
    assert event(mapping().apply(record(ccy=currency, minor=minor))).amount == Decimal(expected)


def test_exponent_table_and_override() -> None:
    assert (CURRENCY_EXPONENTS["JPY"], CURRENCY_EXPONENTS["USD"], CURRENCY_EXPONENTS["KWD"]) == (0, 2, 3)
    assert "XAU" not in CURRENCY_EXPONENTS  # gold has no minor unit
    fixed = mapping(BASE.replace('convert = "minor_units" }', 'convert = "minor_units", exponent = 0 }'))
    assert event(fixed.apply(record(ccy="EUR", minor=500))).amount == Decimal(500)


def test_minor_units_of_a_currency_without_one_and_fractional_units_fail() -> None:
    failed = error(mapping().apply(record(ccy="XAU")))
    assert (failed.path, failed.problem, failed.target) == ("minor", Problem.UNKNOWN_CURRENCY, "amount")
    assert error(mapping().apply(record(minor="12.5"))).problem is Problem.NOT_A_NUMBER
    assert error(mapping().apply(record(ccy="usd"))).problem is Problem.INVALID  # currency must be ISO upper-case


def test_decimal_amounts_from_text_numbers_and_floats() -> None:
    decimal = mapping(BASE.replace('amount = { path = "minor", convert = "minor_units" }', 'amount = "amt"'))
    assert event(decimal.apply(record(minor=..., amt="19.99"))).amount == Decimal("19.99")
    assert event(decimal.apply(record(minor=..., amt=19.99))).amount == Decimal("19.99")
    assert event(decimal.apply(record(minor=..., amt=20))).amount == Decimal(20)
    assert error(decimal.apply(record(minor=..., amt="19,99"))).problem is Problem.NOT_A_NUMBER
    assert error(decimal.apply(record(minor=..., amt="NaN"))).problem is Problem.NOT_A_NUMBER
    assert error(decimal.apply(record(minor=..., amt="-5"))).problem is Problem.INVALID  # the wire schema wants > 0


@pytest.mark.parametrize(
    ("convert", "value", "expected"),
    [
        ("epoch_seconds", 1_767_600_000, datetime(2026, 1, 5, 8, tzinfo=UTC)),
        ("epoch_seconds", "1767600000.5", datetime(2026, 1, 5, 8, 0, 0, 500_000, tzinfo=UTC)),
        ("epoch_millis", 1_767_600_000_123, datetime(2026, 1, 5, 8, 0, 0, 123_000, tzinfo=UTC)),
        ("epoch_micros", "1767600000000007", datetime(2026, 1, 5, 8, 0, 0, 7, tzinfo=UTC)),
    ],
)
def test_epoch_times(convert: str, value: object, expected: datetime) -> None:
    text = BASE.replace('convert = "epoch_seconds"', f'convert = "{convert}"')
    assert event(mapping(text).apply(record(ts=value))).event_time == expected


def test_an_epoch_in_the_wrong_unit_is_not_a_time() -> None:
    failed = error(mapping().apply(record(ts=1_767_600_000_000_000_000)))  # nanoseconds read as seconds
    assert (failed.path, failed.problem) == ("ts", Problem.NOT_A_TIME)


def test_naive_local_times_take_the_source_time_zone() -> None:
    text = 'timezone = "Europe/Berlin"\n' + BASE.replace(
        'event_time = { path = "ts", convert = "epoch_seconds" }', 'event_time = "ts"'
    )
    local = mapping(text)
    summer = event(local.apply(record(ts="2026-07-01T12:00:00"))).event_time
    winter = event(local.apply(record(ts="2026-01-15 12:00:00"))).event_time
    assert summer.utcoffset() == timedelta(hours=2) and winter.utcoffset() == timedelta(hours=1)
    aware = event(local.apply(record(ts="2026-07-01T12:00:00Z"))).event_time
    assert aware == datetime(2026, 7, 1, 12, tzinfo=UTC)  # an explicit offset wins
    # Epoch times keep their instant and are expressed in the zone (the local hour the model reads).
    epoch = mapping('timezone = "Asia/Tokyo"\n' + BASE).apply(record())
    assert event(epoch).event_time.hour == 17 and event(epoch).event_time == datetime(2026, 1, 5, 8, tzinfo=UTC)


def test_strptime_formats_and_datetime_values() -> None:
    text = BASE.replace(
        'event_time = { path = "ts", convert = "epoch_seconds" }',
        'event_time = { path = "ts", format = "%d.%m.%Y %H:%M", timezone = "America/New_York" }',
    )
    moment = event(mapping(text).apply(record(ts="05.01.2026 03:00"))).event_time
    assert moment == datetime(2026, 1, 5, 8, tzinfo=UTC)
    assert error(mapping(text).apply(record(ts="2026-01-05"))).problem is Problem.NOT_A_TIME
    iso = mapping(BASE.replace('event_time = { path = "ts", convert = "epoch_seconds" }', 'event_time = "ts"'))
    assert event(iso.apply(record(ts=datetime(2026, 1, 5, 8)))).event_time.tzinfo is UTC  # a naive Parquet value


def test_string_steps_maps_fallbacks_and_templates() -> None:
    text = BASE.replace('account_id = "acct"', 'account_id = { path = "acct", case = "lower", template = "acct-{}" }')
    text = text.replace(
        'merchant.mcc = { path = "cat", map = "categories", fallback = "5999" }',
        'merchant.mcc = { path = "cat", zfill = 4 }',
    )
    mapped = event(mapping(text).apply(record(acct=" A-17 ", cat=742)))
    assert mapped.account_id == "acct-a-17"
    assert mapped.merchant.mcc == "0742"
    assert event(mapping().apply(record(cat="Unheard Of"))).merchant.mcc == "5999"  # the fallback
    failed = error(mapping().apply(record(chan="X")))
    assert (failed.path, failed.problem, failed.target) == ("chan", Problem.UNMAPPED_VALUE, "channel")


def test_flags_features_scale_and_booleans() -> None:
    text = BASE.replace(
        'features.velocity_1h = "v1h"',
        'features.velocity_1h = { path = "v1h", offset = 1.0 }\n'
        'features.account_age_days = { path = "tenure", scale = 30.44 }\n'
        'features.cross_border = { path = "xb", convert = "bool" }',
    )
    mapped = event(mapping(text).apply(record(tenure=2, xb=True)))
    assert mapped.features == {"velocity_1h": 4.0, "account_age_days": pytest.approx(60.88), "cross_border": 1.0}
    assert event(mapping().apply(record(cp="Y"))).card_present is True
    assert error(mapping().apply(record(cp="maybe"))).problem is Problem.NOT_A_BOOLEAN
    assert error(mapping().apply(record(v1h="lots"))).problem is Problem.NOT_A_NUMBER
    assert error(mapping().apply(record(v1h="inf"))).problem is Problem.NOT_A_NUMBER


def test_absent_values_optional_fields_and_defaults() -> None:
    without_ip = event(mapping().apply(record(ip=..., v1h="")))
    assert without_ip.ip_country is None and without_ip.features == {}  # features are optional by default
    failed = error(mapping().apply(record(acct="  ")))
    assert (failed.path, failed.problem, failed.target) == ("acct", Problem.MISSING, "account_id")
    defaulted = mapping(
        BASE.replace(
            'card_present = { path = "cp", true_values', 'card_present = { path = "cp", default = false, true_values'
        )
    )
    assert event(defaulted.apply(record(cp=...))).card_present is False
    nulls = mapping('null_values = ["", "NULL"]\n' + BASE)
    assert event(nulls.apply(record(ip="NULL"))).ip_country is None


def test_nested_json_paths_null_parents_and_list_indices() -> None:
    text = BASE.replace('card.token = "tok"', 'card.token = "card.token"').replace(
        'features.velocity_1h = "v1h"',
        'features.velocity_1h = "signals.0.value"\ndevice_id = { path = "device.ref", optional = true }',
    )
    nested = mapping(text)
    base = record(tok=..., v1h=...)
    mapped = event(
        nested.apply({**base, "card": {"token": "tok_abcdefgh"}, "signals": [{"value": 2}], "device": {"ref": "dev-1"}})
    )
    assert mapped.card.token == "tok_abcdefgh" and mapped.features == {"velocity_1h": 2.0}
    assert mapped.device_id == "dev-1"
    no_device = event(nested.apply({**base, "card": {"token": "tok_abcdefgh"}, "signals": [], "device": None}))
    assert no_device.device_id is None
    failed = error(nested.apply({**base, "card": "tok_abcdefgh", "signals": [], "device": None}))
    assert (failed.path, failed.problem) == ("card.token", Problem.WRONG_TYPE)


def test_unmapped_json_fields_are_refused_or_counted() -> None:
    failed = error(mapping().apply(record(segment="gold")))
    assert (failed.path, failed.problem) == ("segment", Problem.UNMAPPED_FIELD)
    counting = mapping('unmapped = "count"\n' + BASE)
    assert isinstance(counting.apply(record(segment="gold")), TransactionEvent)
    assert counting.unmapped_fields(record(segment="gold", extra={"a": 1})) == ("segment", "extra")
    nested_drop = mapping(BASE.replace('drop = ["name", "ssn"]', 'drop = ["name", "ssn", "customer"]'))
    assert isinstance(
        nested_drop.apply(record(customer={"email": "x@example.com", "address": {"city": "Y"}})), TransactionEvent
    )


def test_csv_and_parquet_headers_are_checked_once() -> None:
    csv_mapping = mapping(BASE.replace('format = "json"', 'format = "csv"\ndelimiter = "|"'))
    columns = list(record())
    assert csv_mapping.check_columns(columns).unmapped == ()
    with pytest.raises(MappingError, match=r"segment.*neither mapped nor dropped"):
        csv_mapping.check_columns([*columns, "segment"])
    with pytest.raises(MappingError, match=r"lacks mapped column.*masked"):
        csv_mapping.check_columns([name for name in columns if name != "masked"])
    counting = mapping(BASE.replace('format = "json"', 'format = "csv"\nunmapped = "count"'))
    assert counting.check_columns([*columns, "segment"]).unmapped == ("segment",)
    # CSV column names are taken literally: a dot is part of the name.
    dotted = mapping(BASE.replace('format = "json"', 'format = "csv"').replace('"tok"', '"card.tok"'))
    assert event(dotted.apply({**record(tok=...), "card.tok": "tok_abcdefgh"})).card.token == "tok_abcdefgh"


def test_labels_from_one_or_several_flags() -> None:
    label = '\n[label]\nany = ["cb", "fraud"]\ntrue_values = ["Y", "1"]\nfalse_values = ["N", "0"]\nmissing = "legit"\n'
    labelled = mapping(BASE + label)
    assert labelled.label(record(cb="N", fraud="1")) == 1
    assert labelled.label(record(cb="Y")) == 1
    assert labelled.label(record()) == 0  # never disputed
    assert error(labelled.label(record(cb="perhaps"))).problem is Problem.NOT_A_BOOLEAN
    result = labelled.apply_labelled(record(fraud=1, cb=...))
    assert isinstance(result, LabelledEvent) and result.label == 1
    strict = mapping(BASE).with_label("is_fraud")
    assert strict.label(record(is_fraud=True)) == 1
    assert error(strict.label(record())).problem is Problem.MISSING
    assert isinstance(strict.apply(record(is_fraud=False)), TransactionEvent)  # the label field is accounted for


def test_a_card_number_in_free_text_is_refused_by_path_and_one_in_an_id_is_left_to_the_worker() -> None:
    with_name = mapping(BASE.replace('drop = ["name", "ssn"]', 'drop = ["ssn"]') + 'merchant.name = "name"\n')
    failed = error(with_name.apply(record(name="refund to 4111 1111 1111 1111")))
    assert (failed.path, failed.problem, failed.target) == ("name", Problem.PAN_DETECTED, "merchant.name")
    # An account keyed by its card number maps; the worker masks it wherever it writes it, and counts it.
    mapped = mapping().apply(record(acct="4111111111111111"))
    assert isinstance(mapped, TransactionEvent) and mapped.account_id == "4111111111111111"


def test_decode_bytes() -> None:
    assert isinstance(mapping().decode(json_bytes(record())), TransactionEvent)
    assert error(mapping().decode(b"{not json")).problem is Problem.MALFORMED
    assert error(mapping().decode(b"[1, 2]")).problem is Problem.NOT_AN_OBJECT
    assert error(mapping().decode(b"")).problem is Problem.MISSING
    assert error(mapping().decode(b"{}" + b" " * 100, max_bytes=50)).problem is Problem.MALFORMED
    assert error(parse_json_object(b"\xff\xfe{")).problem is Problem.MALFORMED
    assert error(parse_json_object(b"[" * 100_000 + b"]" * 100_000)).problem is Problem.MALFORMED


def json_bytes(value: dict[str, Any]) -> bytes:
    import json

    return json.dumps(value).encode()


# --- load-time validation: one line naming the key --------------------------------------------


@pytest.mark.parametrize(
    ("change", "key"),
    [
        (lambda t: "colour = 1\n" + t, "colour"),
        (lambda t: t.replace('format = "json"', 'format = "xml"'), "format"),
        (lambda t: t.replace('format = "json"', 'format = "json"\ndelimiter = "|"'), "delimiter"),
        (lambda t: t.replace("version = 1", "version = 2"), "version"),
        (lambda t: 'timezone = "Mars/Olympus"\n' + t, "timezone"),
        (lambda t: 'unmapped = "ignore"\n' + t, "unmapped"),
        (lambda t: t.replace('transaction_id = "id"\n', ""), "fields.transaction_id"),
        (
            lambda t: t.replace('account_id = "acct"', 'account_id = { path = "acct", value = "x" }'),
            "fields.account_id",
        ),
        (lambda t: t.replace('account_id = "acct"', 'account_id = { paht = "acct" }'), "fields.account_id.paht"),
        (
            lambda t: t.replace('account_id = "acct"', 'account_id = { path = "acct", optional = true }'),
            "fields.account_id.optional",
        ),
        (lambda t: t + 'colour = "c"\n', "fields.colour"),
        (lambda t: t + 'merchant.size = "s"\n', "fields.merchant.size"),
        (lambda t: t + 'features.Bad-Name = "s"\n', "fields.features.Bad-Name"),
        (lambda t: t.replace('convert = "epoch_seconds"', 'convert = "epoch_days"'), "fields.event_time.convert"),
        (lambda t: t.replace('convert = "minor_units" }', 'convert = "cents" }'), "fields.amount.convert"),
        (
            lambda t: t.replace('convert = "minor_units" }', 'convert = "minor_units", exponent = 9 }'),
            "fields.amount.exponent",
        ),
        (lambda t: t.replace('map = "categories"', 'map = "kategorien"'), "fields.merchant.mcc.map"),
        (lambda t: t.replace('E = "ecommerce"', 'E = "online"'), "fields.channel.map.E"),
        (
            lambda t: t.replace('"Grocery Stores" = "5411"', '"Grocery Stores" = "groceries"'),
            "fields.merchant.mcc.map.Grocery Stores",
        ),
        (lambda t: t.replace('fallback = "5999"', 'fallback = "59"'), "fields.merchant.mcc.fallback"),
        (
            lambda t: t.replace('entry_mode = { value = "chip" }', 'entry_mode = { value = "swipe" }'),
            "fields.entry_mode.value",
        ),
        (lambda t: t.replace("slice = [0, 6]", 'slice = ["a"]'), "fields.card.bin.slice"),
        (lambda t: t.replace('case = "upper" }', 'case = "title" }', 1), "fields.merchant.country.case"),
        (
            lambda t: t.replace('account_id = "acct"', 'account_id = { path = "acct", template = "acct-" }'),
            "fields.account_id.template",
        ),
        (lambda t: t.replace('drop = ["name", "ssn"]', 'drop = ["name", "acct"]'), "drop[1]"),
        (lambda t: t + '\n[label]\npath = "a"\nany = ["b"]\n', "label"),
        (lambda t: t + '\n[label]\npath = "a"\nmissing = "ignore"\n', "label.missing"),
        (lambda t: t.replace('true_values = ["Y"]', 'true_values = ["Y", "N"]'), "fields.card_present.true_values"),
    ],
)
def test_invalid_mappings_fail_at_load_naming_the_key(change: Any, key: str) -> None:
    with pytest.raises(MappingError) as raised:
        mapping(change(BASE))
    message = str(raised.value)
    assert message.startswith(f"m.toml: {key}:"), message
    assert "\n" not in message


def test_not_toml_and_missing_files(tmp_path: Path) -> None:
    with pytest.raises(MappingError, match="not valid TOML"):
        parse_mapping("fields = [", source="m.toml")
    with pytest.raises(MappingError, match="does not exist"):
        load_mapping(tmp_path / "nope.toml")
    path = tmp_path / "mapping.toml"
    path.write_text(BASE, encoding="utf-8")
    assert load_mapping(path).source_format == "json"


def test_the_mapping_reports_what_it_reads_and_drops() -> None:
    loaded = mapping()
    assert loaded.dropped_paths == ("name", "ssn")
    assert "masked" in loaded.source_paths and "name" not in loaded.source_paths


# --- errors never carry values --------------------------------------------------------------

SECRETS = {
    "name": "Zebulon Quackenbush",
    "ssn": "078-05-1120",
    "pan": "4111111111111111",
    "email": "zebulon.q@example.com",
    "phone": "+1-202-555-0147",
}


def _error_texts(failure: RecordError) -> str:
    return " | ".join((str(failure), repr(failure), failure.message, failure.path, failure.detail, str(failure.target)))


@pytest.mark.parametrize(
    "changes",
    [
        {"acct": SECRETS["name"]},  # a name where an identifier goes (spaces break the wire pattern)
        {"minor": SECRETS["ssn"]},  # an id in the amount
        {"ts": SECRETS["phone"]},  # a phone in the time
        {"cp": SECRETS["email"]},  # an e-mail in a flag
        {"chan": SECRETS["name"]},  # a name in a value-mapped field
        {"mctry": SECRETS["ssn"]},  # an id in a country
        {"tok": {"holder": SECRETS["name"]}},  # an object where a value goes
        {"masked": SECRETS["pan"]},  # a PAN in the masked-card column: bin/last4 are fine, the PAN is not echoed
        {SECRETS["pan"]: SECRETS["name"]},  # an unmapped field whose name is a PAN
        {"surprise": SECRETS["email"]},  # an unmapped field holding an e-mail
    ],
)
def test_no_error_text_contains_a_planted_value(changes: dict[str, Any]) -> None:
    result = mapping().apply(record(**changes))
    failure = error(result) if not isinstance(result, TransactionEvent) else None
    if failure is None:
        # The masked-card case maps (BIN and last four are allowed on the wire); nothing to leak.
        assert changes == {"masked": SECRETS["pan"]}
        return
    texts = _error_texts(failure)
    for secret in SECRETS.values():
        assert secret not in texts, (failure, secret)


COLUMNS = [
    "id",
    "ts",
    "acct",
    "minor",
    "ccy",
    "chan",
    "cp",
    "mid",
    "cat",
    "mctry",
    "tok",
    "masked",
    "ip",
    "v1h",
    "unknown_field",
]


@settings(max_examples=150, deadline=None)
@given(
    column=st.sampled_from(COLUMNS),
    value=st.builds(lambda head, tail: f"{head}QJ{tail}", *[st.text(alphabet="Q0123456789 -./:@", max_size=14)] * 2),
)
def test_arbitrary_values_never_reach_error_text(column: str, value: str) -> None:
    result = mapping().apply(record(**{column: value}))
    if isinstance(result, RecordError):
        assert value not in _error_texts(result)
        assert value.strip() not in _error_texts(result)


def test_offsets_from_fixed_zones_and_utc() -> None:
    fixed = mapping(
        'timezone = "UTC"\n'
        + BASE.replace('event_time = { path = "ts", convert = "epoch_seconds" }', 'event_time = "ts"')
    )
    moment = event(fixed.apply(record(ts="2026-01-05T08:00:00+05:30"))).event_time
    assert moment.utcoffset() == timezone(timedelta(hours=5, minutes=30)).utcoffset(None)
