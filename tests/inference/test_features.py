"""Featurizer and tokenizer: determinism, per-field unknowns, and equivalence with the real tokenizer."""

from __future__ import annotations

import threading
from bisect import bisect_right
from decimal import Decimal
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from tokenizers import Tokenizer
from transformers import PreTrainedTokenizerFast

from inference.checkpoint import fast_tokenizer
from inference.errors import FeaturizeError
from inference.features import (
    SUMMARY_TOKEN,
    FeatureSpec,
    Featurizer,
    build_feature_spec,
    build_tokenizer,
)
from inference.synthetic import LabelledEvent, generate
from schemas import TransactionEvent
from tests.schemas.strategies import transaction_events


@pytest.fixture(scope="module")
def spec() -> FeatureSpec:
    return build_feature_spec(item.event for item in generate(3_000, seed=1))


@pytest.fixture(scope="module")
def tokenizer(spec: FeatureSpec) -> Tokenizer:
    return build_tokenizer(spec)


@pytest.fixture(scope="module")
def featurizer(spec: FeatureSpec, tokenizer: Tokenizer) -> Featurizer:
    return Featurizer(spec, tokenizer.get_vocab())


def _event(sample_events: list[LabelledEvent], **changes: object) -> TransactionEvent:
    base = sample_events[0].event
    return base.model_copy(update=changes)


def test_sequence_is_sixteen_tokens_ending_in_the_summary_token(
    featurizer: Featurizer, tokenizer: Tokenizer, sample_events: list[LabelledEvent]
) -> None:
    ids = featurizer.featurize(sample_events[0].event)
    assert ids.shape == (16,) and ids.dtype == np.int64
    assert featurizer.sequence_length == 16
    assert ids[-1] == tokenizer.token_to_id(SUMMARY_TOKEN)
    assert featurizer.tokens(sample_events[0].event)[-1] == SUMMARY_TOKEN


def test_featurize_is_deterministic(
    spec: FeatureSpec, featurizer: Featurizer, sample_events: list[LabelledEvent]
) -> None:
    events = [item.event for item in sample_events]
    first = featurizer.featurize_batch(events)
    again = np.stack([featurizer.featurize(event) for event in events])
    rebuilt = Featurizer(FeatureSpec.from_json(spec.to_json()), build_tokenizer(spec).get_vocab())
    np.testing.assert_array_equal(first, again)
    np.testing.assert_array_equal(first, rebuilt.featurize_batch(events))
    assert spec == build_feature_spec(item.event for item in generate(3_000, seed=1))


def test_fast_path_matches_the_tokenizer_on_synthetic_events(
    featurizer: Featurizer, tokenizer: Tokenizer, sample_events: list[LabelledEvent]
) -> None:
    for item in sample_events:
        expected = tokenizer.encode(featurizer.text(item.event)).ids
        assert featurizer.featurize(item.event).tolist() == expected


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(event=transaction_events)
def test_fast_path_matches_the_tokenizer_on_arbitrary_events(
    featurizer: Featurizer, tokenizer: Tokenizer, event: TransactionEvent
) -> None:
    ids = featurizer.featurize(event).tolist()
    assert ids == tokenizer.encode(featurizer.text(event)).ids
    assert tokenizer.token_to_id("[UNK]") not in ids  # every field has its own unknown token


def test_tokenizer_round_trip_through_transformers(
    tmp_path: Path, featurizer: Featurizer, tokenizer: Tokenizer, sample_events: list[LabelledEvent]
) -> None:
    fast_tokenizer(tokenizer, featurizer.sequence_length).save_pretrained(tmp_path)
    assert (tmp_path / "tokenizer.json").is_file()
    loaded = PreTrainedTokenizerFast.from_pretrained(tmp_path, local_files_only=True)
    for item in sample_events[:200]:
        text = featurizer.text(item.event)
        ids = loaded(text, add_special_tokens=False)["input_ids"]
        assert ids == featurizer.featurize(item.event).tolist()
        assert loaded.decode(ids) == text
    reloaded = Tokenizer.from_file(str(tmp_path / "tokenizer.json"))
    assert reloaded.get_vocab() == tokenizer.get_vocab()


