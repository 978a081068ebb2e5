"""``RiskScore`` v1: what riskstream publishes to the scores topic, one per scored event."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Literal

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
