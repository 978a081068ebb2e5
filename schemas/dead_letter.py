"""``DeadLetter`` v1: a record riskstream could not score, with why, redacted and minimised.

A dead letter holds what is needed to find and replay the record and nothing more: its source
coordinates, the error kind, a redacted message, and the payload cut down to the wire schema's
known fields with every value redacted; unknown fields are named, never copied
(:mod:`schemas.minimise`).
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import AwareDatetime, Field, NonNegativeInt, StringConstraints

from schemas.events import WireModel
from schemas.minimise import MAX_FIELD_NAME_CHARS, MAX_UNKNOWN_FIELDS, minimise_payload
from schemas.redaction import redact_text
from schemas.types import Identifier, KafkaTopic

DEAD_LETTER_VERSION: Literal[1] = 1
MAX_ERROR_CHARS = 2048
MAX_PAYLOAD_CHARS = 4096
MAX_KEY_CHARS = 256


class ErrorKind(StrEnum):
    """Why a record became a dead letter. Decode kinds first, then processing kinds."""

    EMPTY = "empty"
    TOO_LARGE = "too_large"
    COMPRESSED = "compressed"
    NOT_UTF8 = "not_utf8"
    MALFORMED_JSON = "malformed_json"
    TOO_DEEP = "too_deep"
    NOT_AN_OBJECT = "not_an_object"
    UNSUPPORTED_VERSION = "unsupported_version"
    SCHEMA_INVALID = "schema_invalid"
    SENSITIVE_FIELD = "sensitive_field"
    PAN_DETECTED = "pan_detected"
    FEATURIZE_FAILED = "featurize_failed"
    SCORING_FAILED = "scoring_failed"
    OUT_OF_MEMORY = "out_of_memory"
    UNDECODABLE_BATCH = "undecodable_batch"
    MAPPING_FAILED = "mapping_failed"


class DeadLetterSource(WireModel):
    topic: KafkaTopic
    partition: NonNegativeInt
    offset: NonNegativeInt
    # An ISO timestamp, not epoch milliseconds: 13-digit numbers trip PAN scanners one time in ten.
    timestamp: AwareDatetime | None = Field(default=None, description="The record's Kafka timestamp.")
    key: str | None = Field(
        default=None,
        max_length=MAX_KEY_CHARS,
        description="The record key, redacted (card numbers masked with *, e-mails, phones and SSNs replaced).",
    )


class DeadLetter(WireModel):
    schema_version: Literal[1] = DEAD_LETTER_VERSION
    source: DeadLetterSource
    error_type: ErrorKind
    error: str = Field(max_length=MAX_ERROR_CHARS, description="What went wrong, redacted; never raw input.")
    payload: str = Field(
        max_length=MAX_PAYLOAD_CHARS,
        description=(
            "JSON object text of the record's known TransactionEvent fields only, every value redacted; for a "
            "value that is not a JSON object, only known members found by pattern. Empty for an empty value."
        ),
    )
    payload_bytes: NonNegativeInt = Field(description="Size of the original record value in bytes.")
    payload_truncated: bool = Field(description="True when a value or the payload was cut to its limit.")
    unknown_fields: list[Annotated[str, StringConstraints(max_length=MAX_FIELD_NAME_CHARS)]] = Field(
        default_factory=list,
        max_length=MAX_UNKNOWN_FIELDS,
        description="Dotted names (redacted) of fields the wire schema does not know; their values are never kept.",
    )
    unknown_fields_omitted: NonNegativeInt = Field(
        default=0, description="How many more unknown fields there were than unknown_fields lists."
    )
    worker_id: Identifier
    failed_time: AwareDatetime


def build_dead_letter(
    *,
    topic: str,
    partition: int,
    offset: int,
    timestamp: datetime | None,
    key: bytes | None,
    value: bytes | None,
    kind: ErrorKind,
    error: str,
    worker_id: str,
    failed_time: datetime,
) -> DeadLetter:
    """A dead letter for one record: key, error text and payload are minimised and redacted here, once."""
    payload = minimise_payload(value, limit=MAX_PAYLOAD_CHARS)
    key_text = None
    if key is not None:
        # Redacted before the cut, so that the cut cannot split a card number and leave it unmasked.
        key_text = redact_text(key[: 4 * (MAX_KEY_CHARS + 64)].decode("utf-8", errors="replace"))[:MAX_KEY_CHARS]
    return DeadLetter(
        source=DeadLetterSource(topic=topic, partition=partition, offset=offset, timestamp=timestamp, key=key_text),
        error_type=kind,
        error=redact_text(error[: MAX_ERROR_CHARS + 320])[:MAX_ERROR_CHARS],
        payload=payload.text,
        payload_bytes=len(value or b""),
        payload_truncated=payload.truncated,
        unknown_fields=list(payload.unknown_fields),
        unknown_fields_omitted=payload.unknown_fields_omitted,
        worker_id=worker_id,
        failed_time=failed_time,
    )
