"""Splits by time and account, and the two-pass file preparation against the in-memory path."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from inference.data import BadRows, Chunk, DataError, RecordReader, read_labelled
from inference.dataset import (
    HOLDOUT,
    TRAIN,
    UNUSED,
    VALIDATION,
    account_hash,
    plan_split,
    prepare_events,
    prepare_file,
)
from inference.example_data import write_example
from schemas.mapping import load_mapping


@pytest.fixture(scope="module")
def example(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_example(tmp_path_factory.mktemp("split"), rows=4_000, seed=11, fraud_rate=0.03).data


def _columns(rows: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, list[str]]:
    rng = np.random.default_rng(seed)
    times = rng.uniform(1.7e9, 1.7e9 + 30 * 86_400, rows).round()
    accounts = [f"acct-{index}" for index in rng.integers(0, rows // 5, rows)]
    hashes = np.array([account_hash(account, 3) for account in accounts], dtype=np.uint64)
    return times, hashes, accounts


def test_time_split_holds_out_the_latest_period() -> None:
    times, hashes, _ = _columns(5_000)
    plan, sets = plan_split(times, hashes, mode="time", holdout_fraction=0.2, validation_fraction=0.1, seed=3)
    assert plan.holdout_from is not None
    assert times[sets == HOLDOUT].min() >= plan.holdout_from > times[sets != HOLDOUT].max()
    assert times[sets == VALIDATION].min() >= plan.validation_from > times[sets == TRAIN].max()
    assert abs((sets == HOLDOUT).mean() - 0.2) < 0.01
    assert abs((sets == VALIDATION).sum() / (sets != HOLDOUT).sum() - 0.1) < 0.01
    assert not (sets == UNUSED).any()


def test_account_split_keeps_holdout_accounts_out_of_training() -> None:
    times, hashes, accounts = _columns(5_000)
    _, sets = plan_split(times, hashes, mode="account", holdout_fraction=0.25, seed=3)
    held = {accounts[i] for i in np.flatnonzero(sets == HOLDOUT)}
    trained = {accounts[i] for i in np.flatnonzero(sets != HOLDOUT)}
    assert not held & trained
    assert abs(len(held) / len(held | trained) - 0.25) < 0.05
    _, other_seed = plan_split(
        times,
        np.array([account_hash(a, 4) for a in accounts], dtype=np.uint64),
        mode="account",
        holdout_fraction=0.25,
        seed=4,
    )
    assert not np.array_equal(sets, other_seed)


def test_time_and_account_split_is_later_and_unseen() -> None:
    times, hashes, accounts = _columns(8_000)
    plan, sets = plan_split(times, hashes, mode="time+account", holdout_fraction=0.3, seed=3)
    holdout, training = np.flatnonzero(sets == HOLDOUT), np.flatnonzero((sets == TRAIN) | (sets == VALIDATION))
    assert {accounts[i] for i in holdout}.isdisjoint({accounts[i] for i in training})
    assert times[holdout].min() >= plan.holdout_from > times[training].max()  # type: ignore[operator]
    assert (sets == UNUSED).sum() > 0


def test_a_split_is_deterministic_and_refuses_degenerate_times() -> None:
    times, hashes, _ = _columns(2_000)
    first = plan_split(times, hashes, mode="time")
    assert np.array_equal(first[1], plan_split(times, hashes, mode="time")[1])
    with pytest.raises(DataError, match="distinct times"):
        plan_split(np.full(100, 1.7e9), hashes[:100], mode="time")
    with pytest.raises(ValueError, match="split must be"):
        plan_split(times, hashes, mode="random")  # type: ignore[arg-type]


def test_two_passes_over_a_file_equal_the_in_memory_path(example: Path) -> None:
    mapping = load_mapping(example.parent / "mapping.toml")
    streamed = prepare_file(RecordReader(example, mapping=mapping, chunk_rows=333), seed=5)
    events, labels, _ = read_labelled(example, mapping=mapping)
    in_memory = prepare_events(events, labels, seed=5)
    assert streamed.spec == in_memory.spec
    for name in ("train", "validation", "holdout"):
        assert streamed.inputs[name].dtype == np.int16
        np.testing.assert_array_equal(streamed.inputs[name], in_memory.inputs[name])
        np.testing.assert_array_equal(streamed.labels[name], in_memory.labels[name])
        assert streamed.sets[name] == in_memory.sets[name]
    assert streamed.spec.fit is not None and streamed.spec.fit["rows"] == streamed.sets["train"].rows
    described = streamed.describe()
    assert described["sets"]["holdout"]["rows"] == len(streamed.labels["holdout"])
    assert described["split"]["mode"] == "time" and described["source"]["format"] == "csv"


def test_fixed_edges_give_the_synthetic_recipe_spec(example: Path) -> None:
    mapping = load_mapping(example.parent / "mapping.toml")
    events, labels, _ = read_labelled(example, mapping=mapping)
    fixed = prepare_events(events, labels, fit_edges=False)
    from inference.dataset import TRAIN as train_set
    from inference.features import build_feature_spec

    train_events = [e for e, s in zip(events, _sets(events, labels), strict=True) if s == train_set]
    assert fixed.spec == build_feature_spec(train_events)


def _sets(events: list[Any], labels: list[int]) -> np.ndarray:
    times = np.array([event.event_time.timestamp() for event in events])
    hashes = np.array([account_hash(event.account_id, 0) for event in events], dtype=np.uint64)
    return plan_split(times, hashes)[1]


def test_too_many_bad_rows_abort_and_a_threshold_allows_them(tmp_path: Path) -> None:
    files = write_example(tmp_path, rows=2_000, seed=12, fraud_rate=0.05)
    lines = files.data.read_text(encoding="utf-8").splitlines()
    for index in range(1, 60):  # 59 of 2,000 rows (3%) lose their amount
        cells = lines[index].split("|")
        cells[3] = "n/a"
        lines[index] = "|".join(cells)
    files.data.write_text("\n".join(lines) + "\n", encoding="utf-8")
    mapping = load_mapping(files.mapping)
    with pytest.raises(DataError, match="too many bad rows"):
        prepare_file(RecordReader(files.data, mapping=mapping))
    prepared = prepare_file(RecordReader(files.data, mapping=mapping), max_bad_fraction=0.05)
    assert prepared.bad_rows.count == 59
    assert prepared.bad_rows.by_reason == {"amt_minor (-> amount): not_a_number": 59}
    assert sum(summary.rows for summary in prepared.sets.values()) == 2_000 - 59


def test_a_set_without_fraud_is_a_clear_error(tmp_path: Path) -> None:
    files = write_example(tmp_path, rows=600, seed=13, fraud_rate=0.0)
    with pytest.raises(DataError, match="needs both fraud and legitimate rows"):
        prepare_file(RecordReader(files.data, mapping=load_mapping(files.mapping)))


class _ShrinkingReader(RecordReader):
    """A file that loses rows between the two passes."""

    passes = 0

    def chunks(self, bad: BadRows, **options: Any) -> Iterator[Chunk]:
        self.passes += 1
        for chunk in super().chunks(bad, **options):
            yield chunk if self.passes == 1 else Chunk(chunk.events[1:], chunk.labels[1:], chunk.rows[1:])


def test_a_file_that_changes_between_passes_is_refused(example: Path) -> None:
    reader = _ShrinkingReader(example, mapping=load_mapping(example.parent / "mapping.toml"))
    with pytest.raises(DataError, match="changed while it was being read"):
        prepare_file(reader)


def test_an_account_split_of_a_file_holds_out_whole_accounts(example: Path) -> None:
    mapping = load_mapping(example.parent / "mapping.toml")
    prepared = prepare_file(RecordReader(example, mapping=mapping), split="account", holdout_fraction=0.3, seed=2)
    events, labels, _ = read_labelled(example, mapping=mapping)
    hashes = np.array([account_hash(event.account_id, 2) for event in events], dtype=np.uint64)
    held = hashes < np.uint64(int(0.3 * 2.0**64))
    assert prepared.sets["holdout"].rows == int(held.sum())
    assert prepared.plan.holdout_from is None and prepared.describe()["split"]["mode"] == "account"
    np.testing.assert_array_equal(prepared.labels["holdout"], np.asarray(labels)[held])
