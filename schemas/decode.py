"""Bytes -> ``TransactionEvent`` or a typed ``DecodeError``; never raises.

The order of checks is chosen so that hostile input costs little: the size is checked before
anything is parsed, compressed bodies are refused rather than inflated (message compression
belongs in Kafka's record batches, where the broker bounds it), UTF-8 is checked before JSON, and
JSON nesting is bounded by the parser. Error messages are built from the field path and the kind
of problem only; pydantic's view of the raw input never reaches them, and they are redacted anyway.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError

from schemas.dead_letter import ErrorKind
from schemas.events import TransactionEvent
from schemas.redaction import contains_pan, is_sensitive_key, mask_pans

#: Default upper bound for one event's serialized size. Real events are well under 1 KiB.
MAX_EVENT_BYTES = 64 * 1024
_MAX_REPORTED_PROBLEMS = 5
_MAX_LOC_CHARS = 64
# gzip, zlib (default/best compression), zstd frame, bzip2, xz/lzma.
_COMPRESSED_MAGIC = (b"\x1f\x8b", b"\x78\x9c", b"\x78\xda", b"\x28\xb5\x2f\xfd", b"BZh", b"\xfd7zXZ")


@dataclass(frozen=True, slots=True)
class DecodeError:
    """Why a payload is not a valid ``TransactionEvent``. ``message`` is redacted and input-free."""

    kind: ErrorKind
    message: str
    fields: tuple[str, ...] = ()


def _loc_text(loc: tuple[int | str, ...]) -> str:
    parts = [str(part)[:_MAX_LOC_CHARS] for part in loc]
    return ".".join(parts) if parts else "<root>"


def _strings(value: Any) -> Iterator[str]:
    """Every string in a validated model, including mapping keys."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, BaseModel):
        for item in value.__dict__.values():
            yield from _strings(item)
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _strings(key)
            yield from _strings(item)


def _from_validation_error(exc: ValidationError) -> DecodeError:
    errors = exc.errors(include_url=False, include_input=False, include_context=False)
    first = errors[0]
    if first["type"] == "json_invalid":
        reason = str(first["msg"])
        kind = ErrorKind.TOO_DEEP if "recursion limit" in reason else ErrorKind.MALFORMED_JSON
        return DecodeError(kind, mask_pans(reason))
    if first["type"] == "model_type" and not first["loc"]:
        return DecodeError(ErrorKind.NOT_AN_OBJECT, "the payload must be a JSON object")
    locs = [_loc_text(error["loc"]) for error in errors]
    sensitive = [
        loc for error, loc in zip(errors, locs, strict=True)
        if error["type"] == "extra_forbidden" and error["loc"] and is_sensitive_key(str(error["loc"][-1]))
    ]  # fmt: skip
    if sensitive:
        # The field's value is never echoed; its name tells the producer what to stop sending.
        return DecodeError(
            ErrorKind.SENSITIVE_FIELD,
            mask_pans(f"sensitive authentication data must not be sent: {', '.join(sensitive)}"),
            tuple(mask_pans(loc) for loc in sensitive),
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
    return DecodeError(ErrorKind.SCHEMA_INVALID, mask_pans(problems), tuple(mask_pans(loc) for loc in locs))


def decode(data: bytes | None, *, max_bytes: int = MAX_EVENT_BYTES) -> TransactionEvent | DecodeError:
    """Decode one record value. Returns the event, or a ``DecodeError`` saying why not."""
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
    pan_fields = [name for name in _field_paths_with_pan(event)]
    if pan_fields:
        return DecodeError(
            ErrorKind.PAN_DETECTED,
            f"a full card number (PAN) was found in: {', '.join(pan_fields)}; send only token, BIN and last4",
            tuple(pan_fields),
        )
    return event


def _field_paths_with_pan(event: TransactionEvent) -> list[str]:
    found = []
    for name, value in event.__dict__.items():
        if any(contains_pan(text) for text in _strings(value)):
            found.append(name)
    return found
