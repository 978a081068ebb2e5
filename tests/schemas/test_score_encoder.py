"""``ScoreEncoder`` writes exactly what ``RiskScore(...).model_dump_json()`` writes, and the JSON Schema accepts it.

The worker encodes every score with the encoder's fast path; pydantic stays the schema of record.
These tests compare the two byte for byte over generated scores, over the realistic values the
worker writes (rounded scores and latencies, the offsets real events carry) and over the values the
fast path hands to pydantic, and check the fast path is really the one taken for the usual values.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from jsonschema import Draft202012Validator
from pydantic import ValidationError

from inference.synthetic import generate
from schemas import Decision, ModelRef, RiskScore, ScoreEncoder, TransactionEvent, decode, mask_identifier
from schemas.export import JSON_DIR
from tests.schemas.strategies import risk_scores

VALIDATOR = Draft202012Validator(json.loads((JSON_DIR / "risk_score.v1.json").read_text(encoding="utf-8")))
MODEL = ModelRef(name="riskstream-deepseek", version="2026.12.1", quantization="int8", device="cpu")
WORKER = "riskstream-0.pod-7f9c"


class CountingEncoder(ScoreEncoder):
    """Counts the scores that took the validated (pydantic) path after construction."""

    validated = -1  # the constructor validates its worker id and model once

    def __init__(self, model: ModelRef, worker_id: str) -> None:
        super().__init__(model, worker_id)
        assert self.validated == 0

    def _validated(self, **fields: Any) -> RiskScore:
        self.validated = self.validated + 1
        return super()._validated(**fields)


def fields_of(score: RiskScore) -> dict[str, Any]:
    dumped = dict(score)
    source = dumped.pop("source")
    for name in ("schema_version", "model", "worker_id"):
        dumped.pop(name)
    return {**dumped, "topic": source.topic, "partition": source.partition, "offset": source.offset}


def both(encoder: ScoreEncoder, **fields: Any) -> tuple[bytes, bytes]:
    expected = RiskScore(
        model=MODEL,
        worker_id=WORKER,
        source={"topic": fields["topic"], "partition": fields["partition"], "offset": fields["offset"]},
        **{k: v for k, v in fields.items() if k not in ("topic", "partition", "offset")},
    )
    return encoder.encode(**fields), expected.model_dump_json().encode()


def usual_fields(**change: Any) -> dict[str, Any]:
    """Ordinary values for every field the encoder takes, with ``change`` applied."""
    return {
        "transaction_id": "txn-1",
        "account_id": "acct-1",
        "score": 0.5,
        "decision": Decision.DECLINE,
        "event_time": datetime(2026, 1, 1, tzinfo=UTC),
        "scored_time": datetime(2026, 1, 1, 0, 0, 1, tzinfo=UTC),
        "latency_ms": 12.25,
        "batch_size": 4,
        "late": True,
        "topic": "transactions",
        "partition": 3,
        "offset": 42,
        **change,
    }


@given(risk_scores)
def test_any_valid_score_is_written_as_pydantic_writes_it(score: RiskScore) -> None:
    encoder = ScoreEncoder(score.model, score.worker_id)
    written = encoder.encode(**fields_of(score))
    assert written == score.model_dump_json().encode()
    assert RiskScore.model_validate_json(written) == score


def test_the_scores_the_worker_writes_take_the_fast_path_and_match_pydantic() -> None:
    encoder = CountingEncoder(MODEL, WORKER)
    now = datetime(2026, 12, 2, 1, 40, 5, 123456, tzinfo=UTC)
    batch_times = [now + timedelta(microseconds=batch * 49_999) for batch in range(40)]
    checked = 0
    for index, labelled in enumerate(generate(2_000, seed=11)):
        event = labelled.event
        raw_score = ((index * 7919) % 10_007) / 10_007
        fields = {
            "transaction_id": mask_identifier(event.transaction_id),
            "account_id": mask_identifier(event.account_id),
            "score": round(raw_score, 6),
            "decision": (Decision.APPROVE, Decision.REVIEW, Decision.DECLINE)[index % 3],
            "event_time": event.event_time,
            "scored_time": batch_times[index // 50],  # one per batch, as the worker writes them
            "latency_ms": round(index * 0.731, 3),
            "batch_size": 1 + index % 256,
            "late": index % 5 == 0,
            "topic": "transactions",
            "partition": index % 12,
            "offset": 1_000_000 + index,
        }
        fast, expected = both(encoder, **fields)
        assert fast == expected
        assert not list(VALIDATOR.iter_errors(json.loads(fast)))
        checked += 1
    assert checked == 2_000
    assert encoder.validated == 0, "the usual values must not need the validated path"


def test_events_decoded_from_the_wire_keep_their_offsets_exactly() -> None:
    encoder = CountingEncoder(MODEL, WORKER)
    wire = next(generate(1, seed=3)).event.model_dump(mode="json")
    for text in (
        "2026-11-28T16:59:09Z",
        "2026-11-28T16:59:09.5+05:30",
        "2026-11-28T16:59:09-00:00",
        "2026-11-28T16:59:09.000001-09:45",
    ):
        event = decode(json.dumps({**wire, "event_time": text}).encode())
        assert isinstance(event, TransactionEvent), event
        fast, expected = both(encoder, **usual_fields(event_time=event.event_time, scored_time=event.event_time))
        assert fast == expected
    assert encoder.validated == 0


@pytest.mark.parametrize(
    ("change", "value"),
    [
        ("score", 1e-06),  # pydantic writes 1e-6, repr 1e-06
        ("score", 0.0),
        ("score", 1.0),
        ("latency_ms", 1e16),  # exponent form
        ("latency_ms", 0.0001),
        ("event_time", datetime(2026, 1, 1, tzinfo=timezone(timedelta(seconds=30)))),  # pydantic drops the seconds
        ("event_time", datetime(2026, 1, 1, tzinfo=timezone(timedelta(hours=-1, microseconds=5)))),
        ("event_time", datetime(2026, 7, 1, 12, tzinfo=ZoneInfo("Europe/Amsterdam"))),
        ("scored_time", datetime(2026, 1, 1, tzinfo=ZoneInfo("UTC"))),
        ("scored_time", datetime(2026, 1, 1, tzinfo=timezone(timedelta(0)))),
        ("transaction_id", "411111******1111"),
        ("account_id", "acct:ÿ-unicode"),
        ("topic", "tx.v1_in-2"),
    ],
)
def test_edge_values_are_written_as_pydantic_writes_them(change: str, value: Any) -> None:
    fields = usual_fields(**{change: value})
    try:
        expected = both(ScoreEncoder(MODEL, WORKER), **fields)[1]
    except ValidationError:
        with pytest.raises(ValidationError):
            ScoreEncoder(MODEL, WORKER).encode(**fields)
        return
    assert ScoreEncoder(MODEL, WORKER).encode(**fields) == expected


@pytest.mark.parametrize(
    ("change", "value"),
    [
        ("score", float("nan")),
        ("score", 1.5),
        ("latency_ms", -1.0),
        ("latency_ms", float("inf")),
        ("batch_size", 0),
        ("offset", -1),
        ("transaction_id", 'quote"d'),
        ("topic", "bad topic"),
    ],
)
def test_invalid_values_fail_validation_as_before(change: str, value: Any) -> None:
    fields = usual_fields(**{change: value})
    with pytest.raises(ValidationError):
        ScoreEncoder(MODEL, WORKER).encode(**fields)


def test_an_invalid_worker_id_is_refused_when_the_encoder_is_built() -> None:
    with pytest.raises(ValidationError):
        ScoreEncoder(MODEL, "not a valid id")
