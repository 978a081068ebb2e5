"""Card-data redaction: the last line of defence for every error text, log line and dead letter.

PCI DSS v4.0 requirement 3.4.1 allows at most the BIN (first six) and the last four digits of a
primary account number (PAN) to be displayed; 3.3.1 forbids storing sensitive authentication data
(CVV/CVC, PIN blocks, track data) after authorisation. Everything riskstream writes about a record
it could not process goes through :func:`mask_pans` and, for payloads, :func:`redact_payload`.

A PAN is 13 to 19 digits, optionally split by single spaces or dashes, that pass the Luhn check
as a whole. Formatted numbers are checked group-aligned (so a PAN next to another number is still
found), and unbroken digit runs longer than 19 are searched window by window, so a PAN glued to
other digits is found too (at the price of false positives, which only ever mask more).
Masking replaces the middle digits with ``*``; the separators stay, so a masked value is still
recognisable to a human reading a dead letter.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

PAN_MIN_DIGITS = 13
PAN_MAX_DIGITS = 19
VISIBLE_PREFIX = 6
VISIBLE_SUFFIX = 4
MASK_CHAR = "*"
REDACTED = "[REDACTED]"

# Digit groups joined by single spaces or dashes: the shapes a PAN is written in.
_DIGIT_RUN = re.compile(r"\d+(?:[ -]\d+)*")
_DIGIT_GROUP = re.compile(r"\d+")
# Luhn doubling: digit d doubled, with 9 subtracted when the result has two digits.
_DOUBLED = (0, 2, 4, 6, 8, 1, 3, 5, 7, 9)

# Sensitive authentication data and secrets: fields with these names are dropped from payloads.
_SENSITIVE_TOKENS = frozenset(
    {
        "cvv", "cvv2", "cvc", "cvc2", "cav2", "cid", "csc", "cvn", "pin", "pinblock",
        "track1", "track2", "trackdata", "password", "passwd", "passphrase", "secret",
    }
)  # fmt: skip
_SENSITIVE_JOINED = frozenset(
    {
        "securitycode", "cardsecuritycode", "cardverificationvalue", "cardverificationcode",
        "verificationvalue", "verificationcode", "pinblock", "trackdata", "clientsecret",
        "apikey", "privatekey",
    }
)  # fmt: skip
_KEY_TOKEN = re.compile(r"[A-Z]?[a-z]+\d*|[A-Z]+\d*(?![a-z])|\d+")
# "key": value — a JSON member whose value is a string literal or a bare token.
_JSON_MEMBER = re.compile(r'"((?:[^"\\]|\\.){1,128})"(\s*:\s*)("(?:[^"\\]|\\.)*"|[^,}\]\s]+)')


def luhn_valid(digits: str) -> bool:
    """Whether a string of ASCII/Unicode decimal digits passes the Luhn (mod 10) check."""
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = int(char)
        total += _DOUBLED[value] if position % 2 else value
    return total % 10 == 0


def _windows_in_group(values: list[int]) -> Iterator[tuple[int, int]]:
    """Yield (start, end) of every Luhn-valid 13-19 digit window in a long unbroken digit group.

    Uses two prefix sums (one per parity of the window's last digit) so that each window is
    checked in O(1): in a window ending at index ``e``, the digit at ``k`` is doubled exactly
    when ``e - k`` is odd.
    """
    n = len(values)
    prefix = ([0] * (n + 1), [0] * (n + 1))
    for k, value in enumerate(values):
        for parity in (0, 1):
            weighted = value if k % 2 == parity else _DOUBLED[value]
            prefix[parity][k + 1] = prefix[parity][k] + weighted
    for start in range(n - PAN_MIN_DIGITS + 1):
        for length in range(PAN_MIN_DIGITS, min(PAN_MAX_DIGITS, n - start) + 1):
            end = start + length
            sums = prefix[(end - 1) % 2]
            if (sums[end] - sums[start]) % 10 == 0:
                yield start, end


def _pans_in_run(groups: list[list[int]]) -> Iterator[tuple[int, int]]:
    """Yield (start, end) digit indices of every PAN in a run of digit groups.

    A run is digit groups joined by single spaces or dashes ("4111 1111 1111 1111 2"). Any
    sequence of whole consecutive groups holding 13-19 digits is a candidate, checked as a whole;
    so is every 13-19 digit window of a single group longer than 19 digits. Formatted PANs next to
    other numbers are found, while an unformatted 16-digit id is only flagged when it is itself
    Luhn-valid.
    """
    offsets = [0]
    for group in groups:
        offsets.append(offsets[-1] + len(group))
    for first in range(len(groups)):
        if len(groups[first]) > PAN_MAX_DIGITS:
            for start, end in _windows_in_group(groups[first]):
                yield offsets[first] + start, offsets[first] + end
            continue
        for last in range(first, len(groups)):
            length = offsets[last + 1] - offsets[first]
            if length > PAN_MAX_DIGITS or len(groups[last]) > PAN_MAX_DIGITS:
                break
            if length >= PAN_MIN_DIGITS:
                digits = [d for group in groups[first : last + 1] for d in group]
                if luhn_valid("".join(map(str, digits))):
                    yield offsets[first], offsets[last + 1]


def _masked_run(run: str) -> str | None:
    """The run with PAN digits masked, or None when it holds no Luhn-valid PAN."""
    positions = [i for i, char in enumerate(run) if char.isdigit()]
    if len(positions) < PAN_MIN_DIGITS:
        return None
    groups = [[int(char) for char in match.group()] for match in _DIGIT_GROUP.finditer(run)]
    hidden: set[int] = set()
    for start, end in _pans_in_run(groups):
        hidden.update(range(start + VISIBLE_PREFIX, end - VISIBLE_SUFFIX))
    if not hidden:
        return None
    chars = list(run)
    for digit_index in hidden:
        chars[positions[digit_index]] = MASK_CHAR
    return "".join(chars)


def contains_pan(text: str) -> bool:
    """Whether ``text`` contains a Luhn-valid run of 13-19 digits (spaces/dashes allowed)."""
    return any(_masked_run(match.group()) is not None for match in _DIGIT_RUN.finditer(text))


def mask_pans(text: str) -> str:
    """Mask every PAN in ``text`` to at most its BIN and last four digits."""

    def replace(match: re.Match[str]) -> str:
        masked = _masked_run(match.group())
        return match.group() if masked is None else masked

    return _DIGIT_RUN.sub(replace, text)


def is_sensitive_key(key: str) -> bool:
    """Whether a field name denotes authentication data or a secret (CVV, PIN, track, password)."""
    tokens = [token.lower() for token in _KEY_TOKEN.findall(key)]
    if any(token in _SENSITIVE_TOKENS for token in tokens):
        return True
    return "".join(tokens) in _SENSITIVE_JOINED


def drop_sensitive_fields(value: Any) -> Any:
    """A copy of a decoded JSON value with every sensitive member removed, at any depth."""
    if isinstance(value, dict):
        return {
            key: drop_sensitive_fields(item)
            for key, item in value.items()
            if not (isinstance(key, str) and is_sensitive_key(key))
        }
    if isinstance(value, list):
        return [drop_sensitive_fields(item) for item in value]
    return value


def _mask_sensitive_members(text: str) -> str:
    """Text-level fallback for payloads that are not valid JSON: blank sensitive members' values."""

    def replace(match: re.Match[str]) -> str:
        if is_sensitive_key(match.group(1)):
            return f'"{match.group(1)}"{match.group(2)}"{REDACTED}"'
        return match.group()

    return _JSON_MEMBER.sub(replace, text)


def redact_payload(raw: bytes | str, *, limit: int = 4096, parse_limit: int = 1 << 20) -> tuple[str, bool]:
    """Redact a record payload for a dead letter; returns ``(text, truncated)``.

    Sensitive members are dropped (structurally when the payload is JSON, by pattern otherwise),
    PANs are masked, and only then is the text cut to ``limit`` characters: cutting first could
    leave more than BIN + last four of a PAN that straddles the cut. Payloads larger than
    ``parse_limit`` are not parsed; only a prefix of them is redacted and kept.
    """
    if isinstance(raw, bytes):
        # Only the prefix that can survive truncation is decoded for oversized payloads; the
        # margin covers a PAN with separators straddling the cut.
        head = raw if len(raw) <= parse_limit else raw[: 4 * (limit + 64)]
        text = head.decode("utf-8", errors="replace")
        oversized = len(raw) > parse_limit
    else:
        oversized = len(raw) > parse_limit
        text = raw[: limit + 64] if oversized else raw
    cleaned: str | None = None
    if not oversized:
        try:
            cleaned = json.dumps(drop_sensitive_fields(json.loads(text)), ensure_ascii=False, separators=(",", ":"))
        except (ValueError, RecursionError):
            cleaned = None
    if cleaned is None:
        cleaned = _mask_sensitive_members(text)
    cleaned = mask_pans(cleaned)
    truncated = oversized or len(cleaned) > limit
    return cleaned[:limit], truncated
