"""A bank's own records -> ``TransactionEvent`` v1, declared in a TOML mapping file.

One mapping serves training, evaluation, the load generator and the worker: it says where each
wire field comes from in a source record (a JSON object, a CSV row or a Parquet row), how the
value is converted, and which source fields are deliberately not used. Example (pipe-separated
CSV with amounts in minor units, epoch-second times and category names instead of MCCs)::

    version = 1
    format = "csv"                  # json | csv | parquet
    delimiter = "|"                 # csv only
    timezone = "UTC"                # zone of naive local times; epoch times are expressed in it
    null_values = ["", "NULL"]      # source values that mean "absent" (default [""])
    unmapped = "error"              # a source field neither mapped nor dropped: error | count
    drop = ["customer_name", "street_address", "email", "phone", "national_id"]

    [label]                         # training/evaluation only; the worker ignores it
    any = ["chargeback", "confirmed_fraud"]   # fraud when any of them is true (or: path = "...")
    true_values = ["Y", "1"]
    false_values = ["N", "0"]
    missing = "legit"               # an absent label: error (default) | legit

    [maps.categories]
    "Grocery Stores" = "5411"

    [fields]
    transaction_id = "txn_ref"                              # shorthand for { path = "txn_ref" }
    event_time = { path = "booked_at", convert = "epoch_seconds" }
    account_id = { path = "cust_no", template = "acct-{}" }
    amount = { path = "amt_minor", convert = "minor_units" }   # exponent from the currency (JPY 0, BHD 3)
    currency = { path = "ccy", case = "upper" }
    channel = { path = "chan", map = { P = "pos", E = "ecommerce" } }
    card_present = { path = "cp", true_values = ["Y"], false_values = ["N"] }
    ip_country = { path = "ip_ctry", case = "upper", optional = true }
    merchant.mcc = { path = "category", map = "categories", fallback = "5999" }
    card.bin = { path = "card_masked", slice = [0, 6] }
    features.velocity_1h = { path = "n_txn_1h", optional = true }

Paths: in JSON and Parquet records a path is dotted (``customer.address.city``; a list element by
its index, ``items.0``); in CSV a path is the column name exactly as in the header. A field rule
is a path string or a table with one of ``path`` (read the source) or ``value`` (a constant), and:

* ``optional = true`` (optional wire fields only): an absent source leaves the field out;
  ``default = ...``: the value to use when the source is absent. Otherwise absence is an error.
* string steps, in this order: ``strip`` (default true), ``slice = [start]`` / ``[start, end]``
  (Python slice of the text), ``case = "upper" | "lower"``, ``zfill = N``; then ``map`` (a name
  under ``[maps]`` or an inline table; ``fallback`` for values not in it, else an error); then
  ``template = "prefix{}suffix"``.
* ``event_time``: ``convert = "iso8601"`` (default; also accepts datetime values from Parquet),
  ``"format"`` with ``format = "%d.%m.%Y %H:%M"`` (``strptime``), ``"epoch_seconds"``,
  ``"epoch_millis"`` or ``"epoch_micros"``; ``timezone`` overrides the file's zone. A naive time
  is local time in that zone; an epoch or an aware time keeps its instant and is expressed in it.
* ``amount``: ``convert = "decimal"`` (default) or ``"minor_units"`` (an integer count of the
  currency's minor unit; the ISO 4217 exponent of the mapped currency, or ``exponent = N``).
* ``card_present``: ``true_values`` / ``false_values`` (case-insensitive; defaults true/t/yes/y/1
  and false/f/no/n/0); booleans and 0/1 are accepted as they are.
* ``features.<name>``: a number, ``scale`` and ``offset`` (``value * scale + offset``), or
  ``convert = "bool"`` for a flag (1.0 / 0.0).

Every source field must be accounted for: mapped by a rule, read by the label, or listed in
``drop`` (personal data such as names, addresses, national ids, e-mails, phones; a dropped path
covers its whole subtree; dropped fields are never read). ``unmapped = "error"`` (the default)
rejects anything else: for CSV and Parquet when the file is opened (:meth:`EventMapping.check_columns`
on the header or schema, which also reports mapped columns the file lacks), for JSON per record (a
:class:`RecordError` naming the field). ``"count"`` lets such fields through for the caller to
count (:meth:`EventMapping.unmapped_fields`). The default is the strict one because a column that
appears upstream unannounced is as likely a new piece of personal data as a new signal.

Loading validates everything it can (:func:`load_mapping` raises :class:`MappingError` with one
line naming the TOML key); constants, defaults and value-map targets are checked against the wire
schema then. Applying (:meth:`EventMapping.apply`) never raises: it returns the event or a
:class:`RecordError` naming the failing source path, the wire field and the kind of problem, and
never the value (values may be names, national ids or card numbers). A mapped value that looks
like a full card number (PAN) in free text (``merchant.name``) is refused the way ``schemas.decode``
refuses one; one in an identifier is left to the worker, which masks it wherever it writes it.
"""

from __future__ import annotations

import json
import math
import re
import tomllib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from pathlib import Path
from types import MappingProxyType
from typing import Annotated, Any, Final, Literal, NoReturn
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, TypeAdapter, ValidationError

from schemas.decode import FREE_TEXT_FIELDS
from schemas.events import CardRef, Channel, EntryMode, Merchant, TransactionEvent
from schemas.iso import CURRENCY_CODES
from schemas.redaction import contains_pan, mask_pans

MAPPING_VERSION: Final = 1
SourceFormat = Literal["json", "csv", "parquet"]
SOURCE_FORMATS: Final = ("json", "csv", "parquet")

#: ISO 4217 minor-unit exponents that are not 2; codes without minor units (metals, SDR) are absent.
_EXPONENT_NOT_TWO: Final = {
    **dict.fromkeys(
        (
            "BIF",
            "CLP",
            "DJF",
            "GNF",
            "ISK",
            "JPY",
            "KMF",
            "KRW",
            "PYG",
            "RWF",
            "UGX",
            "UYI",
            "VND",
            "VUV",
            "XAF",
            "XOF",
            "XPF",
        ),
        0,
    ),
    **dict.fromkeys(("BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"), 3),
    **dict.fromkeys(("CLF", "UYW"), 4),
}
_NO_MINOR_UNIT: Final = frozenset({"XAD", "XAG", "XAU", "XBA", "XBB", "XBC", "XBD", "XDR", "XPD", "XPT", "XSU", "XUA"})
#: ISO 4217 currency -> number of decimal places of its minor unit (JPY 0, EUR 2, BHD 3).
CURRENCY_EXPONENTS: Final = MappingProxyType(
    {code: _EXPONENT_NOT_TWO.get(code, 2) for code in sorted(CURRENCY_CODES) if code not in _NO_MINOR_UNIT}
)

