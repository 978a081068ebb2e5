"""Personal data planted upstream never comes back out of a real worker, and real-world ids are never refused.

A librdkafka producer writes, keyed by account as bank services do: events whose ids are realistic
(UUIDs, hex hashes, network tokens, ULIDs, 23-digit ARNs) and events with card numbers of every length
12-19, SSNs, names, streets, e-mails and phone numbers planted in known and unknown fields (a card
number is also the record key of some). A ``riskstream worker`` process with the real model scores
them; then every score, dead letter (values, keys, headers), the worker's log and its metrics are
searched for what was planted.
"""

from __future__ import annotations

import json
import random
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from inference.synthetic import generate
from tests.schemas.corpora import ID_KINDS, realistic_ids
from tests.worker import rdkafka
from tests.worker.harness import make_topics, wait_until
from tests.worker.test_privacy import assert_clean, planted_records
from worker.tools.kit import WorkerProcess
from worker.tools.verify import read_topic


def _realistic_events(count: int) -> list[tuple[bytes, bytes, None]]:
    ids = [value for _, value in realistic_ids(ID_KINDS, per_kind=max(1, count // len(ID_KINDS) + 1))]
    rng = random.Random(3)
    rng.shuffle(ids)
    records = []
    for index, item in enumerate(generate(count, seed=21)):
        body = json.loads(item.event.model_dump_json())
        body["transaction_id"] = ids[index % len(ids)][:64]
        body["account_id"] = ids[(index * 7 + 1) % len(ids)][:64]
        body["device_id"] = ids[(index * 13 + 2) % len(ids)][:64]
        body["card"]["token"] = "".join(ch for ch in ids[(index * 17 + 3) % len(ids)] if ch.isalnum())[:64]
        records.append((body["account_id"].encode(), json.dumps(body).encode(), None))
    return records


def test_planted_personal_data_never_leaves_the_worker_and_real_ids_are_scored(
    kafka: Any, topic_factory: Callable[..., str], serving_model: Path, tmp_path: Path
) -> None:
    topics = make_topics(topic_factory, 3)
    realistic = _realistic_events(1200)
    planted, pans = planted_records(seed=9)
    keyed = []
    for raw in planted:
        body = json.loads(raw)
        keyed.append((str(body.get("account_id", "acct-x")).encode(), raw, None))
    producer = rdkafka.producer(kafka.bootstrap_servers, **{"compression.type": "lz4"})
    sent = rdkafka.produce_all(producer, topics.input, [*realistic, *keyed])

    settings = {
        "kafka": {"bootstrap_servers": kafka.bootstrap_servers},
        "topics": {"input": topics.input, "scores": topics.scores, "dead_letters": topics.dead_letters},
        "group_id": topics.group,
        "worker_id": f"privacy-{uuid.uuid4().hex[:8]}",
        "model": {"dir": str(serving_model), "device": "cpu"},
        "observability": {"log_level": "debug"},
    }
    worker = WorkerProcess(settings, tmp_path / "worker.log")
    try:
        worker.wait_ready()
        wait_until(
            lambda: (
                worker.metric("riskstream_events_scored_total") + worker.metric("riskstream_dead_letters_total") >= sent
            ),
            120,
            "every record's outcome",
        )
        metrics = worker.get("/metrics")[1]
        masked = worker.metric("riskstream_pan_masked_total")
    finally:
        assert worker.stop() == 0, worker.tail()

    scores = list(read_topic(kafka.config(), topics.scores))
    letters = list(read_topic(kafka.config(), topics.dead_letters))
    assert len(scores) + len(letters) == sent
    reasons = Counter(json.loads(record.value)["error_type"] for record in letters)
    # Realistic ids are never refused: the only card numbers found are the planted free-text ones.
    assert reasons["pan_detected"] == len(planted) // 4, reasons
    assert {json.loads(r.value)["transaction_id"] for r in scores} >= {
        json.loads(value)["transaction_id"][:64] for _, value, _ in realistic
    }
    assert masked >= len(planted) // 2  # card numbers used as ids: scored, masked, counted
    for record in [*scores, *letters]:
        texts = [record.value.decode(), (record.key or b"").decode(), *(v.decode() for _, v in record.headers or ())]
        assert_clean(" ".join(texts), pans)
    assert_clean(metrics, pans)
    assert_clean((tmp_path / "worker.log").read_text(errors="replace"), pans)
