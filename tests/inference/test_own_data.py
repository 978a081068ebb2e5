"""The whole own-data path on the foreign example (slow): data example -> train -> evaluate -> thresholds -> serve.

Also: the CLI trains exactly what the library's own functions train (same weights for a seed), and
at least as well as the synthetic recipe's hand-set bucket edges; and no personal value of the
source ever reaches an output.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from inference.data import read_labelled
from inference.dataset import prepare_events
from inference.example_data import PERSONAL_COLUMNS
from inference.metrics import roc_auc
from inference.scorer import Scorer
from inference.train import train_on_data, train_prepared
from schemas.mapping import load_mapping
from worker.cli import app

pytestmark = pytest.mark.slow
runner = CliRunner()
ROWS = 10_000


def _invoke(args: list[str], outputs: list[str]) -> Any:
    result = runner.invoke(app, args)
    outputs.append(result.output)
    assert result.exit_code == 0, result.output
    return result


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One pass through every command, the way docs/own-data.md walks it; outputs kept for checks."""
    root = tmp_path_factory.mktemp("own-data")
    outputs: list[str] = []
    data, mapping, model = root / "transactions.csv", root / "mapping.toml", root / "model"
    _invoke(
        ["data", "example", "--out", str(root), "--rows", str(ROWS), "--seed", "3", "--fraud-rate", "0.03"], outputs
    )
    trained = _invoke(
        [
            "train",
            "--out",
            str(model),
            "--preset",
            "tiny",
            "--data",
            str(data),
            "--mapping",
            str(mapping),
            "--threads",
            "1",
            "--json",
        ],
        outputs,
    )
    record = json.loads(trained.stdout)
    since = record["data"]["split"]["holdout_from"]
    evaluated = _invoke(
        [
            "evaluate",
            "--model",
            str(model),
            "--data",
            str(data),
            "--mapping",
            str(mapping),
            "--since",
            since,
            "--plots",
            str(root / "plots"),
            "--seconds",
            "0.05",
            "--buckets",
            "64",
            "--json",
        ],
        outputs,
    )
    tuned = _invoke(
        [
            "thresholds",
            "--model",
            str(model),
            "--data",
            str(data),
            "--mapping",
            str(mapping),
            "--since",
            since,
            "--review-rate",
            "2%",
            "--decline-rate",
            "0.5%",
            "--json",
        ],
        outputs,
    )
    shown = _invoke(
        [
            "thresholds",
            "--model",
            str(model),
            "--data",
            str(data),
            "--mapping",
            str(mapping),
            "--review-recall",
            "80%",
            "--dry-run",
        ],
        outputs,
    )
    return {
        "root": root,
        "data": data,
        "mapping": mapping,
        "model": model,
        "train": record,
        "evaluate": json.loads(evaluated.stdout),
        "thresholds": json.loads(tuned.stdout),
        "dry_run": shown.stdout,
        "outputs": outputs,
    }


def test_train_reports_time_split_sets(run: dict[str, Any]) -> None:
    data = run["train"]["data"]
    sets = data["sets"]
    assert sets["train"]["rows"] + sets["validation"]["rows"] + sets["holdout"]["rows"] == ROWS
    assert sets["holdout"]["first"] >= sets["validation"]["last"] >= sets["train"]["last"]
    assert all(sets[name]["fraud"] > 0 for name in ("train", "validation", "holdout"))
    assert data["bad_rows"]["count"] == 0 and data["source"]["label"] == "mapping [label]"
    assert run["train"]["holdout_auc"] > 0.85  # tiny model, 8,000 rows: it learned the bank's patterns


def test_evaluate_reports_the_table_and_writes_the_plots(run: dict[str, Any]) -> None:
    report = run["evaluate"]
    holdout = run["train"]["data"]["sets"]["holdout"]
    assert report["events"] == holdout["rows"] and report["fraud_events"] == holdout["fraud"]
    for variant in ("fp32", "int8", "bf16"):
        table = report["variants"][variant]["operating_table"]
        assert len(table) == 7 and all(0.0 <= row["recall"] <= 1.0 for row in table)
    # evaluate on the holdout period reproduces what train measured there
    assert report["variants"]["fp32"]["auc"] == pytest.approx(run["train"]["holdout_auc"], abs=1e-6)
    for path in report["plots"]:
        assert Path(path).stat().st_size > 1_000


def test_thresholds_make_a_new_version_that_serves(run: dict[str, Any]) -> None:
    change = run["thresholds"]
    assert change["written"] and change["new_version"] != change["old_version"]
    assert change["expected_new"]["review"]["alert_rate"] == pytest.approx(0.02, abs=0.002)
    assert "would write version" in run["dry_run"]
    scorer = Scorer.load(run["model"])
    assert scorer.info.version == change["new_version"]
    assert scorer.thresholds.review == change["new"]["review"]
    events, labels, _ = read_labelled(run["data"], mapping=load_mapping(run["mapping"]))
    scores = scorer.score([scorer.featurize(event) for event in events[-2_000:]]).scores
    assert np.isfinite(scores).all() and roc_auc(labels[-2_000:], scores) > 0.8


def test_no_personal_value_reaches_any_output(run: dict[str, Any]) -> None:
    with run["data"].open(encoding="utf-8", newline="") as source:
        personal = {row[name] for row in csv.DictReader(source, delimiter="|") for name in PERSONAL_COLUMNS}
    texts = list(run["outputs"])
    texts += [path.read_text(encoding="utf-8") for path in run["model"].iterdir() if path.suffix == ".json"]
    texts.append(json.dumps(run["evaluate"]))
    everything = "\n".join(texts)
    assert len(personal) > 1_000
    assert [value for value in personal if value in everything] == []