def test_unseen_values_map_to_the_field_unknown_token(
    featurizer: Featurizer, tokenizer: Tokenizer, sample_events: list[LabelledEvent]
) -> None:
    base = sample_events[0].event
    merchant = base.merchant.model_copy(update={"mcc": "0001", "country": "AQ"})
    event = base.model_copy(update={"merchant": merchant, "ip_country": "BV"})
    tokens = featurizer.tokens(event)
    assert tokens[1:4] == ["mcc:?", "mctry:?", "ipctry:?"]
    assert featurizer.featurize(event)[1:4].tolist() == [tokenizer.token_to_id(t) for t in tokens[1:4]]


def test_missing_upstream_features_and_devices_have_their_own_tokens(
    featurizer: Featurizer, sample_events: list[LabelledEvent]
) -> None:
    event = _event(sample_events, features={}, device_id=None)
    tokens = featurizer.tokens(event)
    assert tokens[8:14] == ["v1h:na", "v24h:na", "amtz:na", "age:na", "dm24:na", "fail:na"]
    assert tokens[14] == "dev:none"
    assert tokens[4].startswith("geo:xna-")
    with_device = _event(sample_events, features={}, device_id="dev-new")
    assert featurizer.tokens(with_device)[14] == "dev:na"


def test_amounts_are_bucketed_in_usd(featurizer: Featurizer, sample_events: list[LabelledEvent]) -> None:
    dollars = _event(sample_events, amount=Decimal("100.00"), currency="USD")
    yen = _event(sample_events, amount=Decimal("14925"), currency="JPY")  # about 100 USD
    assert featurizer.tokens(dollars)[0] == featurizer.tokens(yen)[0]
    tiny = _event(sample_events, amount=Decimal("0.50"), currency="USD")
    assert featurizer.tokens(tiny)[0] == "amt:00"


def test_time_token_uses_the_event_offset(featurizer: Featurizer, sample_events: list[LabelledEvent]) -> None:
    event = sample_events[0].event
    hour = event.event_time.hour
    assert featurizer.tokens(event)[7].startswith(f"time:{hour:02d}")


def test_a_non_finite_amount_raises_featurize_error(featurizer: Featurizer, sample_events: list[LabelledEvent]) -> None:
    broken = TransactionEvent.model_construct(**{**dict(sample_events[0].event), "amount": Decimal("NaN")})
    with pytest.raises(FeaturizeError, match="cannot featurize"):
        featurizer.featurize(broken)
    with pytest.raises(FeaturizeError):
        featurizer.featurize_batch([broken])


def test_featurize_is_thread_safe(featurizer: Featurizer, sample_events: list[LabelledEvent]) -> None:
    events = [item.event for item in sample_events]
    expected = featurizer.featurize_batch(events)
    results: dict[int, np.ndarray] = {}

    def work(worker: int) -> None:
        results[worker] = np.stack([featurizer.featurize(event) for event in events])

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for result in results.values():
        np.testing.assert_array_equal(result, expected)


def test_spec_json_round_trip_and_validation(spec: FeatureSpec) -> None:
    assert FeatureSpec.from_json(spec.to_json()) == spec
    with pytest.raises(ValueError, match="version"):
        FeatureSpec.from_json({**spec.to_json(), "version": 99})
    broken = spec.to_json()
    broken["fields"] = broken["fields"][:-1]
    with pytest.raises(ValueError, match="fields"):
        FeatureSpec.from_json(broken)


def test_featurizer_rejects_a_tokenizer_that_lacks_spec_tokens(spec: FeatureSpec) -> None:
    vocabulary = dict(build_tokenizer(spec).get_vocab())
    del vocabulary["mcc:?"]
    with pytest.raises(ValueError, match="lacks"):
        Featurizer(spec, vocabulary)


