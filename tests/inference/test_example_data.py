"""The foreign-format example: genuinely foreign, mappable without loss, personal data present and dropped."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from inference.data import read_labelled
from inference.example_data import FLAT_COLUMNS, PERSONAL_COLUMNS, example_rows, write_example
from schemas.mapping import load_mapping


@pytest.fixture(scope="module")
def example(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("example")
    return {fmt: write_example(root / fmt, rows=1_500, seed=4, fmt=fmt).data for fmt in ("csv", "jsonl", "parquet")}


def test_the_csv_is_unlike_the_wire_schema(example: dict[str, Path]) -> None:
    text = example["csv"].read_text(encoding="utf-8")
    header, first = text.splitlines()[:2]
    assert header.split("|") == list(FLAT_COLUMNS)
    row = dict(zip(FLAT_COLUMNS, first.split("|"), strict=True))
    assert row["booked_at"].isdigit() and row["amt_minor"].isdigit()  # epoch seconds, minor units
    assert not row["merchant_category"].isdigit()  # a category name, not an MCC
    assert row["channel_cd"] in {"P", "E", "A", "M", "R", "I"}
    assert "******" in row["card_masked"]
    for name in ("event_time", "merchant", "mcc", "amount", "currency"):
        assert name not in header.split("|")
    assert all(row[name] for name in PERSONAL_COLUMNS)


def test_every_layout_maps_to_the_same_events(example: dict[str, Path]) -> None:
    results = {
        fmt: read_labelled(path, mapping=load_mapping(path.parent / "mapping.toml")) for fmt, path in example.items()
    }
    events, labels, bad = results["csv"]
    assert bad.count == 0 and len(events) == 1_500
    assert 0 < sum(labels) < 100
    for fmt in ("jsonl", "parquet"):
        other_events, other_labels, other_bad = results[fmt]
        assert other_bad.count == 0
        assert other_events == events and other_labels == labels, fmt


def test_the_mapping_drops_every_personal_column(example: dict[str, Path]) -> None:
    mapping = load_mapping(example["csv"].parent / "mapping.toml")
    assert set(mapping.dropped_paths) == set(PERSONAL_COLUMNS)
    json_mapping = load_mapping(example["jsonl"].parent / "mapping.toml")
    assert {path.split(".")[-1] for path in json_mapping.dropped_paths} == {
        "name",
        "address",
        "email",
        "phone",
        "national_id",
    }
    with example["csv"].open(encoding="utf-8", newline="") as source:
        rows = list(csv.DictReader(source, delimiter="|"))
    personal = {row[name] for row in rows for name in PERSONAL_COLUMNS}
    events, _, _ = read_labelled(example["csv"], mapping=mapping)
    wire = "\n".join(event.model_dump_json() for event in events)
    leaked = [value for value in personal if value in wire]
    assert not leaked


def test_generation_is_deterministic_and_labels_follow_the_generator() -> None:
    assert list(example_rows(300, seed=9)) == list(example_rows(300, seed=9))
    assert list(example_rows(300, seed=9)) != list(example_rows(300, seed=10))
    rows = list(example_rows(4_000, seed=1, fraud_rate=0.05))
    fraud = [row for row in rows if row["chargeback"] == "Y" or row["confirmed_fraud"] == "1"]
    assert 0.04 < len(fraud) / len(rows) < 0.07


def test_json_layout_is_nested(example: dict[str, Path]) -> None:
    first = json.loads(example["jsonl"].read_text(encoding="utf-8").splitlines()[0])
    assert set(first["customer"]) == {"no", "name", "address", "email", "phone", "national_id"}
    assert isinstance(first["amount"]["minor"], int)
