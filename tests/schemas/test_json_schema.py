"""The checked-in JSON Schemas are exactly what the models generate (regenerate on any change)."""

from __future__ import annotations

import json

import pytest

from schemas.export import JSON_DIR, export_json_schemas, render, schema_documents


@pytest.mark.parametrize("name", sorted(schema_documents()))
def test_checked_in_schema_is_current(name: str) -> None:
    path = JSON_DIR / name
    assert path.exists(), f"{path} is missing: run `riskstream schema export`"
    assert path.read_text(encoding="utf-8") == render(schema_documents()[name]), (
        f"{path} is stale: run `riskstream schema export` and commit the result"
    )


def test_export_writes_every_document(tmp_path: pytest.TempPathFactory) -> None:
    written = export_json_schemas(tmp_path)  # type: ignore[arg-type]
    assert sorted(p.name for p in written) == sorted(schema_documents())
    for path in written:
        document = json.loads(path.read_text())
        assert document["additionalProperties"] is False
        assert "properties" in document
