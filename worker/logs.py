"""structlog configuration: JSON lines for machines, a console renderer for people.

Every event passes through :func:`redact_processor` last, so even a careless log call cannot
write a full card number or personal data: every string value goes through
:func:`schemas.redaction.redact_text` (PANs masked to at most BIN + last four; e-mail addresses,
phone numbers and SSN-like ids replaced), secret-named fields are blanked, and numbers are kept
free of digit runs that could read as a card number (:mod:`worker.numbers`).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any, TextIO

import structlog

from schemas.redaction import is_sensitive_key, redact_text
from worker.numbers import loggable_float, loggable_int


def _redact_value(value: Any) -> Any:
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, bytes):
        return redact_text(value.decode("utf-8", errors="replace"))
    if isinstance(value, dict):
        return {
            k: "[REDACTED]" if isinstance(k, str) and is_sensitive_key(k) else _redact_value(v)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple | set | frozenset):
        return [_redact_value(v) for v in value]
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, float):
        return loggable_float(value)
    if isinstance(value, int):
        return loggable_int(value)
    return redact_text(str(value))


def redact_processor(_logger: Any, _method: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Last line of defence: redact every value and blank secret-looking fields of every log event."""
    for key in list(event_dict):
        event_dict[key] = "[REDACTED]" if is_sensitive_key(key) else _redact_value(event_dict[key])
    return event_dict


def configure_logging(
    level: str = "info", fmt: str = "auto", stream: TextIO | None = None, *, static: dict[str, str] | None = None
) -> None:
    """Configure structlog and route the standard library's logging (kafka-python's) through it.

    ``static`` fields (e.g. the worker id) are added to every line, from every thread.
    """
    fields = dict(static or {})

    def add_static(_logger: Any, _method: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
        for key, value in fields.items():
            event_dict.setdefault(key, value)
        return event_dict

    out = stream if stream is not None else sys.stderr
    use_json = fmt == "json" or (fmt == "auto" and not out.isatty())
    numeric_level = logging.getLevelNamesMapping()[level.upper()]
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        add_static,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
    ]
    renderer: Any = structlog.processors.JSONRenderer() if use_json else structlog.dev.ConsoleRenderer(colors=False)
    structlog.configure(
        processors=[*shared, redact_processor, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(numeric_level),
        logger_factory=structlog.PrintLoggerFactory(out),
        cache_logger_on_first_use=True,
    )
    # Standard-library loggers (kafka-python) go through the same redaction and rendering.
    handler = logging.StreamHandler(out)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, redact_processor, renderer],
            foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name],
        )
    )
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(numeric_level)
    # kafka-python is chatty at INFO about routine connection events.
    logging.getLogger("kafka").setLevel(max(numeric_level, logging.WARNING))
