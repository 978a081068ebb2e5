"""Redaction: PANs masked to at most BIN + last four; e-mails, phones and SSNs replaced; ids left alone."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.redaction import (
    contains_pan,
    is_sensitive_key,
    luhn_valid,
    mask_identifier,
    mask_pans,
    redact_text,
)


def make_pan(rng: random.Random, length: int) -> str:
    """A random Luhn-valid number of ``length`` digits."""
    body = [rng.randint(0, 9) for _ in range(length - 1)]
    for check in range(10):
        candidate = "".join(map(str, [*body, check]))
        if luhn_valid(candidate):
            return candidate
    raise AssertionError("unreachable: one check digit always fits")


@pytest.mark.parametrize(
    ("number", "valid"),
    [
        ("4111111111111111", True),
        ("5555555555554444", True),
        ("378282246310005", True),
        ("4111111111111112", False),
        ("79927398713", True),
        ("0", True),
    ],
)
def test_luhn(number: str, valid: bool) -> None:
    assert luhn_valid(number) is valid


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("4111111111111111", "411111******1111"),
        ("pay 4111 1111 1111 1111 now", "pay 4111 11** **** 1111 now"),
        ("4111-1111-1111-1111", "4111-11**-****-1111"),
        ("3782 822463 10005", "3782 8***** *0005"),  # Amex 4-6-5: at least six digits always hidden
        ("378282246310005", "37828******0005"),
        ("4111111111111112", "4111111111111112"),  # not Luhn-valid: left alone
        ("order 500000000009", "order 50******0009"),  # 12 digits (Maestro starts at 12): first 2 + last 4
        ("order 500000000008", "order 500000000008"),
        ("qty 2 4111 1111 1111 1111 ref 7", "qty 2 4111 11** **** 1111 ref 7"),  # next to other numbers
        ("card:4111111111111111;", "card:411111******1111;"),
        ("(4111111111111111)", "(411111******1111)"),
        ("-4111111111111111-", "-411111******1111-"),
        # Not delimited as a number: inside an identifier, a hex string or a token.
        ("txn-4111111111111111", "txn-4111111111111111"),
        ("a3f4111111111111111b", "a3f4111111111111111b"),
        ("tok_4111111111111111", "tok_4111111111111111"),
        ("4111111111111111x", "4111111111111111x"),
        ("4111 1111 1111 1111abc", "4111 1111 1111 1111abc"),  # the last group is part of a word
        # More than 19 digits in one group is another kind of number (an ARN has 23).
        ("41111111111111111234", "41111111111111111234"),
        ("74111111111111111111114", "74111111111111111111114"),
        # Double separators do not join groups.
        ("4111  1111  1111  1111", "4111  1111  1111  1111"),
        ("4111--1111--1111--1111", "4111--1111--1111--1111"),
    ],
)
def test_mask_pans(text: str, expected: str) -> None:
    assert mask_pans(text) == expected
    assert contains_pan(text) is (expected != text)


@settings(max_examples=300, deadline=None)
@given(
    st.integers(min_value=12, max_value=19),
    st.integers(0, 2**32),
    st.text(max_size=20),
    st.text(max_size=20),
    st.sampled_from(" ,.;:()[]\"'=/\n"),
)
def test_any_delimited_pan_in_any_text_is_masked_to_bin_and_last_four(
    length: int, seed: int, before: str, after: str, delimiter: str
) -> None:
    pan = make_pan(random.Random(seed), length)
    text = f"{before}{delimiter}{pan}{delimiter}{after}"
    masked = mask_pans(text)
    assert pan not in masked
    assert not contains_pan(masked)
    start = len(before) + 1
    shown = masked[start : start + length]
    # At least six digits are hidden, and nothing but the first six and last four may show; those
    # may be hidden too when a neighbouring number forms another Luhn-valid candidate.
    prefix = min(6, length - 10)
    assert shown[prefix:-4] == "*" * (length - 4 - prefix)
    assert all(c in (p, "*") for c, p in zip(shown, pan, strict=True))
    assert mask_pans(masked) == masked


@settings(max_examples=300, deadline=None)
@given(st.integers(min_value=12, max_value=19), st.integers(0, 2**32), st.sampled_from("abcXYZ_"), st.booleans())
def test_a_pan_glued_to_a_letter_or_underscore_is_part_of_an_identifier(
    length: int, seed: int, glue: str, before: bool
) -> None:
    pan = make_pan(random.Random(seed), length)
    word = f"{glue}{pan}" if before else f"{pan}{glue}"
    assert not contains_pan(word) and mask_pans(word) == word
    assert not contains_pan(f"id {word} end")


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=20, max_value=40), st.integers(0, 2**32))
def test_a_single_digit_group_longer_than_nineteen_is_never_a_pan(length: int, seed: int) -> None:
    rng = random.Random(seed)
    number = str(rng.randint(1, 9)) + "".join(str(rng.randint(0, 9)) for _ in range(length - 1))
    assert not contains_pan(number) and mask_pans(number) == number


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="0123456789 -ab", max_size=80))
def test_masked_text_never_contains_a_pan(text: str) -> None:
    masked = mask_pans(text)
    assert not contains_pan(masked)
    assert len(masked) == len(text)
    # Only digits are ever replaced.
    assert all(a == b or (a.isdigit() and b == "*") for a, b in zip(text, masked, strict=True))


@pytest.mark.parametrize(
    "key",
    [
        "cvv",
        "CVV2",
        "cvc",
        "card_cvc2",
        "cardCvv",
        "pin",
        "pinBlock",
        "PIN_BLOCK",
        "securityCode",
        "card_verification_value",
        "track2",
        "password",
        "client_secret",
    ],
)
def test_sensitive_keys(key: str) -> None:
    assert is_sensitive_key(key)


@pytest.mark.parametrize("key", ["shipping", "spinner", "amount", "pan_last4", "account_id", "opinion"])
def test_ordinary_keys(key: str) -> None:
    assert not is_sensitive_key(key)


def test_mask_identifier_keeps_the_shape_of_the_identifier() -> None:
    assert mask_identifier("4111111111111111") == "411111******1111"
    assert mask_identifier("acct:5555-5555-5555-4444") == "acct:5555-55**-****-4444"
    assert mask_identifier("7f3c2a9e-4b1d-4c8e-9a6f-2d5e8b1c0a47") == "7f3c2a9e-4b1d-4c8e-9a6f-2d5e8b1c0a47"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("mail john.smith+fraud@example.co.uk now", "mail [EMAIL] now"),
        ("<Ana.Lopez@bank-mail.es>", "<[EMAIL]>"),
        ("call +1 (415) 555-2671 today", "call [PHONE] today"),
        ("+44 20 7946 0958.", "[PHONE]."),
        ("+33 1 23 45 67 89", "[PHONE]"),
        ("+4930123456", "[PHONE]"),
        ("+14155552671 2026-11-28", "[PHONE] 2026-11-28"),
        ("(415) 555-2671", "[PHONE]"),
        ("415-555-2671", "[PHONE]"),
        ("415.555.2671", "[PHONE]"),
        ("tel (415) 555 2671", "tel [PHONE]"),
        ("1-800-555-1234", "[PHONE]"),
        ("ssn 123-45-6789, alt 123 45 6789", "ssn [SSN], alt [SSN]"),
        ("card 4111 1111 1111 1111 of ana@example.org", "card 4111 11** **** 1111 of [EMAIL]"),
    ],
)
def test_redact_text_replaces_personal_data(text: str, expected: str) -> None:
    assert redact_text(text) == expected


@pytest.mark.parametrize(
    "line",
    [
        "batch scored size=64 offsets=transactions[3]@123456-123519 at 2026-11-28T16:59:09.123456+01:00",
        "event_time=2026-11-28T16:59:09Z amount=129.90 currency=EUR bin=411111 last4=1111 mcc=5411",
        "commit transactions[11]@1234567 and transactions[2]@99 (lag 1234)",
        "latency_ms=12.345 p99=0.0421 rate=2000.0/s ratio=1.5e+20 exp=2e-05 tz=+05:30 -08:00",
        "amounts 1234567.89 99.99 0.0001 1000000000.0000",
        "epoch 1795890853 window 2026-11-28 16:59:09 .. 2026-11-28 17:00:00",
        "merchant m-77 mcc 5411 country DE ip 10.20.30.40:9092 broker-1.kafka.svc:9093",
        "uuid 7f3c2a9e-4b1d-4c8e-9a6f-2d5e8b1c0a47 sha a94a8fe5ccb19ba61c4c0873d391e987982fbbd3",
        "sizes 128 256 512 1024, shape (64, 32), version 3.9.0, pid 12345",
    ],
)
def test_redact_text_leaves_log_line_numbers_alone(line: str) -> None:
    assert redact_text(line) == line


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=80))
def test_redact_text_is_idempotent_and_leaves_no_pan(text: str) -> None:
    redacted = redact_text(text)
    assert not contains_pan(redacted)
    assert redact_text(redacted) == redacted
