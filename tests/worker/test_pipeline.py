"""Stream mechanics against the real broker with a fake model: every record accounted for."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.worker.fakes import fake_loaded
from tests.worker.harness import make_topics, produce_events, running_worker, wait_committed, worker_settings
from worker.tools.verify import verify


@pytest.mark.parametrize("guarantee", ["at_least_once", "exactly_once"])
def test_every_record_becomes_one_outcome(
    kafka: Any, topic_factory: Callable[..., str], producer_factory: Callable[..., Any], guarantee: str
) -> None:
    topics = make_topics(topic_factory, 4)
    sent = produce_events(producer_factory(), topics.input, 3000, poison_rate=0.02, seed=3)
    settings = worker_settings(kafka.bootstrap_servers, topics, guarantee=guarantee)
    with running_worker(settings, fake_loaded()):
        wait_committed(kafka.config(), topics, timeout_s=60)
    report = verify(
        kafka.config(),
        input_topic=topics.input,
        scores_topic=topics.scores,
        dead_letter_topic=topics.dead_letters,
        group_id=topics.group,
    )
    assert report.inputs == sent
    assert report.lost == [] and report.duplicates == 0, report.summary()
    assert report.order_violations == []
    assert report.committed_behind == {}
    assert report.dead_letters > 0 and report.scores + report.dead_letters == sent
    assert report.pans_found == 0
