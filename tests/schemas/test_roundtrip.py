"""Every valid message survives JSON and back unchanged, and decode() accepts every valid event."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings

from schemas import DeadLetter, RiskScore, TransactionEvent, decode
from tests.schemas.strategies import dead_letters, risk_scores, transaction_events

_SETTINGS = settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow], deadline=None)


@_SETTINGS
@given(transaction_events)
def test_transaction_event_round_trips_through_json(event: TransactionEvent) -> None:
    payload = event.model_dump_json().encode()
    assert TransactionEvent.model_validate_json(payload) == event
    assert decode(payload) == event


@_SETTINGS
@given(risk_scores)
def test_risk_score_round_trips_through_json(score: RiskScore) -> None:
    assert RiskScore.model_validate_json(score.model_dump_json()) == score


@_SETTINGS
@given(dead_letters)
def test_dead_letter_round_trips_through_json(letter: DeadLetter) -> None:
    assert DeadLetter.model_validate_json(letter.model_dump_json()) == letter