def test_rare_values_stay_out_of_the_vocabulary() -> None:
    events = [item.event for item in generate(400, seed=2)]
    rare = events[0].model_copy(update={"merchant": events[0].merchant.model_copy(update={"mcc": "0002"})})
    spec = build_feature_spec([*events, rare], min_count=2)
    mcc = next(field for field in spec.fields if field.name == "mcc")
    assert "0002" not in mcc.values
    assert "none" in next(field for field in spec.fields if field.name == "ipctry").values


# --- fitted featurization -------------------------------------------------------------------


def test_fitted_edges_give_frequent_discrete_values_their_own_bucket() -> None:
    from inference.features import fitted_edges

    counts = np.array([0.0] * 900 + [1.0] * 60 + [2.0] * 20 + [3.0] * 10 + [5.0] * 6 + [12.0] * 4 + [np.nan] * 50)
    edges = fitted_edges(counts, buckets=12, min_count=5)
    assert edges == (1.0, 2.0, 3.0, 5.0)  # the tail keeps its resolution; 12 (4 rows) merges into 5+
    buckets = [bisect_right(edges, value) for value in (0.0, 1.0, 2.0, 4.0, 12.0)]
    assert buckets == [0, 1, 2, 3, 4]
    assert fitted_edges(np.array([np.nan, np.nan]), buckets=12, min_count=5) == ()
    assert fitted_edges(np.full(100, 7.0), buckets=12, min_count=5) == ()


def test_fitted_edges_of_a_continuous_signal_are_quantiles_with_tails() -> None:
    from inference.features import fitted_edges

    values = np.random.default_rng(0).lognormal(3.0, 1.0, 50_000).astype(np.float32)
    edges = fitted_edges(values, buckets=24, min_count=5)
    assert list(edges) == sorted(edges) and len(edges) == 23 + 8  # 23 equal-frequency cuts, 8 tail levels
    shares = np.bincount(np.searchsorted(edges, values, side="right"), minlength=len(edges) + 1) / values.size
    assert shares.min() >= 0.0009 and shares.max() <= 1 / 24 + 0.005
    assert all(len(repr(edge)) < 12 for edge in edges)  # shortest float32 decimals, not 1.0476000308990479


def test_fit_feature_spec_learns_vocabularies_and_edges_from_the_rows_given() -> None:
    from inference.features import FeatureStatistics, fit_feature_spec

    events = [item.event for item in generate(3_000, seed=1)]
    statistics = FeatureStatistics.from_events(events)
    spec = fit_feature_spec(statistics)
    assert spec.fit is not None and spec.fit["rows"] == 3_000
    assert spec.field_spec("amt").edges != build_feature_spec(events).field_spec("amt").edges
    assert "none" in spec.field_spec("ipctry").values
    assert FeatureSpec.from_json(spec.to_json()) == spec
    tokenizer = build_tokenizer(spec)
    featurizer = Featurizer(spec, tokenizer.get_vocab())
    for event in events[:300]:
        assert featurizer.featurize(event).tolist() == tokenizer.encode(featurizer.text(event)).ids
    first_half = np.arange(3_000) < 1_500
    half = fit_feature_spec(statistics, first_half)
    assert half == fit_feature_spec(FeatureStatistics.from_events(events[:1_500]))


def test_statistics_read_device_age_only_with_a_device(sample_events: list[LabelledEvent]) -> None:
    from inference.features import FeatureStatistics

    base = sample_events[0].event
    with_age = base.model_copy(update={"device_id": None, "features": {"device_age_days": 3.0}})
    statistics = FeatureStatistics.from_events([with_age, with_age.model_copy(update={"device_id": "dev-1"})])
    assert np.isnan(statistics.numeric("dev")[0]) and statistics.numeric("dev")[1] == 3.0
    codes, values = statistics.categories("ipctry")
    assert values[codes[0]] == (base.ip_country or "none")


def test_a_spec_written_before_fitting_existed_still_loads(spec: FeatureSpec) -> None:
    legacy = spec.to_json()
    assert "fit" not in legacy  # version-1 files never had it
    assert FeatureSpec.from_json(legacy).fit is None
    fitted = {**legacy, "fit": {"method": "quantiles", "rows": 10}}
    assert FeatureSpec.from_json(fitted).fit == {"method": "quantiles", "rows": 10}