_TRUE_WORDS: Final = ("true", "t", "yes", "y", "1")
_FALSE_WORDS: Final = ("false", "f", "no", "n", "0")
_MAX_REPORTED_NAME = 64
# A PAN is 12+ digits, perhaps split by spaces or dashes: a text without 12 digits in a row once
# those are removed cannot hold one, and skips the (much slower) Luhn scan.
_TWELVE_DIGITS = re.compile(r"[0-9]{12}")
_FEATURE_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


class MappingError(ValueError):
    """The mapping file is missing, unreadable or invalid. The message is one line naming the key."""


class Problem(StrEnum):
    """Why a source record could not be mapped."""

    NOT_AN_OBJECT = "not_an_object"  # the record is not a JSON object
    MALFORMED = "malformed"  # not JSON / not UTF-8 / too deep (raw bytes only)
    MISSING = "missing"  # a required source field is absent or empty
    WRONG_TYPE = "wrong_type"  # e.g. an object or list where a single value is expected
    NOT_A_NUMBER = "not_a_number"
    NOT_A_TIME = "not_a_time"
    NOT_A_BOOLEAN = "not_a_boolean"
    UNMAPPED_VALUE = "unmapped_value"  # a value the field's value map does not list
    UNKNOWN_CURRENCY = "unknown_currency"  # minor units of a currency without a known exponent
    INVALID = "invalid"  # the mapped value breaks the wire schema (e.g. not an ISO country code)
    UNMAPPED_FIELD = "unmapped_field"  # a source field that is neither mapped nor dropped
    PAN_DETECTED = "pan_detected"  # a mapped value looks like a full card number


@dataclass(frozen=True, slots=True)
class RecordError:
    """Why one source record did not become an event: where, into which wire field, and what kind.

    ``path`` is the source path (``merchant.category``, a CSV column) or ``<record>``; ``target``
    the wire field (``merchant.mcc``) when there is one; ``detail`` an input-free explanation. No
    attribute ever holds a source value.
    """

    path: str
    problem: Problem
    target: str | None = None
    detail: str = ""

    @property
    def message(self) -> str:
        into = f" (-> {self.target})" if self.target else ""
        detail = f": {self.detail}" if self.detail else ""
        return f"{self.path}{into}: {self.problem.value}{detail}"

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True, slots=True)
class LabelledEvent:
    """A mapped event and its label (1 fraud, 0 legitimate)."""

    event: TransactionEvent
    label: int


class _Fail(Exception):
    """Internal: one rule failed; carries the problem and an input-free detail."""

    def __init__(self, problem: Problem, detail: str = "") -> None:
        super().__init__(problem.value)
        self.problem = problem
        self.detail = detail


_ABSENT: Final = object()
_LEAF: Final[Mapping[str, Any]] = MappingProxyType({})  # an accounted path: the key and everything below it

# Wire fields, what kind of value each takes, and whether it may be left out.
_KINDS: Final = {
    "transaction_id": "text",
    "event_time": "time",
    "account_id": "text",
    "amount": "amount",
    "currency": "code",
    "merchant.merchant_id": "text",
    "merchant.mcc": "text",
    "merchant.country": "code",
    "merchant.name": "text",
    "channel": "channel",
    "entry_mode": "entry_mode",
    "card_present": "bool",
    "card.token": "text",
    "card.bin": "text",
    "card.last4": "text",
    "device_id": "text",
    "ip_country": "code",
}
_OPTIONAL_TARGETS: Final = frozenset({"merchant.name", "device_id", "ip_country"})
# Evaluation order: the currency before the amount (minor units need its exponent).
_ORDER: Final = ("currency", *(target for target in _KINDS if target != "currency"))
_NESTED: Final = ("merchant", "card", "features")
_STRING_STEPS: Final = ("strip", "slice", "case", "zfill", "map", "fallback", "template")
_ALLOWED_KEYS: Final = {
    "text": {"path", "value", "default", "optional", *_STRING_STEPS},
    "code": {"path", "value", "default", "optional", *_STRING_STEPS},
    "channel": {"path", "value", "default", *_STRING_STEPS},
    "entry_mode": {"path", "value", "default", *_STRING_STEPS},
    "bool": {"path", "value", "default", "true_values", "false_values", *_STRING_STEPS},
    "time": {"path", "value", "default", "convert", "format", "timezone", "strip"},
    "amount": {"path", "value", "default", "convert", "exponent", "strip"},
    "number": {
        "path",
        "value",
        "default",
        "optional",
        "convert",
        "scale",
        "offset",
        "true_values",
        "false_values",
        *_STRING_STEPS,
    },
}
_TOP_KEYS: Final = {
    "version",
    "format",
    "delimiter",
    "quote",
    "encoding",
    "timezone",
    "null_values",
    "unmapped",
    "drop",
    "label",
    "maps",
    "fields",
}
_LABEL_KEYS: Final = {"path", "any", "true_values", "false_values", "missing"}
_TIME_CONVERSIONS: Final = ("iso8601", "format", "epoch_seconds", "epoch_millis", "epoch_micros")
_EPOCH_DIVISOR: Final = {"epoch_seconds": 1, "epoch_millis": 1_000, "epoch_micros": 1_000_000}
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


def _why(exc: _Fail) -> str:
    """A load-time reason: the problem, with its detail in brackets."""
    return f"{exc.problem.value} ({exc.detail})" if exc.detail else exc.problem.value


def _safe_name(name: object) -> str:
    """A source field name fit for an error message: bounded, and PAN-masked (keys are data too)."""
    return mask_pans(str(name)[:_MAX_REPORTED_NAME])


class _Context:
    """Values of one record that later rules depend on (the currency, for minor units)."""

    __slots__ = ("currency",)

    def __init__(self) -> None:
        self.currency: str | None = None


@dataclass(frozen=True, slots=True)
class _Rule:
    """One wire field: where its value comes from and how it is converted."""

    target: str
    container: str | None  # "merchant", "card", "features" or None for top-level fields
    key: str
    path: tuple[str, ...] | None  # None: a constant
    path_text: str
    constant: Any
    default: Any
    optional: bool
    convert: Callable[[Any, _Context], Any]
    checks_pan: bool
    # A one-segment path (every CSV column, most JSON fields): read with one dict look-up.
    key0: str | None


def _lookup(record: Mapping[str, Any], path: tuple[str, ...]) -> Any:
    value: Any = record
    for segment in path:
        if value is None:
            return _ABSENT  # a null parent: the field is absent
        if value.__class__ is dict or isinstance(value, Mapping):
            value = value.get(segment, _ABSENT)
        elif isinstance(value, list) and segment.isdigit():
            index = int(segment)
            value = value[index] if index < len(value) else _ABSENT
        else:
            raise _Fail(Problem.WRONG_TYPE, "a parent of this path is not an object")
        if value is _ABSENT:
            return _ABSENT
    return value


