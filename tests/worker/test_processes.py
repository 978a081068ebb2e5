"""``riskstream worker --processes N``: N members of one group on one device, answering on one port."""

from __future__ import annotations

import signal
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from tests.worker.harness import make_topics, produce_events, wait_until
from worker.processes import child_settings, merge_expositions
from worker.settings import load_settings
from worker.tools.kit import WorkerProcess
from worker.tools.verify import verify

CHILD_0 = """# HELP riskstream_events_consumed_total Records taken.
# TYPE riskstream_events_consumed_total counter
riskstream_events_consumed_total 12.0
# HELP riskstream_batch_size Events scored per batch.
# TYPE riskstream_batch_size histogram
riskstream_batch_size_bucket{le="1.0"} 2.0
riskstream_batch_size_bucket{le="+Inf"} 3.0
riskstream_batch_size_count 3.0
riskstream_batch_size_sum 12.0
"""


def test_each_child_is_its_own_worker_with_a_share_of_the_cores() -> None:
    settings = load_settings(worker_id="pod-7", observability={"metrics_port": 9108})
    children = [child_settings(settings, index, 2) for index in range(2)]
    assert [child.worker_id for child in children] == ["pod-7-0", "pod-7-1"]
    assert all(child.observability.metrics_port == 0 for child in children)  # the supervisor owns 9108
    assert all(child.model.threads is not None and child.model.threads >= 1 for child in children)
    assert children[0].transactional_id != children[1].transactional_id


def test_the_supervisor_merges_the_childrens_metrics_with_a_process_label() -> None:
    merged = merge_expositions([CHILD_0, None, CHILD_0.replace("12.0", "30.0")])
    families = {family.name: family for family in text_string_to_metric_families(merged)}
    consumed = {s.labels["process"]: s.value for s in families["riskstream_events_consumed"].samples}
    assert consumed == {"0": 12.0, "2": 30.0}
    assert families["riskstream_batch_size"].type == "histogram"
    assert merged.count("# TYPE riskstream_batch_size histogram") == 1
    assert "# TYPE riskstream_events_consumed_total counter" in merged


def test_two_processes_score_every_event_and_stop_together(
    kafka: Any, topic_factory: Callable[..., str], serving_model: Path, tmp_path: Path, producer_factory: Any
) -> None:
    topics = make_topics(topic_factory, 4)
    settings = {
        "kafka": {"bootstrap_servers": kafka.bootstrap_servers},
        "topics": {"input": topics.input, "scores": topics.scores, "dead_letters": topics.dead_letters},
        "group_id": topics.group,
        "worker_id": f"pod-{uuid.uuid4().hex[:6]}",
        "model": {"dir": str(serving_model), "device": "cpu"},
        "processes": 2,
    }
    worker = WorkerProcess(settings, tmp_path / "worker.log")
    try:
        worker.wait_ready()
        # Both members hold partitions (the group split the four between them) before the load starts.
        wait_until(lambda: worker.get("/readyz")[1].count("partitions assigned") == 2, 60, "both processes assigned")
        sent = produce_events(producer_factory(), topics.input, 3000, poison_rate=0.01, seed=31, rate=1500)
        wait_until(
            lambda: (
                worker.metric("riskstream_events_scored_total") + worker.metric("riskstream_dead_letters_total") >= sent
            ),
            120,
            "every outcome",
        )
        consumed = {labels["process"]: value for labels, value in worker.samples("riskstream_events_consumed_total")}
    finally:
        worker.signal(signal.SIGTERM)
        code = worker.wait(90)
        worker.stop()
    assert code == 0, worker.tail()
    assert set(consumed) == {"0", "1"} and all(value > 0 for value in consumed.values()), consumed
    report = verify(
        kafka.config(),
        input_topic=topics.input,
        scores_topic=topics.scores,
        dead_letter_topic=topics.dead_letters,
        group_id=topics.group,
    )
    assert report.inputs == sent and report.lost == [] and report.order_violations == [], report.summary()
    assert report.committed_behind == {}
