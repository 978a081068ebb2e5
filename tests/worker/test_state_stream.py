"""Account state on the real broker: a worker serving a history model (tiny-sequence) keeps each
account's history beside its scores, and the changelog and the scores equal one clean pass.

Also: a restart on the same local store reads only the changelog's tail, a new pod (empty store)
restores everything, and a changelog topic that does not fit fails start-up with one line.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaAdminClient, KafkaProducer
from kafka.admin import NewTopic

from tests.worker.harness import Topics, make_topics, produce_events, wait_until
from worker.errors import EXIT_TOPICS
from worker.tools.kit import WorkerProcess
from worker.tools.state_check import check_state
from worker.tools.verify import verify

pytestmark = pytest.mark.slow
PARTITIONS = 3


def settings_for(
    kafka: Any, topics: Topics, model: Path, state_dir: Path, worker_id: str, **extra: Any
) -> dict[str, Any]:
    return {
        "kafka": {"bootstrap_servers": kafka.bootstrap_servers},
        "topics": {
            "input": topics.input,
            "scores": topics.scores,
            "dead_letters": topics.dead_letters,
            "create_missing": True,
        },
        "group_id": topics.group,
        "worker_id": worker_id,
        "guarantee": "exactly_once",
        # fp32: int8 dynamic quantization scales activations per batch, so a score would depend on
        # which events shared its batch; fp32 scores agree within 1e-5 whatever the batching.
        "model": {"dir": str(model), "device": "cpu", "quantization": "fp32", "threads": 1},
        "state": {"dir": str(state_dir)},
        "consumer": {"session_timeout_ms": 6000, "heartbeat_interval_ms": 500},
        **extra,
    }


def outcomes(worker: WorkerProcess) -> float:
    return worker.metric("riskstream_events_scored_total") + worker.metric("riskstream_dead_letters_total")


def run_until(worker: WorkerProcess, total: int) -> None:
    worker.wait_ready(assigned=True)
    wait_until(lambda: outcomes(worker) >= total, 180, f"{total} outcomes")


def test_state_and_scores_equal_a_clean_pass_and_survive_restarts(
    kafka: Any, topic_factory: Callable[..., str], serving_history_model: Path, tmp_path: Path
) -> None:
    topics = make_topics(topic_factory, PARTITIONS)
    changelog = f"{topics.input}.state"
    producer = KafkaProducer(**kafka.config())
    sent = produce_events(producer, topics.input, 3_000, poison_rate=0.01, seed=11)
    store = tmp_path / "state"
    worker = WorkerProcess(settings_for(kafka, topics, serving_history_model, store, "state-0"), tmp_path / "w0.log")
    try:
        run_until(worker, sent)
        # Every partition's store holds its accounts (the gauges refresh every 2 s).
        wait_until(
            lambda: sum(value for _labels, value in worker.samples("riskstream_state_accounts")) >= 300,
            30,
            "the state gauges",
        )
    finally:
        assert worker.stop() == 0, worker.tail()
    report = check_state(
        kafka.config(),
        input_topic=topics.input,
        scores_topic=topics.scores,
        changelog_topic=changelog,
        model_dir=serving_history_model,
    )
    assert report.events > 2_900 and report.state_equal, report.summary()
    assert report.scores_compared == report.events and report.score_mismatches == [], report.summary()
    repeat = report.events - report.accounts
    assert repeat > 1_000  # most events had earlier ones of their account to be scored against

    # The same pod again (same store): only the changelog's tail is read.
    sent += produce_events(producer, topics.input, 1_000, seed=12)
    again = WorkerProcess(settings_for(kafka, topics, serving_history_model, store, "state-0"), tmp_path / "w1.log")
    try:
        run_until(again, sent - 3_000)
        restored_again = again.metric("riskstream_state_restored_records_total")
    finally:
        assert again.stop() == 0, again.tail()
    assert restored_again == 0, again.tail()

    # A new pod (an empty store): the whole changelog, then the same equality.
    sent += produce_events(producer, topics.input, 1_000, seed=13)
    producer.close()
    fresh = WorkerProcess(
        settings_for(kafka, topics, serving_history_model, tmp_path / "other-node", "state-1"), tmp_path / "w2.log"
    )
    try:
        run_until(fresh, sent - 4_000)
        restored_fresh = fresh.metric("riskstream_state_restored_records_total")
    finally:
        assert fresh.stop() == 0, fresh.tail()
    assert restored_fresh >= report.accounts
    lines = [json.loads(line) for line in fresh.log_path.read_text().splitlines() if line.startswith("{")]
    restores = [line for line in lines if line.get("event") == "state restored"]
    assert len(restores) == PARTITIONS and all(line["from_offset"] == 0 for line in restores)
    final = check_state(
        kafka.config(),
        input_topic=topics.input,
        scores_topic=topics.scores,
        changelog_topic=changelog,
        model_dir=serving_history_model,
    )
    assert final.state_equal and final.score_mismatches == [], final.summary()
    verdict = verify(
        kafka.config(),
        input_topic=topics.input,
        scores_topic=topics.scores,
        dead_letter_topic=topics.dead_letters,
        group_id=topics.group,
    )
    assert verdict.lost == [] and verdict.duplicates == 0 and verdict.pans_found == 0, verdict.summary()


@pytest.mark.parametrize(
    ("partitions", "configs", "expected"),
    [
        (2, {"cleanup.policy": "compact"}, f"2 partitions, not the input's {PARTITIONS}"),
        (PARTITIONS, {"cleanup.policy": "delete"}, "cleanup.policy=delete, not compact"),
    ],
    ids=["partitions", "cleanup-policy"],
)
def test_a_changelog_that_does_not_fit_fails_start_up_in_one_line(
    kafka: Any,
    topic_factory: Callable[..., str],
    serving_history_model: Path,
    tmp_path: Path,
    partitions: int,
    configs: dict[str, str],
    expected: str,
) -> None:
    topics = make_topics(topic_factory, PARTITIONS)
    admin = KafkaAdminClient(**kafka.config())
    try:
        admin.create_topics([NewTopic(f"{topics.input}.state", partitions, 1, topic_configs=configs)])
    finally:
        admin.close()
    worker = WorkerProcess(
        settings_for(kafka, topics, serving_history_model, tmp_path / "state", "misfit"), tmp_path / "w.log"
    )
    try:
        assert worker.wait(120) == EXIT_TOPICS, worker.tail()
    finally:
        worker.stop()
    errors = []  # the command's "error:" line, and anything logged at warning level or above
    for line in worker.log_path.read_text().splitlines():
        if line.startswith("{"):
            if json.loads(line).get("level") in ("warning", "error", "critical"):
                errors.append(line)
        elif line.strip():
            errors.append(line)
    assert len(errors) == 1 and errors[0].startswith("error: ") and expected in errors[0], errors
