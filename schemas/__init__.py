"""Wire contracts of riskstream: the messages on the input, scores and dead-letter topics."""

from schemas.dead_letter import DeadLetter, DeadLetterSource, ErrorKind, build_dead_letter
from schemas.decode import MAX_EVENT_BYTES, DecodeError, decode, identifier_fields_with_pan
from schemas.events import CardRef, Channel, EntryMode, Merchant, TransactionEvent
from schemas.minimise import minimise_payload
from schemas.redaction import contains_pan, mask_identifier, mask_pans, redact_text
from schemas.scores import Decision, ModelRef, RiskScore, ScoreEncoder, SourceRef

__all__ = [
    "MAX_EVENT_BYTES",
    "CardRef",
    "Channel",
    "DeadLetter",
    "DeadLetterSource",
    "Decision",
    "DecodeError",
    "EntryMode",
    "ErrorKind",
    "Merchant",
    "ModelRef",
    "RiskScore",
    "ScoreEncoder",
    "SourceRef",
    "TransactionEvent",
    "build_dead_letter",
    "contains_pan",
    "decode",
    "identifier_fields_with_pan",
    "mask_identifier",
    "mask_pans",
    "minimise_payload",
    "redact_text",
]
