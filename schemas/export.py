"""JSON Schema documents for the wire messages, as checked in under ``schemas/json/``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from schemas.dead_letter import DeadLetter
from schemas.events import TransactionEvent
from schemas.scores import RiskScore

JSON_DIR = Path(__file__).parent / "json"


def schema_documents() -> dict[str, dict[str, Any]]:
    """File name -> JSON Schema. Inputs use the validation view, outputs the serialization view."""
    return {
        "transaction_event.v1.json": TransactionEvent.model_json_schema(mode="validation"),
        "risk_score.v1.json": RiskScore.model_json_schema(mode="serialization"),
        "dead_letter.v1.json": DeadLetter.model_json_schema(mode="serialization"),
    }


def render(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2, sort_keys=True) + "\n"


def export_json_schemas(directory: Path = JSON_DIR) -> list[Path]:
    """Write every schema document into ``directory``; returns the paths written."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, document in schema_documents().items():
        path = directory / name
        path.write_text(render(document), encoding="utf-8")
        written.append(path)
    return written
