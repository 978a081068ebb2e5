"""Dead-letter payloads cut down to what is needed to find and replay a record.

A dead letter keeps only the wire schema's *known* fields (``TransactionEvent`` and the known
members of its ``merchant`` and ``card`` objects; ``features`` entries whose name has the feature
shape and whose value is a number), each value passed through :func:`~schemas.redaction.redact_text`.
Fields the schema does not know are listed by name (redacted, bounded), never copied: an extra
field holding a customer's name, street or SSN leaves nothing of its value behind. Sensitive
authentication data (CVV, PIN, track) is never a known field, so it is never copied either.

A known field holding a value of the wrong shape keeps a type marker (``"[object]"``,
``"[array]"``, ...) instead of the value, so that no free text hides inside it.

A payload that is not a JSON object (malformed JSON, not UTF-8 and unparseable, an array, a
scalar, or too large to parse) keeps no free text at all: only the members whose name is an
unambiguous known field name, found by pattern (``"transaction_id": "..."``), with their values
redacted. ``merchant.name`` (free text), ``card.token`` and ``merchant.country`` are not taken by
pattern: their names (``name``, ``token``, ``country``) are as likely to belong to an unknown
object (a customer, an auth token, an address) as to the event.
"""

from __future__ import annotations

import json
import math
import re
import types
from dataclasses import dataclass
from typing import Any, Union, get_args, get_origin

from pydantic import BaseModel

from schemas.events import TransactionEvent
from schemas.redaction import redact_text
from schemas.types import FEATURE_NAME_PATTERN, MAX_FEATURE_NAME_CHARS

MAX_VALUE_CHARS = 128
MAX_UNKNOWN_FIELDS = 32
MAX_FIELD_NAME_CHARS = 64
PARSE_LIMIT_BYTES = 1 << 20
# Redacting only a prefix of a huge value must not cut a PAN or e-mail address in two before it is
# recognised: redact this many characters past the cut, then cut.
_REDACTION_MARGIN = 320

_FEATURE_NAME = re.compile(FEATURE_NAME_PATTERN)
_SCALAR = "scalar"
_NUMBER_MAP = "number_map"
_NOT_TAKEN_BY_PATTERN = frozenset({"name", "token", "country"})

Shape = dict[str, "Shape | str"]


@dataclass(frozen=True, slots=True)
class MinimisedPayload:
    """``text``: a JSON object of the known fields (``""`` for an empty value), at most ``limit`` chars."""

    text: str
    truncated: bool
    unknown_fields: tuple[str, ...]
    unknown_fields_omitted: int


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if get_origin(annotation) in (Union, types.UnionType):
        for arg in get_args(annotation):
            model = _model_in(arg)
            if model is not None:
                return model
    return None


def _shape_of(model: type[BaseModel]) -> Shape:
    """Field name -> nested shape, ``_NUMBER_MAP`` (features) or ``_SCALAR``, from the model itself."""
    shape: Shape = {}
    for name, field in model.model_fields.items():
        nested = _model_in(field.annotation)
        if nested is not None:
            shape[name] = _shape_of(nested)
        elif get_origin(field.annotation) is dict:
            shape[name] = _NUMBER_MAP
        else:
            shape[name] = _SCALAR
    return shape


EVENT_SHAPE: Shape = _shape_of(TransactionEvent)


def _leaf_paths(shape: Shape, prefix: tuple[str, ...] = ()) -> dict[str, tuple[str, ...]]:
    paths: dict[str, tuple[str, ...]] = {}
    for name, kind in shape.items():
        if isinstance(kind, dict):
            paths.update(_leaf_paths(kind, (*prefix, name)))
        elif kind == _SCALAR and name not in _NOT_TAKEN_BY_PATTERN:
            paths[name] = (*prefix, name)
    return paths


_PATTERN_PATHS = _leaf_paths(EVENT_SHAPE)
_MEMBER = re.compile(
    r'"(' + "|".join(sorted(_PATTERN_PATHS)) + r')"\s*:\s*'
    r'("(?:[^"\\\n]|\\.){0,' + str(MAX_VALUE_CHARS * 2) + r'}"|-?[0-9][0-9.eE+-]{0,40}|true|false|null)'
)


def _bounded_text(text: str) -> tuple[str, bool]:
    """``text`` redacted, then cut to ``MAX_VALUE_CHARS`` (cutting first could split a PAN)."""
    if len(text) > MAX_VALUE_CHARS:
        return redact_text(text[: MAX_VALUE_CHARS + _REDACTION_MARGIN])[:MAX_VALUE_CHARS], True
    return redact_text(text), False


