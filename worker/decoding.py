"""How a record value becomes an event: the wire schema, or the bank's own format through a mapping.

Both return the event or a ``DecodeError`` and never raise. A record the mapping cannot map becomes a
``mapping_failed`` dead letter whose message names the source path and the kind of problem, never
the value (values are the bank's data: names, card numbers).
"""

from __future__ import annotations

from collections.abc import Callable

from schemas import DecodeError, ErrorKind, TransactionEvent, decode
from schemas.mapping import EventMapping, MappingError, RecordError, load_mapping
from worker.errors import ConfigError
from worker.settings import Settings

Decoder = Callable[[bytes | None], TransactionEvent | DecodeError]


def decoder_for(settings: Settings) -> Decoder:
    """The decoder the settings ask for; a mapping that does not load is a ``ConfigError`` (one line)."""
    max_bytes = settings.max_event_bytes
    refuse = settings.refuse_pan_in_identifiers
    if settings.input.mapping is None:

        def wire(value: bytes | None) -> TransactionEvent | DecodeError:
            return decode(value, max_bytes=max_bytes, refuse_pan_in_identifiers=refuse)

        return wire
    try:
        mapping = load_mapping(settings.input.mapping)
    except MappingError as exc:
        raise ConfigError(f"input.mapping: {exc}") from None
    return mapped_decoder(mapping, max_bytes=max_bytes)


def mapped_decoder(mapping: EventMapping, *, max_bytes: int) -> Decoder:
    def mapped(value: bytes | None) -> TransactionEvent | DecodeError:
        if not value:
            return DecodeError(ErrorKind.EMPTY, "empty record value (tombstone or zero bytes)")
        if len(value) > max_bytes:
            return DecodeError(ErrorKind.TOO_LARGE, f"record value is {len(value)} bytes; the limit is {max_bytes}")
        result = mapping.decode(value, max_bytes=max_bytes)
        if isinstance(result, RecordError):
            kind = ErrorKind.PAN_DETECTED if result.problem.value == "pan_detected" else ErrorKind.MAPPING_FAILED
            return DecodeError(kind, f"mapping: {result.message}", (result.path,))
        return result

    return mapped
