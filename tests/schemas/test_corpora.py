"""Card-number detection against corpora: real-format PANs are caught in every field, realistic ids never.

* PAN corpus: every brand and length 12-19 (``corpora.BRANDS``), three numbers per issuer prefix
  and length, each written plain, spaced and dashed in its brand's groups, in a dozen free-text
  contexts and five identifier contexts.
* Realistic-id corpus: UUIDs, SHA-256/SHA-1/MD5 hex, Stripe-style ``ch_``/``tok_``/``pi_`` ids,
  network-token-like alphanumerics, ULIDs, hex with long digit runs, prefixed digit ids, 23-digit
  ARNs (1,000 of each), plus pure-digit ids (18-19 digit Snowflakes, 16-digit accounts, 15-digit
  merchant ids), and merchant names with ISO timestamps, decimal amounts and epoch seconds.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any

import pytest

from schemas import DecodeError, ErrorKind, TransactionEvent, build_dead_letter, decode
from schemas.decode import IDENTIFIER_FIELDS, identifier_fields_with_pan
from schemas.redaction import contains_pan, mask_identifier, mask_pans, redact_text
from tests.schemas.corpora import (
    DIGIT_ID_KINDS,
    ID_KINDS,
    IDENTIFIER_CONTEXTS,
    TEXT_CONTEXTS,
    IdMaker,
    Pan,
    pan_corpus,
    realistic_free_text,
    realistic_ids,
)
from tests.schemas.test_decode import valid_event

PANS = pan_corpus()
NOW = datetime(2026, 11, 28, tzinfo=UTC)


def event_with(path: str, value: Any) -> bytes:
    event = valid_event()
    target = event
    *parents, leaf = path.split(".")
    for part in parents:
        target = target[part]
    target[leaf] = value
    return json.dumps(event).encode()


def assert_masked(written: str, masked: str) -> None:
    """``masked`` is ``written`` (a formatted PAN) with at most BIN + last four visible, six hidden."""
    assert len(masked) == len(written)
    digits = [i for i, char in enumerate(written) if char.isdigit()]
    visible = [i for n, i in enumerate(digits) if masked[i] == written[i]]
    hidden = [i for i in digits if masked[i] == "*"]
    assert len(visible) + len(hidden) == len(digits), masked
    assert len(hidden) >= 6, masked
    # Visible digits are only ever the first six and the last four.
    assert all(n < 6 or n >= len(digits) - 4 for n, i in enumerate(digits) if i in visible), masked
    assert all(a == b for a, b in zip(written, masked, strict=True) if not a.isdigit())


def test_the_pan_corpus_covers_every_brand_and_length() -> None:
    assert {len(pan.digits) for pan in PANS} == set(range(12, 20))
    assert {pan.brand for pan in PANS} >= {"visa", "mastercard", "amex", "discover", "diners", "jcb", "maestro"}
    assert len(PANS) >= 200


@pytest.mark.parametrize("context", TEXT_CONTEXTS)
def test_every_pan_in_every_text_context_is_caught_and_masked(context: str) -> None:
    checked = 0
    for pan in PANS:
        for written in pan.formats().values():
            text = context.format(written)
            assert contains_pan(text), text
            masked = mask_pans(text)
            start = context.index("{}")
            assert_masked(written, masked[start : start + len(written)])
            assert masked[:start] == text[:start] and masked[start + len(written) :] == text[start + len(written) :]
            assert not contains_pan(masked)
            assert pan.digits not in re.sub(r"\D", "", redact_text(text))
            checked += 1
    assert checked >= 600


def test_every_pan_as_an_identifier_is_masked_but_the_event_is_scored() -> None:
    for pan in PANS:
        for written in (pan.digits, pan.formats()["dashed0"]):
            for context in IDENTIFIER_CONTEXTS:
                value = context.format(written)[:64]
                for path in IDENTIFIER_FIELDS:
                    if path == "card.token" and not re.fullmatch(r"[A-Za-z0-9_-]{8,64}", value):
                        continue  # not a valid token shape at all: a schema error, not a PAN question
                    payload = event_with(path, value)
                    event = decode(payload)
                    assert isinstance(event, TransactionEvent), (path, event)
                    assert identifier_fields_with_pan(event) == (path,)
                    masked = mask_identifier(value)
                    assert not contains_pan(masked)
                    start = value.index(written)
                    assert_masked(written, masked[start : start + len(written)])
                    refused = decode(payload, refuse_pan_in_identifiers=True)
                    assert isinstance(refused, DecodeError) and refused.kind is ErrorKind.PAN_DETECTED
                    assert refused.fields == (path,)


def _dead_letter_wire(payload: bytes, kind: ErrorKind, error: str, key: bytes | None = None) -> str:
    letter = build_dead_letter(
        topic="transactions",
        partition=0,
        offset=1,
        timestamp=NOW,
        key=key,
        value=payload,
        kind=kind,
        error=error,
        worker_id="w-1",
        failed_time=NOW,
    )
    return letter.model_dump_json()


def test_every_pan_in_free_text_is_refused_and_its_dead_letter_shows_at_most_bin_and_last_four() -> None:
    for pan in PANS:
        for written in pan.formats().values():
            name = f"refund to {written}."
            payload = event_with("merchant.name", name)
            result = decode(payload)
            assert isinstance(result, DecodeError) and result.kind is ErrorKind.PAN_DETECTED, result
            wire = _dead_letter_wire(payload, result.kind, result.message, key=pan.digits.encode())
            assert not contains_pan(wire)
            letter = json.loads(wire)
            kept_name = json.loads(letter["payload"])["merchant"]["name"]
            assert_masked(written, kept_name[len("refund to ") : -1])
            assert_masked(pan.digits, letter["source"]["key"])


def test_a_pan_in_an_unknown_field_leaves_only_the_field_name_in_the_dead_letter() -> None:
    for pan in PANS[::3]:
        for written in pan.formats().values():
            payload = event_with("customer_note", f"my card is {written}")
            result = decode(payload)
            assert isinstance(result, DecodeError) and result.kind is ErrorKind.SCHEMA_INVALID
            letter = json.loads(_dead_letter_wire(payload, result.kind, result.message))
            assert letter["unknown_fields"] == ["customer_note"]
            # The payload is exactly the event's known fields: nothing of the note's value is left.
            assert json.loads(letter["payload"]) == valid_event()
            assert written not in json.dumps(letter) and "my card" not in json.dumps(letter)


def _events_with_ids(kinds: dict[str, IdMaker], per_kind: int) -> list[tuple[str, str, bytes]]:
    out = []
    for index, (kind, value) in enumerate(realistic_ids(kinds, per_kind)):
        path = IDENTIFIER_FIELDS[index % len(IDENTIFIER_FIELDS)]
        out.append((kind, path, event_with(path, value)))
    return out


def test_realistic_identifiers_are_never_refused_nor_masked() -> None:
    events = _events_with_ids(ID_KINDS, per_kind=1000)
    assert len(events) == 1000 * len(ID_KINDS)
    refused = masked = 0
    for kind, path, payload in events:
        result = decode(payload)
        assert isinstance(result, TransactionEvent), (kind, path, result)
        refused += isinstance(decode(payload, refuse_pan_in_identifiers=True), DecodeError)
        masked += bool(identifier_fields_with_pan(result))
    assert (refused, masked) == (0, 0)


def test_pure_digit_identifiers_are_scored_and_masked_only_when_luhn_valid() -> None:
    """A 15-19 digit id IS card-number shaped: Luhn-valid ones (about one in ten) are masked, never refused."""
    events = _events_with_ids(DIGIT_ID_KINDS, per_kind=1000)
    masked = 0
    for kind, path, payload in events:
        result = decode(payload)
        assert isinstance(result, TransactionEvent), (kind, path, result)
        value = json.loads(payload)
        for part in path.split("."):
            value = value[part]
        flagged = identifier_fields_with_pan(result)
        assert flagged == ((path,) if contains_pan(value) else ())
        masked += bool(flagged)
    assert 0.07 < masked / len(events) < 0.13  # Luhn passes one number in ten


def test_realistic_free_text_is_never_refused() -> None:
    names = list(realistic_free_text(3000))
    for name in names:
        result = decode(event_with("merchant.name", name))
        assert isinstance(result, TransactionEvent), (name, result)
        assert redact_text(name) == name  # timestamps, amounts, epochs, MCCs and BINs survive redaction


def test_corpus_pans_have_valid_structure() -> None:
    # The corpus itself: real prefixes, Luhn-valid, and every format holds exactly the digits.
    for pan in PANS:
        assert isinstance(pan, Pan) and pan.digits.isdigit()
        for written in pan.formats().values():
            assert re.sub(r"\D", "", written) == pan.digits