def _marker(value: Any) -> str:
    if isinstance(value, dict):
        return "[object]"
    if isinstance(value, list):
        return "[array]"
    if isinstance(value, str):
        return "[string]"
    if isinstance(value, bool):
        return "[boolean]"
    return "[number]"


def _number(value: int | float) -> tuple[Any, bool]:
    """A number kept as a number unless its digits would show (part of) a card number."""
    if isinstance(value, float) and not math.isfinite(value):
        return ("NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")), False
    try:
        text = json.dumps(value)
    except ValueError:  # an integer too long to print
        return "[number]", True
    safe, truncated = _bounded_text(text)
    return (value if safe == text else safe), truncated


def _scalar(value: Any) -> tuple[Any, bool]:
    if value is None or isinstance(value, bool):
        return value, False
    if isinstance(value, int | float):
        return _number(value)
    if isinstance(value, str):
        return _bounded_text(value)
    return _marker(value), False


class _Collector:
    def __init__(self) -> None:
        self.unknown: list[str] = []
        self.omitted = 0
        self.truncated = False

    def unknown_field(self, path: str) -> None:
        if len(self.unknown) < MAX_UNKNOWN_FIELDS:
            self.unknown.append(redact_text(path[: MAX_FIELD_NAME_CHARS + _REDACTION_MARGIN])[:MAX_FIELD_NAME_CHARS])
        else:
            self.omitted += 1

    def scalar(self, value: Any) -> Any:
        safe, truncated = _scalar(value)
        self.truncated |= truncated
        return safe

    def known(self, value: dict[str, Any], shape: Shape, prefix: str = "") -> dict[str, Any]:
        kept: dict[str, Any] = {}
        for name, item in value.items():
            kind = shape.get(name)
            if kind is None:
                self.unknown_field(prefix + name)
            elif isinstance(kind, dict):
                kept[name] = self.known(item, kind, f"{prefix}{name}.") if isinstance(item, dict) else _nested(item)
            elif kind == _NUMBER_MAP:
                kept[name] = self.features(item, f"{prefix}{name}.") if isinstance(item, dict) else _nested(item)
            else:
                kept[name] = self.scalar(item) if not isinstance(item, dict | list) else _marker(item)
        return kept

    def features(self, value: dict[str, Any], prefix: str) -> dict[str, Any]:
        kept: dict[str, Any] = {}
        for name, item in value.items():
            if len(name) > MAX_FEATURE_NAME_CHARS or _FEATURE_NAME.fullmatch(name) is None:
                self.unknown_field(prefix + name)
            elif isinstance(item, int | float) and not isinstance(item, bool):
                kept[name] = self.scalar(item)
            else:
                kept[name] = _marker(item)
        return kept


def _nested(value: Any) -> Any:
    """What a known object field keeps when it does not hold an object: null, or a type marker."""
    return None if value is None else _marker(value)


def _by_pattern(text: str, collector: _Collector) -> dict[str, Any]:
    """The known members found by pattern in a payload that is not a JSON object, nested by path."""
    found: dict[str, Any] = {}
    for match in _MEMBER.finditer(text):
        *parents, leaf = _PATTERN_PATHS[match.group(1)]
        target = found
        for parent in parents:
            target = target.setdefault(parent, {})
        if leaf in target:
            continue  # the first occurrence wins
        try:
            value = json.loads(match.group(2))
        except ValueError:
            continue
        target[leaf] = collector.scalar(value)
    return found


def minimise_payload(raw: bytes | None, *, limit: int = 4096, parse_limit: int = PARSE_LIMIT_BYTES) -> MinimisedPayload:
    """A record value cut down to its known fields, redacted; see the module docstring."""
    if not raw:
        return MinimisedPayload("", False, (), 0)
    collector = _Collector()
    oversized = len(raw) > parse_limit
    text = raw[:parse_limit].decode("utf-8", errors="replace")
    parsed: Any = None
    if not oversized:
        try:
            parsed = json.loads(text)
        except (ValueError, RecursionError):
            parsed = None
    kept = collector.known(parsed, EVENT_SHAPE) if isinstance(parsed, dict) else _by_pattern(text, collector)
    rendered = json.dumps(kept, ensure_ascii=False, separators=(",", ":"))
    truncated = oversized or collector.truncated or len(rendered) > limit
    return MinimisedPayload(rendered[:limit], truncated, tuple(collector.unknown), collector.omitted)
