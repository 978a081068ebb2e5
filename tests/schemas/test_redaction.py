"""Redaction: PANs are masked to at most BIN + last four; CVV/PIN-like fields are dropped."""

from __future__ import annotations

import json
import random
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.redaction import (
    contains_pan,
    drop_sensitive_fields,
    is_sensitive_key,
    luhn_valid,
    mask_pans,
    redact_payload,
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
    [("4111111111111111", True), ("5555555555554444", True), ("378282246310005", True),
     ("4111111111111112", False), ("79927398713", True), ("0", True)],
)  # fmt: skip
def test_luhn(number: str, valid: bool) -> None:
    assert luhn_valid(number) is valid


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("4111111111111111", "411111******1111"),
        ("pay 4111 1111 1111 1111 now", "pay 4111 11** **** 1111 now"),
        ("4111-1111-1111-1111", "4111-11**-****-1111"),
        ("378282246310005", "378282*****0005"),
        ("4111111111111112", "4111111111111112"),  # not Luhn-valid: left alone
        ("order 123456789012", "order 123456789012"),  # 12 digits: too short for a PAN
        ("41111111111111111234", "411111**********1234"),  # PAN glued to more digits
    ],
)
def test_mask_pans(text: str, expected: str) -> None:
    assert mask_pans(text) == expected


@settings(max_examples=300, deadline=None)
@given(st.integers(min_value=13, max_value=19), st.integers(0, 2**32), st.text(max_size=20), st.text(max_size=20))
def test_any_pan_in_any_text_is_masked_to_bin_and_last_four(length: int, seed: int, before: str, after: str) -> None:
    pan = make_pan(random.Random(seed), length)
    text = f"{before} {pan} {after}"
    masked = mask_pans(text)
    assert pan not in masked
    assert not contains_pan(masked)
    start = len(before) + 1
    shown = masked[start : start + length]
    # The middle is always hidden; BIN and last four may be hidden too when a neighbouring number
    # happens to form another Luhn-valid candidate (masking more is always allowed).
    assert shown[6:-4] == "*" * (length - 10)
    assert all(c in (p, "*") for c, p in zip(shown, pan, strict=True))
    assert mask_pans(masked) == masked


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="0123456789 -ab", max_size=80))
def test_masked_text_never_contains_a_pan(text: str) -> None:
    masked = mask_pans(text)
    assert not contains_pan(masked)
    assert len(masked) == len(text)
    # Only digits are ever replaced.
    assert all(a == b or (a.isdigit() and b == "*") for a, b in zip(text, masked, strict=True))


@pytest.mark.parametrize(
    "key", ["cvv", "CVV2", "cvc", "card_cvc2", "cardCvv", "pin", "pinBlock", "PIN_BLOCK", "securityCode",
            "card_verification_value", "track2", "password", "client_secret"],
)  # fmt: skip
def test_sensitive_keys(key: str) -> None:
    assert is_sensitive_key(key)


@pytest.mark.parametrize("key", ["shipping", "spinner", "amount", "pan_last4", "account_id", "opinion"])
def test_ordinary_keys(key: str) -> None:
    assert not is_sensitive_key(key)


def test_drop_sensitive_fields_at_any_depth() -> None:
    value = {"a": 1, "cvv": "123", "card": {"pin": "0000", "bin": "411111"}, "list": [{"cvc2": "1"}, 2]}
    assert drop_sensitive_fields(value) == {"a": 1, "card": {"bin": "411111"}, "list": [{}, 2]}


def test_redact_payload_json() -> None:
    raw = json.dumps({"note": "card 4111111111111111", "cvv": "123", "nested": {"pinBlock": "ABCD"}}).encode()
    text, truncated = redact_payload(raw)
    assert not truncated
    assert json.loads(text) == {"note": "card 411111******1111", "nested": {}}


def test_redact_payload_malformed_json_still_blanks_sensitive_values() -> None:
    text, _ = redact_payload(b'{"cvv": "123", "cvc2": 987, "pan": "4111111111111111", ')
    assert "123" not in text and "987" not in text
    assert "4111111111111111" not in text
    assert re.search(r'"cvv"\s*:\s*"\[REDACTED\]"', text)


def test_redact_payload_truncates_after_masking() -> None:
    # A PAN straddling the cut must not leave more than BIN + last four visible.
    raw = ("x" * 4090 + "4111111111111111").encode()
    text, truncated = redact_payload(raw, limit=4096)
    assert truncated and len(text) == 4096
    assert text.endswith("411111")


def test_redact_oversized_payload_keeps_only_a_redacted_prefix() -> None:
    raw = b"4111111111111111 " * 200_000
    text, truncated = redact_payload(raw, limit=1000, parse_limit=65536)
    assert truncated and len(text) == 1000
    assert not contains_pan(text)


def test_redact_payload_non_utf8() -> None:
    text, _ = redact_payload(b"\xff\xfe 4111111111111111")
    assert "\ufffd" in text and not contains_pan(text)
