"""``riskstream produce --from``: replays a file as it is, whole, and reports bad lines without their content."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from inference.synthetic import generate, write_jsonl
from worker.cli import app
from worker.tools.produce import BadLine, read_event_file
from worker.tools.verify import read_topic

SECRET_NAME = "Margaret Hamilton-Oyelaran"
SSN = "078-05-1120"


def _bad_lines() -> list[str]:
    good = json.loads(next(iter(generate(1, seed=5))).event.model_dump_json())
    with_personal_data = {**good, "customer_name": SECRET_NAME, "ssn": SSN}
    broken_amount = {**good, "amount": f"{SSN}"}
    return [
        '{"transaction_id": "t-1", "note": "' + SECRET_NAME + '"',  # malformed JSON
        json.dumps(with_personal_data),  # unknown fields holding personal data
        json.dumps(broken_amount),
        json.dumps([SECRET_NAME]),
        json.dumps({**good, "is_fraud": "yes"}),
    ]


def test_bad_lines_are_reported_by_number_and_reason_only(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    items = list(generate(4, seed=6))
    lines = [items[0].event.model_dump_json(), *_bad_lines(), ""]
    lines.append(json.dumps({"event": json.loads(items[1].event.model_dump_json()), "is_fraud": True}))
    lines.append(json.dumps({**json.loads(items[2].event.model_dump_json()), "is_fraud": False}))
    path.write_text("\n".join(lines) + "\n")
    bad: list[BadLine] = []
    read = list(read_event_file(path, bad))
    assert [(event.transaction_id, label) for event, label in read] == [
        (items[0].event.transaction_id, None),
        (items[1].event.transaction_id, True),
        (items[2].event.transaction_id, False),
    ]
    assert [line.number for line in bad] == [2, 3, 4, 5, 6]
    kinds = [line.reason.split(":", 1)[0] for line in bad]
    assert kinds == ["malformed_json", "schema_invalid", "schema_invalid", "not_an_object", "schema_invalid"]
    assert "customer_name" in bad[1].reason  # the field is named ...
    for line in bad:  # ... its value never is
        assert SECRET_NAME not in line.reason and SSN not in line.reason and "Hamilton" not in line.reason


def test_produce_from_sends_the_whole_file_with_its_own_event_times(
    kafka: Any, topic_factory: Callable[..., str], tmp_path: Path
) -> None:
    topic = topic_factory(2)
    path = tmp_path / "history.jsonl"
    items = list(generate(10_050, seed=7))
    write_jsonl(path, items)
    with path.open("a") as extra:
        extra.write("\n".join(_bad_lines()) + "\n")
    env = {"RISKSTREAM_KAFKA__BOOTSTRAP_SERVERS": kafka.bootstrap_servers}
    result = CliRunner().invoke(app, ["produce", "--topic", topic, "--from", str(path), "--rate", "0"], env=env)
    assert result.exit_code == 1, result.output
    assert "sent 10050 records" in result.output
    assert "5 lines of" in result.output and "line 10051: malformed_json" in result.output
    assert SECRET_NAME not in result.output and SSN not in result.output
    sent = {
        json.loads(record.value)["transaction_id"]: json.loads(record.value)
        for record in read_topic(kafka.config(), topic)
    }
    assert len(sent) == 10_050
    for item in items[:200]:
        assert sent[item.event.transaction_id]["event_time"] == item.event.model_dump(mode="json")["event_time"]
