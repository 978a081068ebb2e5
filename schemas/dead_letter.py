"""``DeadLetter`` v1: a record riskstream could not score, with why, redacted."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Literal

from pydantic import AwareDatetime, Field, NonNegativeInt

from schemas.events import WireModel
from schemas.redaction import mask_pans, redact_payload
from schemas.types import Identifier, KafkaTopic

DEAD_LETTER_VERSION: Literal[1] = 1
MAX_ERROR_CHARS = 2048
MAX_PAYLOAD_CHARS = 4096


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


class DeadLetterSource(WireModel):
    topic: KafkaTopic
    partition: NonNegativeInt
    offset: NonNegativeInt
    # An ISO timestamp, not epoch milliseconds: 13-digit numbers trip PAN scanners one time in ten.
    timestamp: AwareDatetime | None = Field(default=None, description="The record's Kafka timestamp.")
    key: str | None = Field(default=None, max_length=256, description="The record key, redacted.")


class DeadLetter(WireModel):
    schema_version: Literal[1] = DEAD_LETTER_VERSION
    source: DeadLetterSource
    error_type: ErrorKind
    error: str = Field(max_length=MAX_ERROR_CHARS, description="What went wrong, redacted; never raw input.")
    payload: str = Field(
        max_length=MAX_PAYLOAD_CHARS,
        description="The record value, redacted (PANs masked, CVV/PIN fields dropped) and truncated.",
    )
    payload_bytes: NonNegativeInt = Field(description="Size of the original record value in bytes.")
    payload_truncated: bool
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
    """A dead letter for one record: key, error text and payload are redacted here, once."""
    payload, truncated = redact_payload(value or b"", limit=MAX_PAYLOAD_CHARS)
    key_text = None if key is None else mask_pans(key.decode("utf-8", errors="replace"))[:256]
    return DeadLetter(
        source=DeadLetterSource(topic=topic, partition=partition, offset=offset, timestamp=timestamp, key=key_text),
        error_type=kind,
        error=mask_pans(error)[:MAX_ERROR_CHARS],
        payload=payload,
        payload_bytes=len(value or b""),
        payload_truncated=truncated,
        worker_id=worker_id,
        failed_time=failed_time,
    )
