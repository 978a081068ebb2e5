"""Card-data redaction: the last line of defence for every error text, log line and dead letter.

PCI DSS v4.0 requirement 3.4.1 allows at most the BIN (first six) and the last four digits of a
primary account number (PAN) to be displayed; 3.3.1 forbids storing sensitive authentication data
(CVV/CVC, PIN blocks, track data) after authorisation. Everything riskstream writes about a record
it could not process goes through :func:`mask_pans` and, for payloads, :func:`redact_payload`.

A PAN is a run of 13 to 19 digits, optionally split by single spaces or dashes, that passes the
Luhn check as a whole. Runs longer than 19 digits are searched window by window, so a PAN glued to
other digits is still found (at the price of false positives, which only ever mask more). Masking replaces the middle digits with ``*``; the separators stay, so a
masked value is still recognisable to a human reading a dead letter.
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

# A digit, then at least twelve more, each optionally preceded by one space or dash.
_DIGIT_RUN = re.compile(r"\d(?:[ -]?\d){12,}")
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


def _pan_windows(values: list[int]) -> Iterator[tuple[int, int]]:
    """Yield (start, end) of every PAN in a maximal digit run ``values``.

    A run of 13-19 digits is one candidate; a longer run is searched window by window, using two
    prefix sums (one per parity of the window's last digit) so that each window is
    checked in O(1): in a window ending at index ``e``, the digit at ``k`` is doubled exactly
    when ``e - k`` is odd.
    """
    n = len(values)
    if n <= PAN_MAX_DIGITS:
        if n >= PAN_MIN_DIGITS and luhn_valid("".join(map(str, values))):
            yield 0, n
        return
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


def _masked_run(run: str) -> str | None:
    """The run with PAN digits masked, or None when it holds no Luhn-valid PAN."""
    positions = [i for i, char in enumerate(run) if char.isdigit()]
    values = [int(run[i]) for i in positions]
    hidden: set[int] = set()
    for start, end in _pan_windows(values):
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
    if not _DIGIT_RUN.search(text):
        return text

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
