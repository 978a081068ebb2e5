"""History models: the featurizer against the tokenizer, fixed shapes, replay from parts, the
checkpoint's history section, and scores that do not depend on how a stream is batched."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from tokenizers import Tokenizer

from inference.checkpoint import METADATA_FILE, RiskMetadata, load_checkpoint, read_metadata
from inference.dataset import account_hash, prepare_events
from inference.errors import CheckpointError
from inference.features import UNK_TOKEN, FeatureSpec, Featurizer, build_feature_spec, build_tokenizer
from inference.history import AccountHistory, replay
from inference.model import RowPooledClassifier
from inference.scorer import Scorer
from inference.sequence import (
    AGGREGATE_FIELDS,
    EMPTY_VALUE,
    ROW_FIELDS,
    HistorySpec,
    SequenceFeaturizer,
    history_tokens,
    records_array,
    replay_arrays,
)
from inference.synthetic import LabelledEvent
from inference.synthetic_history import generate_histories
from schemas import TransactionEvent


@pytest.fixture(scope="module")
def world() -> list[LabelledEvent]:
    return list(generate_histories(3_000, seed=21, fraud_rate=0.05))


@pytest.fixture(scope="module")
def spec(world: list[LabelledEvent]) -> FeatureSpec:
    return build_feature_spec((item.event for item in world), min_count=2)


@pytest.fixture(scope="module")
def tokenizer(spec: FeatureSpec) -> Tokenizer:
    return build_tokenizer(spec, history_tokens(spec))


@pytest.fixture(scope="module")
def featurizer(spec: FeatureSpec, tokenizer: Tokenizer) -> SequenceFeaturizer:
    return SequenceFeaturizer(spec, HistorySpec(rows=6), tokenizer.get_vocab())


def _events(world: list[LabelledEvent]) -> list[TransactionEvent]:
    return [item.event for item in world]


def test_ids_are_the_real_tokenizers_ids_of_the_words(
    featurizer: SequenceFeaturizer, tokenizer: Tokenizer, world: list[LabelledEvent]
) -> None:
    events = _events(world)
    ids = replay(events, featurizer.featurize)
    texts = replay(events, featurizer.text)
    unknown = tokenizer.token_to_id(UNK_TOKEN)
    for row, text in zip(ids, texts, strict=True):
        encoded = tokenizer.encode(text).ids
        assert row.tolist() == encoded
        assert unknown not in encoded


def test_every_event_has_the_same_number_of_ids_cold_or_not(
    featurizer: SequenceFeaturizer, tokenizer: Tokenizer, world: list[LabelledEvent]
) -> None:
    events = _events(world)
    ids = np.stack(replay(events, featurizer.featurize))
    assert ids.shape == (len(events), 5 * 6 + len(AGGREGATE_FIELDS) + 16)
    cold = featurizer.featurize(events[-1])
    assert cold.tolist() == featurizer.featurize(events[-1], AccountHistory()).tolist()
    empty = [tokenizer.token_to_id(f"{name}:{EMPTY_VALUE}") for name in ROW_FIELDS] * 6
    assert cold[: len(empty)].tolist() == empty
    assert cold[-16:].tolist() == Featurizer(featurizer.spec, tokenizer.get_vocab()).featurize(events[-1]).tolist()
    busy = [row for row in ids if row[: len(empty)].tolist() != empty]
    assert len(busy) > len(ids) // 2  # most events have a full window of history rows


def test_featurizing_reads_the_history_without_changing_it(
    featurizer: SequenceFeaturizer, world: list[LabelledEvent]
) -> None:
    histories: dict[str, AccountHistory] = {}
    events = _events(world)
    replay(events[:-1], featurizer.featurize, histories)
    history = histories.get(events[-1].account_id, AccountHistory())
    before = history.to_bytes()
    first = featurizer.featurize(events[-1], history)
    assert history.to_bytes() == before
    assert featurizer.featurize(events[-1], history).tolist() == first.tolist()


def test_history_changes_the_ids_of_the_same_event(featurizer: SequenceFeaturizer, world: list[LabelledEvent]) -> None:
    events = _events(world)
    histories: dict[str, AccountHistory] = {}
    replay(events, featurizer.featurize, histories)
    event = events[-1]
    assert featurizer.featurize(event, histories[event.account_id]).tolist() != featurizer.featurize(event).tolist()


def test_replay_from_parts_in_any_row_order_equals_replay_in_time_order(
    featurizer: SequenceFeaturizer, world: list[LabelledEvent]
) -> None:
    events = _events(world)
    expected = np.stack(replay(events, featurizer.featurize))
    shuffled = list(range(len(events)))
    random.Random(3).shuffle(shuffled)
    rows = [events[index] for index in shuffled]
    ids = replay_arrays(
        featurizer,
        featurizer.event_featurizer.featurize_batch(rows),
        records_array(rows),
        np.array([account_hash(event.account_id, 0) for event in rows], dtype=np.uint64),
        np.array([event.event_time.timestamp() for event in rows]),
    )
    np.testing.assert_array_equal(ids, expected[shuffled])
    wanted = np.zeros(len(rows), dtype=bool)
    wanted[::7] = True
    subset = replay_arrays(
        featurizer,
        featurizer.event_featurizer.featurize_batch(rows),
        records_array(rows),
        np.array([account_hash(event.account_id, 0) for event in rows], dtype=np.uint64),
        np.array([event.event_time.timestamp() for event in rows]),
        wanted,
    )
    np.testing.assert_array_equal(subset, expected[shuffled][wanted])


def test_prepared_data_never_lets_a_later_event_into_an_earlier_ones_history(world: list[LabelledEvent]) -> None:
    events = _events(world)
    labels = [int(item.is_fraud) for item in world]
    history = HistorySpec(rows=4)
    prepared = prepare_events(events, labels, split="time", history=history, min_count=2)
    holdout_from = prepared.plan.holdout_from
    assert holdout_from is not None
    # Rewrite every holdout event: no training or validation row may change.
    changed = [
        event.model_copy(update={"amount": event.amount * 7, "device_id": "dev-zzzzzz"})
        if event.event_time.timestamp() >= holdout_from
        else event
        for event in events
    ]
    again = prepare_events(changed, labels, split="time", history=history, min_count=2)
    assert again.spec == prepared.spec
    np.testing.assert_array_equal(again.inputs["train"], prepared.inputs["train"])
    np.testing.assert_array_equal(again.inputs["validation"], prepared.inputs["validation"])
    assert not np.array_equal(again.inputs["holdout"], prepared.inputs["holdout"])
    # The holdout continues the histories built before the split point: most of its rows are not cold.
    first_rows = prepared.inputs["holdout"][:, : len(ROW_FIELDS)]
    empty_row = [prepared.tokenizer.token_to_id(f"{name}:{EMPTY_VALUE}") for name in ROW_FIELDS]
    assert (first_rows == empty_row).all(axis=1).mean() < 0.2
    assert prepared.history == history and prepared.inputs["train"].shape[1] == history.ids_per_event


def test_history_spec_round_trips_and_refuses_another_state_format() -> None:
    spec = HistorySpec(rows=8, encoding="rows")
    assert HistorySpec.from_json(json.loads(json.dumps(spec.to_json()))) == spec
    assert spec.positions == 11 and HistorySpec(rows=8).positions == spec.ids_per_event
    data = spec.to_json()
    data["state"]["format_version"] = 2
    with pytest.raises(ValueError, match="account state format"):
        HistorySpec.from_json(data)
    with pytest.raises(ValueError, match="rows"):
        HistorySpec(rows=40)


def test_extra_tokens_leave_the_stateless_ids_unchanged(spec: FeatureSpec) -> None:
    plain = build_tokenizer(spec).get_vocab()
    extended = build_tokenizer(spec, history_tokens(spec)).get_vocab()
    assert {token: extended[token] for token in plain} == plain
    assert len(extended) == len(plain) + len(history_tokens(spec))


def test_the_checkpoint_says_it_reads_history(untrained_history_dir: Path, untrained_model_dir: Path) -> None:
    data = json.loads((untrained_history_dir / METADATA_FILE).read_text())
    assert data["format_version"] == 2
    assert data["history"]["rows"] == 4 and data["history"]["encoding"] == "flat"
    assert data["history"]["state"] == {
        "format_version": 1,
        "capacity": 32,
        "ttl_s": 30 * 86_400,
        "windows_s": [600, 3_600, 86_400, 604_800],
    }
    assert json.loads((untrained_model_dir / METADATA_FILE).read_text())["format_version"] == 1
    assert read_metadata(untrained_history_dir).reads_history
    assert not read_metadata(untrained_model_dir).reads_history
    del data["history"]
    with pytest.raises(ValueError, match="needs a history"):
        RiskMetadata.from_json(data)


def test_a_history_model_with_the_wrong_position_count_is_refused(untrained_history_dir: Path, tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "model"
    shutil.copytree(untrained_history_dir, copy)
    data = json.loads((copy / METADATA_FILE).read_text())
    data["history"]["rows"] = 8
    (copy / METADATA_FILE).write_text(json.dumps(data))
    with pytest.raises(CheckpointError, match="positions"):
        load_checkpoint(copy)


@pytest.mark.parametrize("fixture", ["untrained_history_dir", "untrained_rows_dir"])
def test_a_stream_scores_the_same_batched_or_one_at_a_time(
    fixture: str, request: pytest.FixtureRequest, world: list[LabelledEvent]
) -> None:
    model_dir: Path = request.getfixturevalue(fixture)
    scorer = Scorer.load(model_dir, quantization="fp32", max_batch=64)
    assert scorer.reads_history and scorer.history_spec is not None
    events = _events(world)[:400]
    # One at a time: featurize against the history, score alone, then observe.
    histories: dict[str, AccountHistory] = {}
    alone = []
    for event in events:
        history = histories.setdefault(event.account_id, AccountHistory())
        alone.append(float(scorer.score([scorer.featurize(event, history)]).scores[0]))
        history.observe(event)
    # Batched: the same order of featurize-then-observe, scored in micro-batches of 37.
    features = replay(events, scorer.featurize)
    batched = np.concatenate([scorer.score(features[i : i + 37]).scores for i in range(0, len(features), 37)])
    np.testing.assert_allclose(batched, alone, atol=1e-5)
    warm = scorer.warm_up(max_seconds_per_bucket=0.01, min_runs=1)
    assert warm.buckets and scorer.graph_buckets  # traced graphs run, and agree with eager (checked inside)


def test_the_rows_encoding_pools_fields_into_rows(untrained_rows_dir: Path) -> None:
    loaded = load_checkpoint(untrained_rows_dir)
    assert isinstance(loaded.module, RowPooledClassifier)
    assert loaded.metadata.history is not None
    assert loaded.model.config.max_position_embeddings == loaded.metadata.history.positions == 9
    ids = torch.randint(3, 50, (4, loaded.metadata.history.ids_per_event))
    with torch.inference_mode():
        logits = loaded.module(input_ids=ids).logits
    assert logits.shape == (4, 2)
    swapped = ids.clone()  # fields within one row are summed: their order inside the row does not matter
    swapped[:, [0, 1]] = swapped[:, [1, 0]]
    with torch.inference_mode():
        torch.testing.assert_close(loaded.module(input_ids=swapped).logits, logits)


def test_a_stateless_model_ignores_the_history(untrained_model_dir: Path, world: list[LabelledEvent]) -> None:
    scorer = Scorer.load(untrained_model_dir, quantization="fp32")
    assert not scorer.reads_history and scorer.history_spec is None
    history = AccountHistory()
    for item in world[:20]:
        history.observe(item.event)
    event = world[20].event
    assert scorer.featurize(event, history).tolist() == scorer.featurize(event).tolist()