@dataclass(frozen=True, slots=True)
class _Label:
    paths: tuple[tuple[str, ...], ...]
    path_texts: tuple[str, ...]
    true_words: frozenset[str]
    false_words: frozenset[str]
    missing_is_legit: bool

    def extract(self, record: Mapping[str, Any], nulls: frozenset[str]) -> int:
        """1 when any label field is true, 0 when all present ones are false; raises ``_Fail``."""
        seen = False
        for path in self.paths:
            raw = _lookup(record, path)
            if raw is None or raw is _ABSENT or (isinstance(raw, str) and raw.strip() in nulls):
                continue
            seen = True
            if _to_bool(raw, self.true_words, self.false_words):
                return 1
        if not seen and not self.missing_is_legit:
            raise _Fail(Problem.MISSING, "no label")
        return 0


def _to_bool(raw: Any, true_words: frozenset[str], false_words: frozenset[str]) -> bool:
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, int | float) and raw in (0, 1):
        return bool(raw)
    if isinstance(raw, int | float | str):
        word = _text(raw).strip().lower()
        if word in true_words:
            return True
        if word in false_words:
            return False
        raise _Fail(Problem.NOT_A_BOOLEAN, "not one of the configured true/false spellings")
    raise _Fail(Problem.WRONG_TYPE, f"expected a flag, got {type(raw).__name__}")


def _text(raw: Any) -> str:
    """A scalar as text: integral floats without ``.0`` (an MCC read as 5411.0 is ``5411``)."""
    if raw.__class__ is str or isinstance(raw, str):
        return raw
    if isinstance(raw, bool):
        return "true" if raw else "false"
    if isinstance(raw, float) and raw.is_integer():
        return str(int(raw))
    if isinstance(raw, int | float | Decimal):
        return str(raw)
    raise _Fail(Problem.WRONG_TYPE, f"expected a single value, got {type(raw).__name__}")


class _Loader:
    """Parses and validates the TOML document; every error names its key."""

    def __init__(self, data: Mapping[str, Any], source: str) -> None:
        self.data = data
        self.source = source

    def fail(self, key: str, problem: str) -> NoReturn:
        raise MappingError(f"{self.source}: {key}: {problem}")

    def table(self, value: Any, key: str) -> Mapping[str, Any]:
        if not isinstance(value, Mapping):
            self.fail(key, f"must be a table, got {type(value).__name__}")
        return value

    def strings(self, value: Any, key: str) -> tuple[str, ...]:
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            self.fail(key, "must be a list of strings")
        return tuple(value)

    def unknown_keys(self, table: Mapping[str, Any], allowed: Iterable[str], key: str) -> None:
        allowed = set(allowed)
        extra = sorted(set(table) - allowed)
        if extra:
            where = f"{key}." if key else ""
            self.fail(f"{where}{extra[0]}", f"unknown key (allowed here: {', '.join(sorted(allowed))})")

    def zone(self, value: Any, key: str) -> tzinfo:
        if not isinstance(value, str):
            self.fail(key, "must be a time zone name such as 'UTC' or 'Europe/Berlin'")
        if value.upper() == "UTC":
            return UTC
        try:
            return ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            self.fail(key, f"unknown time zone {value!r} (an IANA name such as 'Europe/Berlin')")


def parse_mapping(text: str, *, source: str = "<mapping>") -> EventMapping:
    """Parse and validate a mapping from TOML text; ``MappingError`` names the first bad key."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise MappingError(f"{source}: not valid TOML: {exc}") from None
    return _build(_Loader(data, source))


def load_mapping(path: Path | str) -> EventMapping:
    """Read and validate a mapping file; ``MappingError`` with one line naming the TOML key."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise MappingError(f"{path}: mapping file does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise MappingError(f"{path}: cannot read the mapping file ({exc.__class__.__name__})") from None
    return parse_mapping(text, source=str(path))


def _build(loader: _Loader) -> EventMapping:
    data = loader.data
    loader.unknown_keys(data, _TOP_KEYS, "")
    version = data.get("version", MAPPING_VERSION)
    if version != MAPPING_VERSION:
        loader.fail("version", f"unsupported mapping version {version!r} (supported: {MAPPING_VERSION})")
    source_format = data.get("format", "json")
    if source_format not in SOURCE_FORMATS:
        loader.fail("format", f"must be one of {', '.join(SOURCE_FORMATS)}")
    delimiter = data.get("delimiter", ",")
    quote = data.get("quote", '"')
    for key, value in (("delimiter", delimiter), ("quote", quote)):
        if not isinstance(value, str) or len(value) != 1 or value in "\r\n":
            loader.fail(key, "must be a single character")
        if key in data and source_format != "csv":
            loader.fail(key, "only applies to format = 'csv'")
    encoding = data.get("encoding", "utf-8")
    if not isinstance(encoding, str):
        loader.fail("encoding", "must be a string such as 'utf-8'")
    try:
        "".encode(encoding)
    except LookupError:
        loader.fail("encoding", f"unknown encoding {encoding!r}")
    zone = loader.zone(data.get("timezone", "UTC"), "timezone")
    nulls = frozenset(item.strip() for item in loader.strings(data.get("null_values", [""]), "null_values"))
    unmapped = data.get("unmapped", "error")
    if unmapped not in ("error", "count"):
        loader.fail("unmapped", "must be 'error' or 'count'")
    split = (lambda text: (text,)) if source_format == "csv" else (lambda text: tuple(text.split(".")))
    maps = _maps(loader, loader.table(data.get("maps", {}), "maps"))
    fields = loader.table(data.get("fields"), "fields") if "fields" in data else loader.fail("fields", "missing")
    rules = _rules(loader, fields, maps, zone, split)
    label = _label(loader, data["label"], split) if "label" in data else None

    drop: list[tuple[str, ...]] = []
    for index, text in enumerate(loader.strings(data.get("drop", []), "drop")):
        if not text or any(not part for part in split(text)):
            loader.fail(f"drop[{index}]", "empty path")
        drop.append(split(text))
    used = [(rule.path, f"fields.{rule.target}.path") for rule in rules if rule.path is not None]
    if label is not None:
        used.extend((path, "label") for path in label.paths)
    for index, dropped in enumerate(drop):
        for path, key in used:
            if path[: len(dropped)] == dropped or dropped[: len(path)] == path:
                loader.fail(
                    f"drop[{index}]", f"{'.'.join(dropped)!r} is also read by {key}; a field is either read or dropped"
                )
    tree = _accounted_tree([path for path, _ in used] + drop)
    return EventMapping(
        source_format=source_format,
        delimiter=delimiter,
        quote=quote,
        encoding=encoding,
        timezone=zone,
        null_values=nulls,
        unmapped=unmapped,
        rules=tuple(rules),
        label_rule=label,
        dropped=tuple(drop),
        accounted=tree,
        split_path=split,
    )