def test_cli_training_equals_the_library_path_and_beats_fixed_edges(run: dict[str, Any], tmp_path: Path) -> None:
    events, labels, _ = read_labelled(run["data"], mapping=load_mapping(run["mapping"]))
    library = train_prepared(
        tmp_path / "library", prepare_events(events, labels, seed=0), preset="tiny", seed=0, threads=1
    )
    fixed = train_prepared(
        tmp_path / "fixed", prepare_events(events, labels, seed=0, fit_edges=False), preset="tiny", seed=0, threads=1
    )
    cli_auc = run["train"]["holdout_auc"]
    print(f"\nholdout AUC: CLI {cli_auc:.4f}, library {library.holdout_auc:.4f}, fixed edges {fixed.holdout_auc:.4f}")
    cli_weights = json.loads((run["model"] / "riskstream.json").read_text())["weights_sha256"]
    assert library.metadata.weights_sha256 == cli_weights
    assert library.holdout_auc == pytest.approx(cli_auc, abs=1e-6)
    assert cli_auc >= fixed.holdout_auc - 0.02


def test_training_on_a_file_is_deterministic_for_a_seed(run: dict[str, Any], tmp_path: Path) -> None:
    mapping = load_mapping(run["mapping"])
    options: dict[str, Any] = {
        "mapping": mapping,
        "preset": "tiny",
        "threads": 1,
        "max_epochs": 1,
        "split": "time+account",
    }
    first = train_on_data(tmp_path / "a", run["data"], seed=7, **options)
    second = train_on_data(tmp_path / "b", run["data"], seed=7, **options)
    other = train_on_data(tmp_path / "c", run["data"], seed=8, **options)
    assert first.metadata.weights_sha256 == second.metadata.weights_sha256
    assert first.metadata.training["data"] == {
        **second.metadata.training["data"],
        "source": first.metadata.training["data"]["source"],
    }
    assert other.metadata.weights_sha256 != first.metadata.weights_sha256
    assert first.metadata.training["data"]["sets"]["unused"]["rows"] > 0


def test_a_worker_reads_the_banks_topic_through_the_mapping(
    run: dict[str, Any], kafka: Any, topic_factory: Any, tmp_path: Path
) -> None:
    """Serving: the bank's rows go to Kafka as they are (personal columns included); a worker with the
    mapping scores every one, and no dropped column's value reaches a score, a dead letter, its log or
    its metrics."""
    from tests.worker.harness import make_topics, wait_until
    from worker.tools.kit import WorkerProcess
    from worker.tools.verify import verify

    topics = make_topics(topic_factory, 3)
    env = {"RISKSTREAM_KAFKA__BOOTSTRAP_SERVERS": kafka.bootstrap_servers}
    produced = runner.invoke(
        app,
        [
            "produce",
            "--topic",
            topics.input,
            "--from",
            str(run["data"]),
            "--mapping",
            str(run["mapping"]),
            "--rate",
            "0",
        ],
        env=env,
    )
    assert produced.exit_code == 0, produced.output
    assert f"sent {ROWS} records" in produced.output
    # Two records the mapping refuses, each carrying personal data: dead letters naming the path, not the value.
    from kafka import KafkaProducer

    with open(run["data"], encoding="utf-8", newline="") as source:
        first = next(csv.DictReader(source, delimiter="|"))
    broken = [{**first, "amt_minor": first["customer_name"]}, {**first, "booked_at": first["email"]}]
    producer = KafkaProducer(**kafka.config())
    for row in broken:
        producer.send(topics.input, key=b"bad", value=json.dumps(row).encode())
    producer.flush()
    producer.close()

    settings = {
        "kafka": {"bootstrap_servers": kafka.bootstrap_servers},
        "topics": {"input": topics.input, "scores": topics.scores, "dead_letters": topics.dead_letters},
        "group_id": topics.group,
        "worker_id": "own-data-0",
        "input": {"mapping": str(run["mapping"])},
        "model": {"dir": str(run["model"]), "device": "cpu"},
    }
    worker = WorkerProcess(settings, tmp_path / "worker.log")
    try:
        worker.wait_ready()
        total = ROWS + len(broken)
        wait_until(
            lambda: (
                worker.metric("riskstream_events_scored_total") + worker.metric("riskstream_dead_letters_total")
                >= total
            ),
            180,
            "every record's outcome",
        )
        metrics = worker.get("/metrics")[1]
    finally:
        assert worker.stop() == 0, worker.tail()
    report = verify(
        kafka.config(),
        input_topic=topics.input,
        scores_topic=topics.scores,
        dead_letter_topic=topics.dead_letters,
        group_id=topics.group,
    )
    assert report.inputs == total and report.lost == [] and report.duplicates == 0, report.summary()
    assert report.scores == ROWS and report.dead_letter_reasons == {"mapping_failed": 2}, report.summary()

    from worker.tools.verify import read_topic

    outputs = [
        r.value.decode() for topic in (topics.scores, topics.dead_letters) for r in read_topic(kafka.config(), topic)
    ]
    letters = [json.loads(text) for text in outputs if '"error_type"' in text]
    assert {letter["error"].split(":")[1].strip() for letter in letters} == {
        "amt_minor (-> amount)",
        "booked_at (-> event_time)",
    }
    with run["data"].open(encoding="utf-8", newline="") as source:
        personal = {row[name] for row in csv.DictReader(source, delimiter="|") for name in PERSONAL_COLUMNS}
    everything = "\n".join([*outputs, metrics, (tmp_path / "worker.log").read_text(errors="replace")])
    assert [value for value in personal if value in everything] == []
