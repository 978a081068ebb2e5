"""Planted personal data never reaches a score, a dead letter value, a log line or a metric (no broker).

Card numbers of every length 12-19, SSNs, names, streets, e-mails and phone numbers are planted in
known fields (identifiers, the merchant name) and unknown fields; every record goes through decode
and the OutcomeWriter as the worker runs them, and every outcome is checked. (The output record's
Kafka key is the worker's to mask; it is not checked here.)
"""

from __future__ import annotations

import io
import json
import logging
import random
import re
from datetime import UTC, datetime
from typing import Any

import numpy as np
import structlog
from kafka.structs import TopicPartition
from prometheus_client import CollectorRegistry, Counter

from schemas import DecodeError, ErrorKind, TransactionEvent, decode
from schemas.redaction import contains_pan
from tests.schemas.corpora import make_pan
from tests.schemas.test_decode import valid_event
from tests.worker.test_publisher import _Engine
from worker.health import exposition
from worker.logs import configure_logging
from worker.publisher import OutcomeWriter
from worker.records import ConsumedRecord, ScoredBatch

NAME, STREET, EMAIL, PHONE, SSN = (
    "Ana María López",
    "Calle de Alcalá 42",
    "ana.lopez@example.es",
    "+34 612 345 678",
    "123-45-6789",
)
SECRETS = (NAME, STREET, EMAIL, PHONE, SSN, "Alcalá", "ana.lopez", "612 345")


def planted_records(seed: int = 5) -> tuple[list[bytes], list[str]]:
    rng = random.Random(seed)
    pans = [make_pan(rng, prefix, length) for length in range(12, 20) for prefix in ("4", "5", "6")]
    records = []
    for index, pan in enumerate(pans):
        spaced = " ".join(pan[i : i + 4] for i in range(0, len(pan), 4))
        event: dict[str, Any] = valid_event()
        variant = index % 4
        if variant == 0:  # PAN as account id: scored, masked
            event["account_id"] = pan
        elif variant == 1:  # PAN in free text: dead letter
            event["merchant"]["name"] = f"refund {spaced} {EMAIL} {PHONE}"
        elif variant == 2:  # personal data in unknown fields: dead letter, names only
            event.update(customer=NAME, street=STREET, email=EMAIL, phone=PHONE, ssn=SSN, card_number=spaced)
        else:  # PAN as transaction id and device id, e-mail and phone in the merchant name: scored
            event.update(transaction_id=pan, device_id=f"dev:{pan}")
            event["merchant"]["name"] = f"Shop {EMAIL} {PHONE} {SSN}"
        records.append(json.dumps(event, ensure_ascii=False).encode())
    return records, pans


def assert_clean(text: str, pans: list[str]) -> None:
    assert not contains_pan(text), text
    digits_only = re.sub(r"\D", "", text)
    for pan in pans:
        assert pan not in digits_only
    for secret in SECRETS:
        assert secret not in text, (secret, text)


def test_planted_personal_data_never_reaches_an_outcome_a_log_line_or_a_metric() -> None:
    records, pans = planted_records()
    writer = OutcomeWriter(engine=_Engine(), scores_topic="s", dead_letter_topic="d", worker_id="w-1")  # type: ignore[arg-type]
    consumed = []
    for offset, raw in enumerate(records):
        result = decode(raw)
        event = result if isinstance(result, TransactionEvent) else None
        consumed.append(
            ConsumedRecord(
                tp=TopicPartition("transactions", 0),
                offset=offset,
                timestamp_ms=1_700_000_000_000,
                key=None,
                epoch=0,
                arrived_s=0.0,
                late=False,
                event=event,
                features=object() if event else None,
                value=None if event else raw,
                error_kind=result.kind if isinstance(result, DecodeError) else None,
                error=result.message if isinstance(result, DecodeError) else None,
            )
        )
    batch = ScoredBatch(records=consumed, scores=np.full(len(consumed), 0.5, dtype=np.float32))
    outgoing = writer.write(batch, datetime.now(UTC))
    kinds = [json.loads(out.value).get("error_type", "score") for out in outgoing]
    assert kinds.count("score") == len(records) // 2
    assert kinds.count(ErrorKind.PAN_DETECTED.value) == kinds.count(ErrorKind.SCHEMA_INVALID.value) == len(records) // 4
    for out in outgoing:
        assert_clean(out.value.decode(), pans)
        assert_clean(" ".join(value.decode() for _, value in out.headers), pans)

    stream = io.StringIO()
    configure_logging("debug", "json", stream)
    try:
        log = structlog.get_logger("privacy")
        for record, raw in zip(consumed, records, strict=True):
            log.warning("careless", error=record.error, raw=raw, decoded=repr(record.event))
    finally:
        structlog.reset_defaults()
        logging.getLogger().handlers.clear()
    assert_clean(stream.getvalue(), pans)

    registry = CollectorRegistry()
    counter = Counter("riskstream_test_records", "r", ["topic"], registry=registry)
    for raw in records:
        counter.labels(raw.decode()[:200]).inc()
    assert_clean(exposition(registry).decode(), pans)
