"""Bytes -> ``TransactionEvent`` or a typed ``DecodeError``; never raises.

The order of checks is chosen so that hostile input costs little: the size is checked before
anything is parsed, compressed bodies are refused rather than inflated (message compression
belongs in Kafka's record batches, where the broker bounds it), UTF-8 is checked before JSON, and
JSON nesting is bounded by the parser. Error messages are built from the field path and the kind
of problem only; pydantic's view of the raw input never reaches them, and they are redacted anyway.

Card numbers: a PAN in free text (``merchant.name``) is refused (``pan_detected``). A PAN-looking
*identifier* (an account keyed by its card number, an all-digit DPAN-like token) is not a reason to
refuse the event: it is scored, and riskstream masks the identifier wherever it writes it
(:func:`identifier_fields_with_pan`, :func:`schemas.redaction.mask_identifier`), unless the caller
asks to refuse it (``refuse_pan_in_identifiers=True``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError

from schemas.dead_letter import ErrorKind
from schemas.events import TransactionEvent
from schemas.redaction import contains_pan, is_sensitive_key, redact_text

#: Default upper bound for one event's serialized size. Real events are well under 1 KiB.
MAX_EVENT_BYTES = 64 * 1024
_MAX_REPORTED_PROBLEMS = 5
_MAX_LOC_CHARS = 64
# gzip, zlib (default/best compression), zstd frame, bzip2, xz/lzma.
_COMPRESSED_MAGIC = (b"\x1f\x8b", b"\x78\x9c", b"\x78\xda", b"\x28\xb5\x2f\xfd", b"BZh", b"\xfd7zXZ")

#: String fields that name things: a PAN-looking value in one is masked on output, not refused.
IDENTIFIER_FIELDS = ("transaction_id", "account_id", "merchant.merchant_id", "device_id", "card.token")
#: String fields a human typed: a PAN in one is always refused.
FREE_TEXT_FIELDS = ("merchant.name",)


@dataclass(frozen=True, slots=True)
class DecodeError:
    """Why a payload is not a valid ``TransactionEvent``. ``message`` is redacted and input-free."""

    kind: ErrorKind
    message: str
    fields: tuple[str, ...] = ()


def _loc_text(loc: tuple[int | str, ...]) -> str:
    parts = [str(part)[:_MAX_LOC_CHARS] for part in loc]
    return ".".join(parts) if parts else "<root>"


def field_value(event: BaseModel, path: str) -> Any:
    """The value at a dotted field path (``"merchant.name"``) of a validated model."""
    value: Any = event
    for part in path.split("."):
        value = getattr(value, part)
    return value


def _fields_with_pan(event: TransactionEvent, paths: tuple[str, ...]) -> tuple[str, ...]:
    found = []
    for path in paths:
        value = field_value(event, path)
        if isinstance(value, str) and contains_pan(value):
            found.append(path)
    return tuple(found)


def identifier_fields_with_pan(event: TransactionEvent) -> tuple[str, ...]:
    """Dotted paths of the identifier fields (``IDENTIFIER_FIELDS``) whose value holds a PAN."""
    return _fields_with_pan(event, IDENTIFIER_FIELDS)


def _from_validation_error(exc: ValidationError) -> DecodeError:
    errors = exc.errors(include_url=False, include_input=False, include_context=False)
    first = errors[0]
    if first["type"] == "json_invalid":
        reason = str(first["msg"])
        kind = ErrorKind.TOO_DEEP if "recursion limit" in reason else ErrorKind.MALFORMED_JSON
        return DecodeError(kind, redact_text(reason))
    if first["type"] == "model_type" and not first["loc"]:
        return DecodeError(ErrorKind.NOT_AN_OBJECT, "the payload must be a JSON object")
    locs = [_loc_text(error["loc"]) for error in errors]
    sensitive = [
        loc
        for error, loc in zip(errors, locs, strict=True)
        if error["type"] == "extra_forbidden" and error["loc"] and is_sensitive_key(str(error["loc"][-1]))
    ]
    if sensitive:
        # The field's value is never echoed; its name tells the producer what to stop sending.
        return DecodeError(
            ErrorKind.SENSITIVE_FIELD,
            redact_text(f"sensitive authentication data must not be sent: {', '.join(sensitive)}"),
            tuple(redact_text(loc) for loc in sensitive),
        )
    if any(error["loc"] == ("schema_version",) for error in errors):
        return DecodeError(
            ErrorKind.UNSUPPORTED_VERSION, "unsupported schema_version (supported: 1)", ("schema_version",)
        )
    problems = "; ".join(
        f"{loc}: {error['msg']}" for error, loc in zip(errors[:_MAX_REPORTED_PROBLEMS], locs, strict=False)
    )
    more = len(errors) - _MAX_REPORTED_PROBLEMS
    if more > 0:
        problems += f"; and {more} more"
    return DecodeError(ErrorKind.SCHEMA_INVALID, redact_text(problems), tuple(redact_text(loc) for loc in locs))


def decode(
    data: bytes | None, *, max_bytes: int = MAX_EVENT_BYTES, refuse_pan_in_identifiers: bool = False
) -> TransactionEvent | DecodeError:
    """Decode one record value. Returns the event, or a ``DecodeError`` saying why not.

    A PAN in free text is always a ``pan_detected`` error; a PAN-looking identifier is one only
    when ``refuse_pan_in_identifiers`` is set (otherwise the caller masks it on output).
    """
    if not data:
        return DecodeError(ErrorKind.EMPTY, "empty record value (tombstone or zero bytes)")
    if len(data) > max_bytes:
        return DecodeError(ErrorKind.TOO_LARGE, f"record value is {len(data)} bytes; the limit is {max_bytes}")
    if data.startswith(_COMPRESSED_MAGIC):
        return DecodeError(ErrorKind.COMPRESSED, "compressed record values are not accepted; use Kafka compression")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return DecodeError(ErrorKind.NOT_UTF8, f"record value is not valid UTF-8 (byte {exc.start})")
    try:
        event = TransactionEvent.model_validate_json(text)
    except ValidationError as exc:
        return _from_validation_error(exc)
    pan_fields = _fields_with_pan(event, FREE_TEXT_FIELDS)
    if refuse_pan_in_identifiers:
        pan_fields += identifier_fields_with_pan(event)
    if pan_fields:
        return DecodeError(
            ErrorKind.PAN_DETECTED,
            f"a full card number (PAN) was found in: {', '.join(pan_fields)}; send only token, BIN and last4",
            pan_fields,
        )
    return event
