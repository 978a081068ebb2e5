"""Readers: chunked, bad rows counted by location and reason (never content), file-level errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from inference.data import BadRows, DataError, RecordReader, count_lines, read_labelled
from inference.example_data import FLAT_COLUMNS, example_rows, write_example
from inference.synthetic import generate, write_jsonl
from schemas.mapping import load_mapping

SECRET_NAME = "Zebulon Quackenbush"
SECRET_ID = "078-05-1120"


def _write_csv(path: Path, rows: list[dict[str, str]], columns: tuple[str, ...] = FLAT_COLUMNS) -> Path:
    lines = ["|".join(columns)] + ["|".join(row.get(name, "") for name in columns) for row in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def foreign(tmp_path: Path) -> Path:
    """The example mapping next to a CSV the tests write themselves."""
    write_example(tmp_path, rows=10, seed=1)
    return tmp_path


def test_bad_rows_are_counted_with_line_and_reason_never_content(foreign: Path) -> None:
    rows = list(example_rows(40, seed=2))
    rows[3]["amt_minor"] = SECRET_ID  # not a number
    rows[7]["booked_at"] = SECRET_NAME  # not a time
    rows[11]["channel_cd"] = SECRET_NAME  # not in the channel map
    path = _write_csv(foreign / "bank.csv", rows)
    with path.open("a", encoding="utf-8") as out:
        out.write(f"{SECRET_NAME}|{SECRET_ID}|too|few|fields\n")  # line 42
    mapping = load_mapping(foreign / "mapping.toml")
    events, labels, bad = read_labelled(path, mapping=mapping)
    assert len(events) == len(labels) == 37
    assert bad.count == 4
    assert bad.by_reason == {
        "amt_minor (-> amount): not_a_number": 1,
        "booked_at (-> event_time): not_a_time": 1,
        "channel_cd (-> channel): unmapped_value": 1,
        "<row>: malformed": 1,
    }
    assert bad.examples[0] == "line 5: amt_minor (-> amount): not_a_number"  # header is line 1
    assert bad.examples[-1] == "line 42: <row>: malformed"
    report = json.dumps(bad.to_json()) + bad.summary()
    assert SECRET_NAME not in report and SECRET_ID not in report


def test_a_bad_row_limit_stops_reading(foreign: Path) -> None:
    rows = list(example_rows(30, seed=2))
    for row in rows[:5]:
        row["amt_minor"] = "x"
    path = _write_csv(foreign / "bank.csv", rows)
    reader = RecordReader(path, mapping=load_mapping(foreign / "mapping.toml"))
    with pytest.raises(DataError, match="too many bad rows: more than 2"):
        list(reader.chunks(BadRows(limit=2)))


def test_file_level_problems_fail_at_open(foreign: Path) -> None:
    mapping = load_mapping(foreign / "mapping.toml")
    rows = list(example_rows(5, seed=2))
    extra = _write_csv(
        foreign / "extra.csv", [{**row, "loyalty_tier": "gold"} for row in rows], (*FLAT_COLUMNS, "loyalty_tier")
    )
    with pytest.raises(DataError, match="loyalty_tier are neither mapped nor dropped"):
        read_labelled(extra, mapping=mapping)
    missing = _write_csv(foreign / "missing.csv", rows, tuple(c for c in FLAT_COLUMNS if c != "ccy"))
    with pytest.raises(DataError, match="lacks mapped column"):
        read_labelled(missing, mapping=mapping)
    with pytest.raises(DataError, match="need a mapping"):
        RecordReader(extra)
    with pytest.raises(DataError, match="does not exist"):
        RecordReader(foreign / "absent.csv", mapping=mapping)
    empty = foreign / "empty.csv"
    empty.write_text("", encoding="utf-8")
    with pytest.raises(DataError, match="empty file"):
        read_labelled(empty, mapping=mapping)
    latin = foreign / "latin.csv"
    latin.write_bytes("|".join(FLAT_COLUMNS).encode() + b"\n\xe9\xe9\n")
    with pytest.raises(DataError, match="not valid utf-8"):
        read_labelled(latin, mapping=mapping)


def test_wire_jsonl_with_a_label_field_and_the_generator_layout(tmp_path: Path) -> None:
    items = list(generate(50, seed=3, fraud_rate=0.2))
    flat = tmp_path / "events.jsonl"
    with flat.open("w", encoding="utf-8") as out:
        for item in items:
            out.write(json.dumps({**json.loads(item.event.model_dump_json()), "confirmed": item.is_fraud}) + "\n")
        out.write('{"transaction_id": "x", "confirmed": true}\n')  # an invalid event
        out.write(json.dumps({**json.loads(items[0].event.model_dump_json())}) + "\n")  # no label
        out.write("not json\n")
    events, labels, bad = read_labelled(flat, label_field="confirmed")
    assert events == [item.event for item in items]
    assert labels == [int(item.is_fraud) for item in items]
    assert bad.count == 3 and bad.by_reason["confirmed (-> label): missing"] == 1
    wrapped = tmp_path / "generated.jsonl"
    write_jsonl(wrapped, items)
    assert read_labelled(wrapped)[:2] == (events, labels)


def test_events_only_ignores_the_label(tmp_path: Path) -> None:
    path = tmp_path / "generated.jsonl"
    write_jsonl(path, generate(20, seed=5))
    reader = RecordReader(path, labels=False)
    chunks = list(reader.chunks(BadRows()))
    assert sum(len(chunk.events) for chunk in chunks) == 20 and all(not chunk.labels for chunk in chunks)


def test_chunks_are_bounded_and_numbered(tmp_path: Path) -> None:
    files = write_example(tmp_path, rows=100, seed=6)
    reader = RecordReader(files.data, mapping=load_mapping(files.mapping), chunk_rows=7)
    seen: list[int] = []
    chunks = list(reader.chunks(BadRows(), on_rows=seen.append))
    assert max(len(chunk.events) for chunk in chunks) == 7
    assert [row for chunk in chunks for row in chunk.rows] == list(range(2, 102))
    assert sum(seen) == 100
    assert reader.row_estimate() == count_lines(files.data) == 101


def test_parquet_rows_are_numbered_and_checked_against_the_schema(tmp_path: Path) -> None:
    files = write_example(tmp_path, rows=30, seed=7, fmt="parquet")
    reader = RecordReader(files.data, mapping=load_mapping(files.mapping), chunk_rows=8)
    assert reader.row_estimate() == 30
    chunks = list(reader.chunks(BadRows()))
    assert [row for chunk in chunks for row in chunk.rows] == list(range(1, 31))
    not_parquet = tmp_path / "broken.parquet"
    not_parquet.write_bytes(b"PAR1 definitely not")
    with pytest.raises(DataError, match="not a readable Parquet file"):
        RecordReader(not_parquet, mapping=load_mapping(files.mapping)).row_estimate()


def test_parquet_without_pyarrow_says_how_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    files = write_example(tmp_path, rows=5, seed=7, fmt="parquet")
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    with pytest.raises(DataError, match=r"pip install 'riskstream\[data\]'"):
        RecordReader(files.data, mapping=load_mapping(files.mapping)).row_estimate()
