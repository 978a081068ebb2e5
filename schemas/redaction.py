"""Card-data and personal-data redaction: the last line of defence for every error text and log line.

PCI DSS v4.0 requirement 3.4.1 allows at most the BIN (first six) and the last four digits of a
primary account number (PAN) to be displayed; 3.3.1 forbids storing sensitive authentication data
(CVV/CVC, PIN blocks, track data) after authorisation. Everything riskstream writes about a record
it could not process goes through :func:`redact_text`; dead-letter payloads are first cut down to
the wire schema's known fields (:mod:`schemas.minimise`).

**What counts as a PAN.** 12 to 19 digits that pass the Luhn check, *delimited as a number*:

* A *word* is a maximal run of word characters (letters, digits, ``_``) and dashes. A word that
  holds a letter or an underscore is an identifier, a hex string or a token (a UUID, a SHA-256,
  ``tok_...``, ``a3f4111111111111111b``, ``txn-4111111111111111``) and never holds a PAN; a word
  of digits and dashes is *numeric*.
* Numeric words joined by single spaces, and digit groups inside them joined by single dashes,
  form a run (``4111 1111 1111 1111``, ``4111-1111-1111-1111``). In a run, a single group of 12-19
  digits is a candidate, and so is a sequence of whole consecutive groups written the way card
  numbers are written: a four-digit first group, groups of at most six digits
  (``4-4-4-4``, Amex ``4-6-5``, Diners ``4-6-4``, ``4-4-4-4-3``). Candidates are checked as a whole
  with Luhn, so a spaced PAN next to other numbers (``qty 2 4111 1111 1111 1111``) is still found.
* A single group of more than 19 digits is another kind of number (an ARN has 23), not a PAN.

So a realistic hex or UUID identifier never matches, while an all-digit Luhn-valid identifier (an
account keyed by card number, a DPAN-like token) does, one time in ten for random 12-19 digit ids;
identifier fields are therefore *masked* rather than refused (:mod:`schemas.decode`).

**Masking** replaces digits with ``*`` and keeps the separators: at most the BIN (first six) and
the last four stay visible, and at least six digits are always hidden (a 12-digit PAN keeps its
first two and last four).

**Other personal data** in free text: e-mail addresses, phone numbers (E.164 ``+<7-15 digits>``
with spaces, dots, dashes or parentheses; North American ``(415) 555-2671``, ``415-555-2671``,
``415.555.2671``, ``1-800-555-1234``) and US-SSN-like ids (``123-45-6789``, ``123 45 6789``) are
replaced by ``[EMAIL]``, ``[PHONE]`` and ``[SSN]``. Unformatted nine-digit numbers are not taken
for SSNs, space-only national numbers (``415 555 2671``) are not taken for phones, and national
formats other than North American ones are not recognised: all of them would eat offsets, sizes
and counts in log lines.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

PAN_MIN_DIGITS = 12
PAN_MAX_DIGITS = 19
VISIBLE_PREFIX = 6
VISIBLE_SUFFIX = 4
MIN_HIDDEN_DIGITS = 6
MASK_CHAR = "*"
REDACTED = "[REDACTED]"
EMAIL_PLACEHOLDER = "[EMAIL]"
PHONE_PLACEHOLDER = "[PHONE]"
SSN_PLACEHOLDER = "[SSN]"
# A multi-group candidate starts with a group of this many digits; no group of it is longer than
# _MAX_GROUP_DIGITS (every way card numbers are printed or typed: 4-4-4-4, 4-6-5, 4-6-4, 4-4-4-4-3).
_FIRST_GROUP_DIGITS = 4
_MAX_GROUP_DIGITS = 6

# Cheap pre-check, a necessary condition: 12 digits in one group, or a four-digit group, a separator
# and 8 more digits with at most one separator between neighbours. Text without it holds no PAN,
# which is most text (offset ranges like 123456-123519 included); only text with it is split into words.
_MAYBE_PAN = re.compile(r"\d{4}(?:\d{8}|[ -]\d(?:[ -]?\d){7})")
# Numeric words (maximal runs of word characters and dashes holding no letter or underscore) joined
# by single spaces. Atomic groups: a word is taken whole or not at all.
_NUMERIC_RUN = re.compile(r"(?<![\w-])(?>-*\d[\d-]*)(?![\w-])(?: (?>-*\d[\d-]*)(?![\w-]))*")
# Digit groups joined by exactly one separator, inside a numeric run.
_JOINED_GROUPS = re.compile(r"\d+(?:[ -]\d+)*")
_DIGIT_GROUP = re.compile(r"\d+")
# Luhn doubling: digit d doubled, with 9 subtracted when the result has two digits.
_DOUBLED = (0, 2, 4, 6, 8, 1, 3, 5, 7, 9)

_EMAIL = re.compile(
    r"(?<![\w.%+-])[\w.%+-]+@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9-]{1,63})*\.[A-Za-z]{2,24}"
    r"(?![\w-])"
)
# E.164: "+", then digits with single spaces, dots, dashes or parentheses between them (the digits
# are counted in _replace_e164: 7 to 15).
_E164 = re.compile(r"(?<![\w+])\+(?>[\d() .-]*\d)")
_E164_SEPARATOR = re.compile(r"[ .-]?[()]?[ .-]?|[()]")
# North American Numbering Plan: area code and exchange start with 2-9.
# Written with a parenthesised area code, or with the same dash or dot twice: "415 555 2671" is
# not taken, it is as likely three numbers in a log line ("sizes 256 512 1024").
_NANP = re.compile(
    r"(?<![\w+().-])(?:1[ .-]?)?"
    r"(?:\([2-9][0-9]{2}\) ?[2-9][0-9]{2}[ .-]|[2-9][0-9]{2}([.-])[2-9][0-9]{2}\1)[0-9]{4}(?![\w-])"
)
# The look-behind comes after the first three digits so that the scan can skip to digits quickly.
_SSN = re.compile(r"[0-9]{3}(?<![\w-][0-9]{3})([- ])[0-9]{2}\1[0-9]{4}(?![\w-])")
_PHONE_MIN_DIGITS = 7
_PHONE_MAX_DIGITS = 15

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


def luhn_valid(digits: str) -> bool:
    """Whether a string of ASCII/Unicode decimal digits passes the Luhn (mod 10) check."""
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = int(char)
        total += _DOUBLED[value] if position % 2 else value
    return total % 10 == 0


def _pan_group_spans(groups: list[str]) -> Iterator[tuple[int, int]]:
    """Yield ``(first, stop)`` group indices of every PAN among joined digit groups."""
    for first, head in enumerate(groups):
        if PAN_MIN_DIGITS <= len(head) <= PAN_MAX_DIGITS and luhn_valid(head):
            yield first, first + 1
        if len(head) != _FIRST_GROUP_DIGITS:
            continue
        digits = head
        for last in range(first + 1, len(groups)):
            group = groups[last]
            digits += group
            if len(group) > _MAX_GROUP_DIGITS or len(digits) > PAN_MAX_DIGITS:
                break
            if len(digits) >= PAN_MIN_DIGITS and luhn_valid(digits):
                yield first, last + 1


def _hidden_digits(length: int) -> range:
    """Indices (among a PAN's digits) to mask: all but at most BIN + last four, at least six."""
    prefix = max(0, min(VISIBLE_PREFIX, length - VISIBLE_SUFFIX - MIN_HIDDEN_DIGITS))
    return range(prefix, length - VISIBLE_SUFFIX)


def _masked_joined(text: str) -> str | None:
    """``text`` (digit groups joined by single separators) with its PANs masked; None without any."""
    matches = list(_DIGIT_GROUP.finditer(text))
    groups = [match.group() for match in matches]
    hidden: set[int] = set()
    for first, stop in _pan_group_spans(groups):
        positions = [index for match in matches[first:stop] for index in range(match.start(), match.end())]
        hidden.update(positions[digit] for digit in _hidden_digits(len(positions)))
    if not hidden:
        return None
    chars = list(text)
    for index in hidden:
        chars[index] = MASK_CHAR
    return "".join(chars)


def _masked_run(run: str) -> str | None:
    """A numeric run with its PANs masked, or None when it holds none."""
    pieces: list[str] = []
    end = 0
    for match in _JOINED_GROUPS.finditer(run):
        masked = _masked_joined(match.group())
        if masked is not None:
            pieces.extend((run[end : match.start()], masked))
            end = match.end()
    if not pieces:
        return None
    pieces.append(run[end:])
    return "".join(pieces)


def contains_pan(text: str) -> bool:
    """Whether ``text`` holds a PAN: 12-19 digits, Luhn-valid, delimited as a number (see module doc)."""
    if _MAYBE_PAN.search(text) is None:
        return False
    return any(_masked_run(match.group()) is not None for match in _NUMERIC_RUN.finditer(text))


def mask_pans(text: str) -> str:
    """Mask every PAN in ``text`` to at most its BIN and last four digits (separators kept)."""
    if _MAYBE_PAN.search(text) is None:
        return text

    def replace(match: re.Match[str]) -> str:
        masked = _masked_run(match.group())
        return match.group() if masked is None else masked

    return _NUMERIC_RUN.sub(replace, text)


def mask_identifier(value: str) -> str:
    """An identifier with every PAN in it masked to at most BIN + last four (``411111******1111``).

    The result has the same length and stays a valid output identifier (``*`` is allowed there);
    an identifier without a PAN comes back unchanged.
    """
    return mask_pans(value)


def _replace_e164(match: re.Match[str]) -> str:
    """``[PHONE]`` for the longest E.164-shaped prefix of 7-15 digits, the rest of the match kept."""
    text = match.group()
    groups = list(_DIGIT_GROUP.finditer(text))
    count = len(groups[0].group())
    stop = 1
    if count < _PHONE_MIN_DIGITS:
        # Written in groups ("+44 20 7946 0958"): take following groups while they fit.
        while stop < len(groups):
            separator = text[groups[stop - 1].end() : groups[stop].start()]
            size = len(groups[stop].group())
            if _E164_SEPARATOR.fullmatch(separator) is None or count + size > _PHONE_MAX_DIGITS:
                break
            count += size
            stop += 1
    if not _PHONE_MIN_DIGITS <= count <= _PHONE_MAX_DIGITS:
        return text
    end = groups[stop - 1].end()
    if stop < len(groups) or end < len(text):
        # A closing parenthesis right after the last digit belongs to the number.
        end += 1 if text[end : end + 1] == ")" else 0
    return PHONE_PLACEHOLDER + text[end:]


def redact_text(text: str) -> str:
    """Free text made safe to write: PANs masked; e-mails, phone numbers and SSN-like ids replaced.

    Used for every error message, dead-letter value and log line. Timestamps, decimal amounts,
    BINs, MCCs, Kafka offsets and ``topic[partition]@offset`` coordinates are left as they are.
    """
    if "@" in text:
        text = _EMAIL.sub(EMAIL_PLACEHOLDER, text)
    text = mask_pans(text)
    if "+" in text:
        text = _E164.sub(_replace_e164, text)
    text = _NANP.sub(PHONE_PLACEHOLDER, text)
    return _SSN.sub(SSN_PLACEHOLDER, text)


def is_sensitive_key(key: str) -> bool:
    """Whether a field name denotes authentication data or a secret (CVV, PIN, track, password)."""
    tokens = [token.lower() for token in _KEY_TOKEN.findall(key)]
    if any(token in _SENSITIVE_TOKENS for token in tokens):
        return True
    return "".join(tokens) in _SENSITIVE_JOINED
