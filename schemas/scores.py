"""``RiskScore`` v1: what riskstream publishes to the scores topic, one per scored event."""

from __future__ import annotations

import json
import math
import re
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, Field, NonNegativeInt, StringConstraints

from schemas.events import WireModel
from schemas.types import Identifier, KafkaTopic, OutputIdentifier

RISK_SCORE_VERSION: Literal[1] = 1

Label = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._:+-]+$")]


class Decision(StrEnum):
    APPROVE = "approve"
    REVIEW = "review"
    DECLINE = "decline"


class ModelRef(WireModel):
    name: Label
    version: Label
    quantization: Label
    device: Label


class SourceRef(WireModel):
    """Where the scored record came from: enough to find it again."""

    topic: KafkaTopic
    partition: NonNegativeInt
    offset: NonNegativeInt


class RiskScore(WireModel):
    schema_version: Literal[1] = RISK_SCORE_VERSION
    # Output identifiers: a card number in the input's id is masked (``411111******1111``).
    transaction_id: OutputIdentifier
    account_id: OutputIdentifier
    score: float = Field(ge=0.0, le=1.0, allow_inf_nan=False, description="Probability-like fraud risk.")
    decision: Decision
    model: ModelRef
    event_time: AwareDatetime
    scored_time: AwareDatetime
    latency_ms: float = Field(
        ge=0.0, allow_inf_nan=False, description="Event time (Kafka CreateTime) to scoring, milliseconds."
    )
    batch_size: int = Field(ge=1)
    late: bool = Field(description="True when the event was already past the latency budget when polled.")
    worker_id: Identifier
    source: SourceRef


_OUTPUT_IDENTIFIER = re.compile(r"[A-Za-z0-9*][A-Za-z0-9._:@/*-]{0,63}")  # OutputIdentifier: nothing to escape
_TOPIC = re.compile(r"[A-Za-z0-9._-]{1,249}")  # KafkaTopic: nothing to escape


class ScoreEncoder:
    """Writes a :class:`RiskScore` as JSON without building the model, byte for byte what
    ``RiskScore(...).model_dump_json()`` writes.

    The worker writes one score per event; validating a fresh pydantic model for each costs more
    than everything else in encoding. The fields are already validated (identifiers come from a
    validated event, the score is clamped and rounded, the model and worker id are checked here
    once), so the fast path only has to format them. Anything it cannot format exactly as pydantic
    does (a float pydantic writes in exponent form, a UTC offset with seconds, an identifier that
    would need escaping, a non-finite number, an out-of-range value) goes through the validated
    model instead, errors included. ``tests/schemas/test_score_encoder.py`` checks the two agree.
    """

    def __init__(self, model: ModelRef, worker_id: str) -> None:
        self._model = ModelRef.model_validate(model.model_dump())
        self._worker_id = worker_id
        # Validated once: the worker id and model are the same in every score this encoder writes.
        probe = self._validated(
            transaction_id="x",
            account_id="x",
            score=0.0,
            decision=Decision.APPROVE,
            event_time=datetime(2000, 1, 1, tzinfo=UTC),
            scored_time=datetime(2000, 1, 1, tzinfo=UTC),
            latency_ms=0.0,
            batch_size=1,
            late=False,
            topic="x",
            partition=0,
            offset=0,
        )
        self._middle = f',"model":{self._model.model_dump_json()},'
        self._worker = f'"worker_id":{json.dumps(probe.worker_id)},'
        self._sources: dict[str, str] = {}
        self._scored_time: datetime | None = None
        self._scored_text: str | None = None

    def encode(
        self,
        *,
        transaction_id: str,
        account_id: str,
        score: float,
        decision: Decision,
        event_time: datetime,
        scored_time: datetime,
        latency_ms: float,
        batch_size: int,
        late: bool,
        topic: str,
        partition: int,
        offset: int,
    ) -> bytes:
        score_text, latency_text = _plain_float(score), _plain_float(latency_ms)
        if scored_time is not self._scored_time:  # one scored_time per batch: format it once
            self._scored_time, self._scored_text = scored_time, _timestamp(scored_time)
        event_text, scored_text = _timestamp(event_time), self._scored_text
        source = self._source(topic)
        if (
            score_text is None
            or not 0.0 <= score <= 1.0
            or latency_text is None
            or latency_ms < 0.0
            or event_text is None
            or scored_text is None
            or source is None
            or type(batch_size) is not int
            or batch_size < 1
            or type(partition) is not int
            or partition < 0
            or type(offset) is not int
            or offset < 0
            or type(late) is not bool
            or type(decision) is not Decision
            or _OUTPUT_IDENTIFIER.fullmatch(transaction_id) is None
            or _OUTPUT_IDENTIFIER.fullmatch(account_id) is None
        ):
            return (
                self._validated(
                    transaction_id=transaction_id,
                    account_id=account_id,
                    score=score,
                    decision=decision,
                    event_time=event_time,
                    scored_time=scored_time,
                    latency_ms=latency_ms,
                    batch_size=batch_size,
                    late=late,
                    topic=topic,
                    partition=partition,
                    offset=offset,
                )
                .model_dump_json()
                .encode()
            )
        return (
            f'{{"schema_version":1,"transaction_id":"{transaction_id}","account_id":"{account_id}",'
            f'"score":{score_text},"decision":"{decision.value}"{self._middle}'
            f'"event_time":"{event_text}","scored_time":"{scored_text}","latency_ms":{latency_text},'
            f'"batch_size":{batch_size},"late":{"true" if late else "false"},{self._worker}'
            f'{source}"partition":{partition},"offset":{offset}}}}}'
        ).encode()

    def _source(self, topic: str) -> str | None:
        prefix = self._sources.get(topic)
        if prefix is None and _TOPIC.fullmatch(topic) is not None:
            prefix = self._sources[topic] = f'"source":{{"topic":"{topic}",'
        return prefix

    def _validated(self, *, topic: str, partition: int, offset: int, **fields: Any) -> RiskScore:
        return RiskScore(
            model=self._model,
            worker_id=self._worker_id,
            source=SourceRef(topic=topic, partition=partition, offset=offset),
            **fields,
        )


def _plain_float(value: float) -> str | None:
    """``repr(value)`` where pydantic writes the same text (finite, no exponent); else None."""
    if type(value) is not float or not math.isfinite(value):
        return None
    text = repr(value)
    return None if "e" in text else text


def _timestamp(moment: datetime) -> str | None:
    """The RFC 3339 text pydantic writes for an aware datetime (``Z`` for UTC); None where it differs."""
    offset = moment.utcoffset()
    if offset is None or offset.microseconds or offset.seconds % 60:
        return None
    text = moment.isoformat()
    return text[:-6] + "Z" if not offset else text