def _maps(loader: _Loader, tables: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    maps: dict[str, dict[str, Any]] = {}
    for name, table in tables.items():
        table = loader.table(table, f"maps.{name}")
        for key, value in table.items():
            if not isinstance(value, str | int | float | bool):
                loader.fail(f"maps.{name}.{key}", "map values must be strings, numbers or booleans")
        maps[name] = dict(table)
    return maps


def _rules(
    loader: _Loader,
    fields: Mapping[str, Any],
    maps: Mapping[str, dict[str, Any]],
    zone: tzinfo,
    split: Callable[[str], tuple[str, ...]],
) -> list[_Rule]:
    declared: dict[str, Any] = {}
    for key, value in fields.items():
        if key in _NESTED:
            for sub, spec in loader.table(value, f"fields.{key}").items():
                target = f"{key}.{sub}"
                if key == "features":
                    if not _FEATURE_NAME.match(sub) or len(sub) > 64:
                        loader.fail(f"fields.{target}", "feature names are lower-case letters, digits and '_'")
                elif target not in _KINDS:
                    loader.fail(f"fields.{target}", f"not a field of TransactionEvent.{key}")
                declared[target] = spec
        elif key in _KINDS:
            declared[key] = value
        else:
            loader.fail(f"fields.{key}", "not a TransactionEvent field")
    missing = [target for target in _KINDS if target not in _OPTIONAL_TARGETS and target not in declared]
    if missing:
        loader.fail(f"fields.{missing[0]}", "required: every mandatory TransactionEvent field needs a rule")
    ordered = [target for target in _ORDER if target in declared]
    ordered += sorted(target for target in declared if target.startswith("features."))
    return [_rule(loader, target, declared[target], maps, zone, split) for target in ordered]


def _rule(
    loader: _Loader,
    target: str,
    spec: Any,
    maps: Mapping[str, dict[str, Any]],
    zone: tzinfo,
    split: Callable[[str], tuple[str, ...]],
) -> _Rule:
    key = f"fields.{target}"
    if isinstance(spec, str):
        spec = {"path": spec}
    spec = loader.table(spec, key)
    kind = "number" if target.startswith("features.") else _KINDS[target]
    loader.unknown_keys(spec, _ALLOWED_KEYS[kind], key)
    if ("path" in spec) == ("value" in spec):
        loader.fail(key, "give exactly one of 'path' (read the source) or 'value' (a constant)")
    # Upstream features are often absent: a feature rule leaves the feature out unless told otherwise.
    optional = spec.get("optional", kind == "number")
    if not isinstance(optional, bool):
        loader.fail(f"{key}.optional", "must be true or false")
    container, _, name = target.rpartition(".")
    finish = _finisher(loader, kind, target, spec, zone)
    steps = _string_steps(loader, key, spec, maps, finish) if kind not in ("time", "amount") else None
    if steps is not None and kind in ("text", "code", "channel", "entry_mode"):
        convert: Callable[[Any, _Context], Any] = steps
    elif steps is not None and kind in ("bool", "number") and ("map" in spec or _has_string_steps(spec)):
        convert = steps
    else:
        convert = _direct(loader, kind, key, spec, finish)

    constant_check = _wire_checked(target, lambda value: convert(value, _Context()))

    def constant_of(value: Any, what: str) -> Any:
        try:
            return constant_check(value)
        except _Fail as exc:
            loader.fail(f"{key}.{what}", f"not a valid value for {target}: {_why(exc)}")

    path: tuple[str, ...] | None = None
    path_text = "<constant>"
    constant: Any = None
    if "path" in spec:
        if not isinstance(spec["path"], str) or not spec["path"] or any(not p for p in split(spec["path"])):
            loader.fail(f"{key}.path", "must be a non-empty source path")
        path, path_text = split(spec["path"]), spec["path"]
    else:
        if target == "amount" and spec.get("convert") == "minor_units":
            loader.fail(f"{key}.value", "a constant amount is given in major units (convert = 'decimal')")
        constant = constant_of(spec["value"], "value")
    default = constant_of(spec["default"], "default") if "default" in spec else _ABSENT
    if optional and target not in _OPTIONAL_TARGETS and kind != "number":
        loader.fail(f"{key}.optional", f"{target} is required on the wire and cannot be optional (give a default)")
    return _Rule(
        target=target,
        container=container or None,
        key=name,
        path=path,
        path_text=path_text,
        constant=constant,
        default=default,
        optional=optional,
        convert=convert,
        checks_pan=kind == "text",
        key0=path[0] if path is not None and len(path) == 1 else None,
    )


def _wire_adapter(target: str) -> TypeAdapter[Any] | None:
    """A validator of the wire field ``target`` alone, for checking constants and map targets at load."""
    container, _, name = target.rpartition(".")
    models: dict[str, type[BaseModel]] = {"": TransactionEvent, "merchant": Merchant, "card": CardRef}
    model = models.get(container)
    if model is None or name not in model.model_fields:
        return None
    info = model.model_fields[name]
    annotation: Any = Annotated[(info.annotation, *info.metadata)] if info.metadata else info.annotation
    return TypeAdapter(annotation)


def _wire_checked(target: str, finish: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """``finish`` followed by the wire field's own validation (load time only: records are checked
    by the whole model)."""
    adapter = _wire_adapter(target)
    if adapter is None:
        return finish

    def checked(value: Any) -> Any:
        result = finish(value)
        try:
            adapter.validate_python(result)
        except ValidationError as exc:
            detail = exc.errors(include_url=False, include_input=False, include_context=False)[0]["msg"]
            raise _Fail(Problem.INVALID, mask_pans(str(detail))) from None
        return result

    return checked


def _has_string_steps(spec: Mapping[str, Any]) -> bool:
    return any(step in spec for step in ("slice", "case", "zfill", "template"))


def _string_steps(
    loader: _Loader,
    key: str,
    spec: Mapping[str, Any],
    maps: Mapping[str, dict[str, Any]],
    finish: Callable[[Any], Any],
) -> Callable[[Any, _Context], Any]:
    strip = spec.get("strip", True)
    if not isinstance(strip, bool):
        loader.fail(f"{key}.strip", "must be true or false")
    cut: slice | None = None
    if "slice" in spec:
        bounds = spec["slice"]
        if not isinstance(bounds, list) or not 1 <= len(bounds) <= 2 or not all(type(b) is int for b in bounds):
            loader.fail(f"{key}.slice", "must be [start] or [start, end] (integers, Python slice semantics)")
        cut = slice(*bounds) if len(bounds) == 2 else slice(bounds[0], None)
    case = spec.get("case")
    if case not in (None, "upper", "lower"):
        loader.fail(f"{key}.case", "must be 'upper' or 'lower'")
    width = spec.get("zfill")
    if width is not None and (type(width) is not int or not 1 <= width <= 64):
        loader.fail(f"{key}.zfill", "must be a width between 1 and 64")
    table: dict[str, Any] | None = None
    if "map" in spec:
        reference = spec["map"]
        if isinstance(reference, str):
            if reference not in maps:
                loader.fail(f"{key}.map", f"no table [maps.{reference}] in this file")
            table = maps[reference]
        elif isinstance(reference, Mapping):
            for source, value in reference.items():
                if not isinstance(value, str | int | float | bool):
                    loader.fail(f"{key}.map.{source}", "map values must be strings, numbers or booleans")
            table = dict(reference)
        else:
            loader.fail(f"{key}.map", "must be the name of a [maps] table or an inline table")
    fallback: Any = _ABSENT
    if "fallback" in spec:
        if table is None:
            loader.fail(f"{key}.fallback", "only applies together with 'map'")
        fallback = spec["fallback"]
    prefix = suffix = ""
    templated = "template" in spec
    if templated:
        template = spec["template"]
        if (
            not isinstance(template, str)
            or template.count("{}") != 1
            or "{" in template.replace("{}", "", 1)
            or ("}" in template.replace("{}", "", 1))
        ):
            loader.fail(f"{key}.template", "must contain '{}' exactly once, e.g. 'acct-{}'")
        prefix, _, suffix = template.partition("{}")
    mapped: dict[str, Any] | None = None
    check = _wire_checked(key.removeprefix("fields."), finish)
    if table is not None:
        # Map targets are checked now, so a typo in the table fails at load, not on the first record.
        mapped = {}
        for source, value in table.items():
            try:
                mapped[source] = check(value) if not templated else value
            except _Fail as exc:
                loader.fail(f"{key}.map.{source}", f"maps to an invalid value: {_why(exc)}")
        if fallback is not _ABSENT:
            try:
                fallback = check(fallback) if not templated else fallback
            except _Fail as exc:
                loader.fail(f"{key}.fallback", f"not a valid value: {_why(exc)}")

    if finish is _text_finish and table is None and not templated and cut is None and width is None:
        # The common case (a column copied as it is, perhaps upper-cased): no generic pipeline.
        if case == "upper":
            return lambda raw, context: (raw if raw.__class__ is str else _text(raw)).strip().upper()
        if case == "lower":
            return lambda raw, context: (raw if raw.__class__ is str else _text(raw)).strip().lower()
        if strip:
            return lambda raw, context: (raw if raw.__class__ is str else _text(raw)).strip()
        return lambda raw, context: _text(raw)

    def convert(raw: Any, context: _Context) -> Any:
        text = _text(raw)
        if strip:
            text = text.strip()
        if cut is not None:
            text = text[cut]
        if case == "upper":
            text = text.upper()
        elif case == "lower":
            text = text.lower()
        if width is not None:
            text = text.zfill(width)
        value: Any = text
        if mapped is not None:
            value = mapped.get(text, fallback)
            if value is _ABSENT:
                raise _Fail(Problem.UNMAPPED_VALUE, "not in the field's value map")
            if not templated:
                return value
        if templated:
            value = f"{prefix}{_text(value)}{suffix}"
        return finish(value)

    return convert


def _finisher(loader: _Loader, kind: str, target: str, spec: Mapping[str, Any], zone: tzinfo) -> Callable[[Any], Any]:
    """The last step of a rule: the value in the type the wire field takes."""
    if kind == "channel":
        return _enum_finisher(Channel)
    if kind == "entry_mode":
        return _enum_finisher(EntryMode)
    if kind in ("bool", "number"):
        true_words = frozenset(
            w.lower()
            for w in loader.strings(spec.get("true_values", list(_TRUE_WORDS)), f"fields.{target}.true_values")
        )
        false_words = frozenset(
            w.lower()
            for w in loader.strings(spec.get("false_values", list(_FALSE_WORDS)), f"fields.{target}.false_values")
        )
        if true_words & false_words:
            loader.fail(f"fields.{target}.true_values", "a spelling cannot be both true and false")
        if kind == "bool":
            return lambda value: _to_bool(value, true_words, false_words)
        scale = spec.get("scale", 1.0)
        offset = spec.get("offset", 0.0)
        for name, number in (("scale", scale), ("offset", offset)):
            if type(number) not in (int, float) or not math.isfinite(number):
                loader.fail(f"fields.{target}.{name}", "must be a finite number")
        as_flag = spec.get("convert", "number")
        if as_flag not in ("number", "bool"):
            loader.fail(f"fields.{target}.convert", "must be 'number' or 'bool'")

        if as_flag == "number" and scale == 1.0 and offset == 0.0:
            return _to_float

        def number(value: Any) -> float:
            if as_flag == "bool":
                result = 1.0 if _to_bool(value, true_words, false_words) else 0.0
            else:
                result = _to_float(value)
            result = result * scale + offset
            if not math.isfinite(result):
                raise _Fail(Problem.NOT_A_NUMBER, "not finite after scaling")
            return result

        return number

    return _text_finish


def _text_finish(value: Any) -> str:
    return _text(value)


def _enum_finisher(enum: type[Channel] | type[EntryMode]) -> Callable[[Any], Any]:
    choices = ", ".join(member.value for member in enum)

    def finish(value: Any) -> Any:
        try:
            return enum(_text(value))
        except ValueError:
            raise _Fail(Problem.INVALID, f"not one of {choices}") from None

    return finish


def _to_float(raw: Any, context: _Context | None = None) -> float:
    """A finite float from a number or numeric text (``context`` unused: the converter signature)."""
    if raw.__class__ is float:
        if not math.isfinite(raw):
            raise _Fail(Problem.NOT_A_NUMBER, "not finite")
        return raw
    if isinstance(raw, bool):
        return 1.0 if raw else 0.0
    if isinstance(raw, int | float | Decimal):
        value = float(raw)
    elif isinstance(raw, str):
        try:
            value = float(raw)
        except ValueError:
            raise _Fail(Problem.NOT_A_NUMBER) from None
    else:
        raise _Fail(Problem.WRONG_TYPE, f"expected a number, got {type(raw).__name__}")
    if not math.isfinite(value):
        raise _Fail(Problem.NOT_A_NUMBER, "not finite")
    return value


def _direct(
    loader: _Loader, kind: str, key: str, spec: Mapping[str, Any], finish: Callable[[Any], Any]
) -> Callable[[Any, _Context], Any]:
    """Rules without string steps: times, amounts, plain numbers and flags."""
    if kind == "time":
        return _time_converter(loader, key, spec)
    if kind == "amount":
        return _amount_converter(loader, key, spec)
    if finish is _to_float:
        return _to_float
    return lambda raw, context: finish(raw)


def _time_converter(loader: _Loader, key: str, spec: Mapping[str, Any]) -> Callable[[Any, _Context], Any]:
    convert = spec.get("convert", "format" if "format" in spec else "iso8601")
    if convert not in _TIME_CONVERSIONS:
        loader.fail(f"{key}.convert", f"must be one of {', '.join(_TIME_CONVERSIONS)}")
    if (convert == "format") != ("format" in spec):
        loader.fail(f"{key}.format", "give format = '...' (strptime) exactly when convert = 'format'")
    pattern = spec.get("format", "")
    if not isinstance(pattern, str):
        loader.fail(f"{key}.format", "must be a strptime pattern such as '%Y-%m-%d %H:%M:%S'")
    zone = (
        loader.zone(spec["timezone"], f"{key}.timezone")
        if "timezone" in spec
        else loader.zone(loader.data.get("timezone", "UTC"), "timezone")
    )

    def localise(moment: datetime) -> datetime:
        return moment.replace(tzinfo=zone) if moment.tzinfo is None else moment

    if convert in _EPOCH_DIVISOR:
        divisor = _EPOCH_DIVISOR[convert]

        def from_epoch(raw: Any, context: _Context) -> datetime:
            if isinstance(raw, bool):
                raise _Fail(Problem.WRONG_TYPE, "expected an epoch number, got bool")
            if isinstance(raw, str):
                try:
                    number: int | float = int(raw.strip())
                except ValueError:
                    try:
                        number = _to_float(raw)
                    except _Fail:
                        raise _Fail(Problem.NOT_A_TIME, "not an epoch number") from None
            elif isinstance(raw, int | float):
                number = raw
            else:
                raise _Fail(Problem.WRONG_TYPE, f"expected an epoch number, got {type(raw).__name__}")
            try:
                if isinstance(number, int):
                    seconds, rest = divmod(number, divisor)
                    moment = _EPOCH + timedelta(seconds=seconds, microseconds=rest * (1_000_000 // divisor))
                else:
                    if not math.isfinite(number):
                        raise _Fail(Problem.NOT_A_TIME, "not finite")
                    moment = _EPOCH + timedelta(seconds=number / divisor)
                return moment.astimezone(zone)
            except (OverflowError, ValueError):
                raise _Fail(Problem.NOT_A_TIME, "out of range (check the epoch unit)") from None

        return from_epoch

    def from_text(raw: Any, context: _Context) -> datetime:
        if isinstance(raw, datetime):
            return localise(raw)
        if not isinstance(raw, str):
            raise _Fail(Problem.WRONG_TYPE, f"expected a date-time text, got {type(raw).__name__}")
        text = raw.strip()
        try:
            moment = datetime.strptime(text, pattern) if convert == "format" else datetime.fromisoformat(text)
        except ValueError:
            expected = "the configured format" if convert == "format" else "ISO 8601"
            raise _Fail(Problem.NOT_A_TIME, f"not {expected}") from None
        return localise(moment)

    return from_text


def _amount_converter(loader: _Loader, key: str, spec: Mapping[str, Any]) -> Callable[[Any, _Context], Any]:
    convert = spec.get("convert", "decimal")
    if convert not in ("decimal", "minor_units"):
        loader.fail(f"{key}.convert", "must be 'decimal' or 'minor_units'")
    exponent = spec.get("exponent")
    if exponent is not None:
        if convert != "minor_units":
            loader.fail(f"{key}.exponent", "only applies to convert = 'minor_units'")
        if type(exponent) is not int or not 0 <= exponent <= 6:
            loader.fail(f"{key}.exponent", "must be an integer between 0 and 6")

    def decimal(raw: Any, context: _Context) -> Decimal:
        if isinstance(raw, bool):
            raise _Fail(Problem.WRONG_TYPE, "expected an amount, got bool")
        if isinstance(raw, Decimal):
            value = raw
        elif isinstance(raw, int):
            value = Decimal(raw)
        elif isinstance(raw, float):
            value = Decimal(repr(raw)) if math.isfinite(raw) else Decimal("NaN")
        elif isinstance(raw, str):
            try:
                value = Decimal(raw.strip())
            except InvalidOperation:
                raise _Fail(Problem.NOT_A_NUMBER) from None
        else:
            raise _Fail(Problem.WRONG_TYPE, f"expected an amount, got {type(raw).__name__}")
        if not value.is_finite():
            raise _Fail(Problem.NOT_A_NUMBER, "not finite")
        return value

    if convert == "decimal":
        return decimal

    def minor_units(raw: Any, context: _Context) -> Decimal:
        units = decimal(raw, context)
        if units != units.to_integral_value():
            raise _Fail(Problem.NOT_A_NUMBER, "minor units must be a whole number")
        places = exponent
        if places is None:
            places = CURRENCY_EXPONENTS.get(context.currency or "")
            if places is None:
                raise _Fail(Problem.UNKNOWN_CURRENCY, "no ISO 4217 minor unit for the mapped currency")
        return Decimal(int(units)).scaleb(-places)

    return minor_units


def _label(loader: _Loader, spec: Any, split: Callable[[str], tuple[str, ...]]) -> _Label:
    if isinstance(spec, str):
        spec = {"path": spec}
    spec = loader.table(spec, "label")
    loader.unknown_keys(spec, _LABEL_KEYS, "label")
    if ("path" in spec) == ("any" in spec):
        loader.fail("label", "give exactly one of 'path' or 'any' (a list of flags, fraud when any is true)")
    texts = (spec["path"],) if "path" in spec else loader.strings(spec["any"], "label.any")
    if not texts or any(not isinstance(text, str) or not text for text in texts):
        loader.fail("label.path" if "path" in spec else "label.any", "must name source fields")
    true_words = frozenset(
        w.lower() for w in loader.strings(spec.get("true_values", list(_TRUE_WORDS)), "label.true_values")
    )
    false_words = frozenset(
        w.lower() for w in loader.strings(spec.get("false_values", list(_FALSE_WORDS)), "label.false_values")
    )
    if true_words & false_words:
        loader.fail("label.true_values", "a spelling cannot be both true and false")
    missing = spec.get("missing", "error")
    if missing not in ("error", "legit"):
        loader.fail("label.missing", "must be 'error' or 'legit'")
    return _Label(
        paths=tuple(split(text) for text in texts),
        path_texts=tuple(texts),
        true_words=true_words,
        false_words=false_words,
        missing_is_legit=missing == "legit",
    )


class _Node(dict[str, Any]):
    """A level of the accounted-for tree: key -> ``_LEAF`` (the key and all below it) or a child
    ``_Node``; ``branches`` lists the children, so a record walk visits only nested levels."""

    __slots__ = ("branches",)

    def __init__(self) -> None:
        super().__init__()
        self.branches: tuple[tuple[str, _Node], ...] = ()


def _accounted_tree(paths: Iterable[tuple[str, ...]]) -> _Node:
    root = _Node()
    for path in paths:
        node = root
        for segment in path[:-1]:
            child = node.get(segment)
            if child is _LEAF:
                break
            if child is None:
                child = node[segment] = _Node()
            node = child
        else:
            node[path[-1]] = _LEAF

    def index(node: _Node) -> None:
        node.branches = tuple((key, child) for key, child in node.items() if child is not _LEAF)
        for _, child in node.branches:
            index(child)

    index(root)
    return root


def default_label(path: str, source_format: SourceFormat = "json") -> _Label:
    """The label rule used when a mapping has no ``[label]``: one field with the usual spellings."""
    split = (path,) if source_format == "csv" else tuple(path.split("."))
    return _Label(
        paths=(split,),
        path_texts=(path,),
        true_words=frozenset(_TRUE_WORDS),
        false_words=frozenset(_FALSE_WORDS),
        missing_is_legit=False,
    )


@dataclass(frozen=True)
class ColumnCheck:
    """What :meth:`EventMapping.check_columns` found: source columns nobody accounted for."""

    unmapped: tuple[str, ...]


class EventMapping:
    """A validated mapping. Immutable and thread-safe; build it with :func:`load_mapping`.

    Per-record cost (``benchmarks/mapping_cost.py``, the example mapping, shared 2-core machine):
    50-60 µs for a CSV row, 60-70 µs for a nested JSON object, 75-95 µs from Kafka bytes (JSON
    parse included) — less than ``schemas.decode`` of wire JSON took in the same runs (~105 µs).
    """

    def __init__(
        self,
        *,
        source_format: SourceFormat,
        delimiter: str,
        quote: str,
        encoding: str,
        timezone: tzinfo,
        null_values: frozenset[str],
        unmapped: Literal["error", "count"],
        rules: tuple[_Rule, ...],
        label_rule: _Label | None,
        dropped: tuple[tuple[str, ...], ...],
        accounted: _Node,
        split_path: Callable[[str], tuple[str, ...]],
    ) -> None:
        self.source_format: SourceFormat = source_format
        self.delimiter = delimiter
        self.quote = quote
        self.encoding = encoding
        self.timezone = timezone
        self.null_values = null_values
        self.unmapped: Literal["error", "count"] = unmapped
        self._rules = rules
        self._label = label_rule
        self._dropped = dropped
        self._accounted = accounted
        self._split = split_path
        self._path_of = {rule.target: rule.path_text for rule in rules}
        slots = {None: 0, "merchant": 1, "card": 2, "features": 3}
        # As in ``schemas.decode``: a card number in free text is refused; one in an identifier is
        # the worker's to mask (and count) while the event is still scored.
        self._pan_rules = tuple(
            (rule, slots[rule.container])
            for rule in rules
            if rule.checks_pan and rule.path is not None and rule.target in FREE_TEXT_FIELDS
        )
        self._fast_rules = tuple(
            (
                rule.key0,
                rule.path,
                rule.constant,
                rule.default,
                rule.optional,
                rule.convert,
                slots[rule.container],
                rule.key,
                rule.target == "currency",
            )
            for rule in rules
        )
        # CSV and Parquet files are checked once, on their header or schema (check_columns); JSON
        # records may each carry different fields, so each is checked.
        self._check_each_record = unmapped == "error" and source_format == "json"

    # --- what the mapping reads -------------------------------------------------------------

    @property
    def has_label(self) -> bool:
        """Whether the file declares a ``[label]``."""
        return self._label is not None

    @property
    def dropped_paths(self) -> tuple[str, ...]:
        """The ``drop`` list as written (names only)."""
        return tuple(".".join(path) for path in self._dropped)

    @property
    def source_paths(self) -> tuple[str, ...]:
        """Every source path a rule or the label reads, in rule order, without repeats."""
        seen: dict[str, None] = {}
        for rule in self._rules:
            if rule.path is not None:
                seen[rule.path_text] = None
        if self._label is not None:
            for text in self._label.path_texts:
                seen[text] = None
        return tuple(seen)

    def with_label(self, path: str) -> EventMapping:
        """This mapping, reading the label from ``path`` when the file declares none."""
        if self._label is not None:
            return self
        label = default_label(path, self.source_format)
        return EventMapping(
            source_format=self.source_format,
            delimiter=self.delimiter,
            quote=self.quote,
            encoding=self.encoding,
            timezone=self.timezone,
            null_values=self.null_values,
            unmapped=self.unmapped,
            rules=self._rules,
            label_rule=label,
            dropped=self._dropped,
            accounted=_accounted_tree([*_leaf_paths(self._accounted), *label.paths]),
            split_path=self._split,
        )

    def check_columns(self, columns: Sequence[str]) -> ColumnCheck:
        """Check a file's header (CSV) or leaf columns (Parquet, dotted for structs) once, at open.

        Raises ``MappingError`` when a mapped column is absent, or (``unmapped = "error"``) when a
        column is neither mapped nor dropped; returns the unmapped columns otherwise.
        """
        present = {self._split(column) for column in columns}
        prefixes = {column[:length] for column in present for length in range(1, len(column) + 1)}
        absent = [text for text in self.source_paths if self._split(text) not in prefixes]
        if absent:
            names = ", ".join(_safe_name(name) for name in absent[:5])
            raise MappingError(f"the file lacks mapped column(s) {names} (check the header and the mapping's paths)")
        unmapped = tuple(
            _safe_name(column) for column in columns if not _is_accounted(self._accounted, self._split(column))
        )
        if unmapped and self.unmapped == "error":
            more = f" and {len(unmapped) - 5} more" if len(unmapped) > 5 else ""
            raise MappingError(
                f"column(s) {', '.join(unmapped[:5])}{more} are neither mapped nor dropped: add them to the "
                "mapping's fields or to drop = [...] (or set unmapped = 'count')"
            )
        return ColumnCheck(unmapped=unmapped)

    def unmapped_fields(self, record: Mapping[str, Any]) -> tuple[str, ...]:
        """Paths of ``record`` that no rule reads and ``drop`` does not list (names, never values)."""
        found: list[str] = []
        _walk_unaccounted(record, self._accounted, (), found, limit=16)
        return tuple(found)

    # --- applying it ---------------------------------------------------------------------------

    def apply(self, record: Mapping[str, Any]) -> TransactionEvent | RecordError:
        """Map one source record. Never raises: returns the event or a ``RecordError``.

        With ``unmapped = "error"`` a JSON record carrying a field that is neither mapped nor
        dropped is refused here; CSV and Parquet sources are checked once by :meth:`check_columns`.
        """
        if not isinstance(record, Mapping):
            return RecordError("<record>", Problem.NOT_AN_OBJECT, detail="the record must be an object")
        if self._check_each_record:
            unaccounted: list[str] = []
            _walk_unaccounted(record, self._accounted, (), unaccounted, limit=1)
            if unaccounted:
                return RecordError(unaccounted[0], Problem.UNMAPPED_FIELD, detail="neither mapped nor dropped")
        payload: dict[str, Any] = {}
        merchant: dict[str, Any] = {}
        card: dict[str, Any] = {}
        features: dict[str, Any] = {}
        containers = (payload, merchant, card, features)
        context = _Context()
        nulls = self.null_values
        rule = self._rules[0]
        try:
            # The hot loop: plain tuples unpacked into locals (see _fast_rules), no attribute look-ups.
            # ``rule`` is read by the except clause: it names the rule that failed.
            for rule, (key0, path, constant, default, optional, convert, slot, key, is_currency) in zip(  # noqa: B007
                self._rules, self._fast_rules, strict=True
            ):
                if path is None:
                    value = constant
                else:
                    if key0 is not None:
                        raw = record.get(key0)
                    elif len(path) == 2 and (parent := record.get(path[0])).__class__ is dict:
                        raw = parent.get(path[1])  # a field of a nested object, the JSON common case
                    else:
                        raw = _lookup(record, path)
                    if raw is None or raw is _ABSENT or (raw.__class__ is str and raw.strip() in nulls):
                        if default is not _ABSENT:
                            value = default
                        elif optional:
                            continue
                        else:
                            raise _Fail(Problem.MISSING)
                    else:
                        value = convert(raw, context)
                if is_currency:
                    if value not in CURRENCY_CODES:
                        raise _Fail(Problem.INVALID, "not an ISO 4217 currency code")
                    context.currency = value
                containers[slot][key] = value
        except _Fail as exc:
            return RecordError(rule.path_text, exc.problem, rule.target, exc.detail)
        for rule, slot in self._pan_rules:
            text = containers[slot].get(rule.key)
            # Only a text of 12+ digits can hold a PAN; the Luhn scan runs on those alone.
            if (
                text
                and len(text) >= 12
                and _TWELVE_DIGITS.search(text.replace(" ", "").replace("-", ""))
                and contains_pan(text)
            ):
                return RecordError(
                    rule.path_text,
                    Problem.PAN_DETECTED,
                    rule.target,
                    "send a token, the BIN and the last four digits instead",
                )
        payload["merchant"] = merchant
        payload["card"] = card
        payload["features"] = features
        try:
            return TransactionEvent.model_validate(payload)
        except ValidationError as exc:
            return self._schema_error(exc)

    def label(self, record: Mapping[str, Any]) -> int | RecordError:
        """The record's label (1 fraud, 0 legitimate); needs a ``[label]`` or :meth:`with_label`."""
        if self._label is None:
            return RecordError("<label>", Problem.MISSING, detail="the mapping has no [label]")
        try:
            return self._label.extract(record, self.null_values)
        except _Fail as exc:
            paths = ", ".join(self._label.path_texts)
            return RecordError(paths, exc.problem, "label", exc.detail)

    def apply_labelled(self, record: Mapping[str, Any]) -> LabelledEvent | RecordError:
        """Map one record and read its label (training, evaluation)."""
        event = self.apply(record)
        if isinstance(event, RecordError):
            return event
        label = self.label(record)
        if isinstance(label, RecordError):
            return label
        return LabelledEvent(event, label)

    def decode(self, value: bytes | None, *, max_bytes: int = 64 * 1024) -> TransactionEvent | RecordError:
        """A Kafka record value holding one JSON object in the bank's format -> event or error."""
        record = parse_json_object(value, max_bytes=max_bytes)
        if isinstance(record, RecordError):
            return record
        return self.apply(record)

    def _schema_error(self, exc: ValidationError) -> RecordError:
        errors = exc.errors(include_url=False, include_input=False, include_context=False)
        first = errors[0]
        loc = [str(part) for part in first["loc"]]
        target = ".".join(loc[:2]) if loc and loc[0] in _NESTED and len(loc) > 1 else (loc[0] if loc else "")
        path = self._path_of.get(target, "<record>")
        detail = mask_pans(str(first["msg"]))[:200]
        return RecordError(path, Problem.INVALID, target or None, detail)


def _leaf_paths(tree: Mapping[str, Any], prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    paths: list[tuple[str, ...]] = []
    for key, node in tree.items():
        if node is _LEAF:
            paths.append((*prefix, key))
        else:
            paths.extend(_leaf_paths(node, (*prefix, key)))
    return paths


def _is_accounted(tree: Mapping[str, Any], path: tuple[str, ...]) -> bool:
    node: Any = tree
    for segment in path:
        node = node.get(segment)
        if node is None:
            return False
        if node is _LEAF:
            return True
    return True  # a parent of accounted fields (a struct column whose children are checked separately)


def _walk_unaccounted(value: Any, node: _Node, prefix: tuple[str, ...], found: list[str], limit: int) -> None:
    if value.__class__ is dict:
        # The common case, at C speed: a key set within the accounted keys, nested levels visited.
        if not value.keys() <= node.keys():
            for key in value:
                if key not in node:
                    found.append(_safe_name(".".join((*prefix, str(key)))))
                    if len(found) >= limit:
                        return
        for key, child in node.branches:
            item = value.get(key)
            if item is not None and (item.__class__ is dict or isinstance(item, Mapping | list)):
                _walk_unaccounted(item, child, (*prefix, key), found, limit)
                if len(found) >= limit:
                    return
        return
    if isinstance(value, Mapping):
        items: Iterable[tuple[Any, Any]] = value.items()
    elif isinstance(value, list):
        items = ((str(index), item) for index, item in enumerate(value))
    else:
        return  # a single value where the mapping expects an object: the reading rule reports it
    for key, item in items:
        level = node.get(key) if isinstance(key, str) else None
        if level is None:
            found.append(_safe_name(".".join((*prefix, str(key)))))
            if len(found) >= limit:
                return
        elif level is not _LEAF:
            _walk_unaccounted(item, level, (*prefix, key), found, limit)
            if len(found) >= limit:
                return


def parse_json_object(value: bytes | str | None, *, max_bytes: int = 64 * 1024) -> dict[str, Any] | RecordError:
    """One JSON object from bytes/text, or a ``RecordError`` (never raises, never quotes the input)."""
    if not value:
        return RecordError("<record>", Problem.MISSING, detail="empty record")
    if len(value) > max_bytes:
        return RecordError(
            "<record>", Problem.MALFORMED, detail=f"record is {len(value)} bytes; the limit is {max_bytes}"
        )
    try:
        record = json.loads(value)
    except UnicodeDecodeError:
        return RecordError("<record>", Problem.MALFORMED, detail="not valid UTF-8")
    except json.JSONDecodeError as exc:
        return RecordError("<record>", Problem.MALFORMED, detail=f"not JSON (position {exc.pos})")
    except RecursionError:
        return RecordError("<record>", Problem.MALFORMED, detail="nested too deeply")
    if not isinstance(record, dict):
        return RecordError("<record>", Problem.NOT_AN_OBJECT, detail="the record must be a JSON object")
    return record


__all__ = [
    "CURRENCY_EXPONENTS",
    "MAPPING_VERSION",
    "SOURCE_FORMATS",
    "ColumnCheck",
    "EventMapping",
    "LabelledEvent",
    "MappingError",
    "Problem",
    "RecordError",
    "SourceFormat",
    "load_mapping",
    "parse_json_object",
]
