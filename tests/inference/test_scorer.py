"""Scorer mechanics: buckets, order, padding invariance, OOM splitting, faults, warm-up, devices."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from inference.errors import DeviceError, ScoringError
from inference.scorer import FaultInjection, ModelInfo, Scorer, bucket_sizes, parse_device
from inference.synthetic import LabelledEvent


@pytest.fixture(scope="module")
def fp32_scorer(untrained_model_dir: Path) -> Scorer:
    return Scorer.load(untrained_model_dir, quantization="fp32", max_batch=64)


@pytest.fixture(scope="module")
def features(fp32_scorer: Scorer, sample_events: list[LabelledEvent]) -> list[np.ndarray]:
    return [fp32_scorer.featurize(item.event) for item in sample_events[:300]]


def test_public_properties(fp32_scorer: Scorer) -> None:
    assert fp32_scorer.info == ModelInfo(
        name="riskstream-deepseek-v3-untrained",
        version=fp32_scorer.info.version,
        quantization="fp32",
        device="cpu",
    )
    assert fp32_scorer.buckets == (1, 2, 4, 8, 16, 32, 64)
    assert fp32_scorer.sequence_length == 16
    assert fp32_scorer.device == "cpu"
    assert (fp32_scorer.thresholds.review, fp32_scorer.thresholds.decline) == (0.5, 0.8)


def test_default_quantization_comes_from_the_checkpoint(untrained_model_dir: Path) -> None:
    assert Scorer.load(untrained_model_dir).info.quantization == "int8"


def test_bucket_sizes_are_powers_of_two() -> None:
    assert bucket_sizes(1) == (1,)
    assert bucket_sizes(300) == (1, 2, 4, 8, 16, 32, 64, 128, 256)
    with pytest.raises(ValueError, match="max_batch"):
        bucket_sizes(0)


def test_scores_are_float32_probabilities_in_input_order(fp32_scorer: Scorer, features: list[np.ndarray]) -> None:
    result = fp32_scorer.score(features[:50])
    assert result.scores.dtype == np.float32 and result.scores.shape == (50,)
    assert not result.failures and result.oom_splits == 0
    assert np.all((result.scores >= 0) & (result.scores <= 1))
    reversed_scores = fp32_scorer.score(features[:50][::-1]).scores
    np.testing.assert_allclose(reversed_scores[::-1], result.scores, atol=1e-6)


def test_empty_batch(fp32_scorer: Scorer) -> None:
    result = fp32_scorer.score([])
    assert result.scores.shape == (0,) and not result.failures


def test_a_score_does_not_depend_on_its_bucket_or_batch(fp32_scorer: Scorer, features: list[np.ndarray]) -> None:
    alone = np.array([fp32_scorer.score([row]).scores[0] for row in features[:100]])
    together = fp32_scorer.score(features[:100]).scores  # chunks of 64 + a padded bucket of 64 for 36
    odd = np.concatenate([fp32_scorer.score(features[i : min(i + 7, 100)]).scores for i in range(0, 100, 7)])
    assert np.max(np.abs(alone - together)) <= 1e-5
    assert np.max(np.abs(alone - odd)) <= 1e-5


def test_batches_larger_than_the_largest_bucket_are_chunked(fp32_scorer: Scorer, features: list[np.ndarray]) -> None:
    chunked = fp32_scorer.score(features).scores  # 300 events, largest bucket 64
    reference = np.concatenate([fp32_scorer.score(features[i : i + 50]).scores for i in range(0, 300, 50)])
    np.testing.assert_allclose(chunked, reference, atol=1e-5)


def test_features_of_the_wrong_shape_are_rejected(fp32_scorer: Scorer, features: list[np.ndarray]) -> None:
    with pytest.raises(ValueError, match="shape"):
        fp32_scorer.score([features[0][:10]])
    with pytest.raises(ValueError, match="shape"):
        fp32_scorer.score([features[0], features[1][:5]])


def test_an_injected_oom_splits_the_batch_and_completes(
    untrained_model_dir: Path, fp32_scorer: Scorer, features: list[np.ndarray]
) -> None:
    faulty = Scorer.load(
        untrained_model_dir, quantization="fp32", max_batch=64, faults=FaultInjection(oom_probability=1.0)
    )
    result = faulty.score(features[:40])
    assert not result.failures
    assert result.oom_splits == 39  # every batch of two or more fails: split all the way down to singles
    np.testing.assert_allclose(result.scores, fp32_scorer.score(features[:40]).scores, atol=1e-5)


def test_random_ooms_still_score_every_event_exactly_once(
    untrained_model_dir: Path, fp32_scorer: Scorer, features: list[np.ndarray]
) -> None:
    faulty = Scorer.load(
        untrained_model_dir, quantization="fp32", max_batch=64, faults=FaultInjection(oom_probability=0.5, seed=7)
    )
    result = faulty.score(features)
    assert not result.failures and result.oom_splits > 0
    assert not np.isnan(result.scores).any()
    np.testing.assert_allclose(result.scores, fp32_scorer.score(features).scores, atol=1e-5)


def test_events_that_cannot_be_scored_even_alone_are_reported(
    untrained_model_dir: Path, features: list[np.ndarray]
) -> None:
    always = FaultInjection(oom_probability=1.0, oom_min_batch=1)
    faulty = Scorer.load(untrained_model_dir, quantization="fp32", max_batch=8, faults=always)
    result = faulty.score(features[:5])
    assert sorted(result.failures) == [0, 1, 2, 3, 4]
    assert all(reason.startswith("out_of_memory: injected") for reason in result.failures.values())
    assert np.isnan(result.scores).all()


def test_other_model_failures_raise_scoring_error(
    untrained_model_dir: Path, features: list[np.ndarray], monkeypatch: pytest.MonkeyPatch
) -> None:
    scorer = Scorer.load(untrained_model_dir, quantization="fp32", max_batch=8)

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("shape mismatch in layer 3")

    monkeypatch.setattr(scorer._model, "forward", broken)
    with pytest.raises(ScoringError, match="shape mismatch"):
        scorer.score(features[:3])


def test_cpu_allocation_failure_counts_as_out_of_memory(
    untrained_model_dir: Path, features: list[np.ndarray], monkeypatch: pytest.MonkeyPatch
) -> None:
    scorer = Scorer.load(untrained_model_dir, quantization="fp32", max_batch=8)
    original = scorer._model.forward
    calls: list[int] = []

    def flaky(*args: object, input_ids: torch.Tensor, **kwargs: object) -> object:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory")
        return original(*args, input_ids=input_ids, **kwargs)

    monkeypatch.setattr(scorer._model, "forward", flaky)
    result = scorer.score(features[:4])
    assert result.oom_splits == 1 and not result.failures


@pytest.mark.parametrize("kwargs", [{"oom_probability": 1.5}, {"oom_min_batch": 0}])
def test_fault_injection_validates(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        FaultInjection(**kwargs)  # type: ignore[arg-type]


def test_warm_up_reports_every_bucket(fp32_scorer: Scorer) -> None:
    report = fp32_scorer.warm_up(max_seconds_per_bucket=0.01, min_runs=2)
    assert [bucket.batch_size for bucket in report.buckets] == list(fp32_scorer.buckets)
    for bucket in report.buckets:
        assert bucket.p50_latency_s > 0 and math.isfinite(bucket.p50_latency_s)
        assert bucket.bytes_per_item > 0
        assert bucket.runs >= 2
    assert report.for_bucket(64).batch_size == 64
    assert not report.memory_measured  # CPU: an estimate, not allocator statistics
    assert report.to_json()["buckets"][0]["batch_size"] == 1


def test_warm_up_ignores_injected_faults(untrained_model_dir: Path) -> None:
    faulty = Scorer.load(
        untrained_model_dir, quantization="fp32", max_batch=4, faults=FaultInjection(oom_probability=1.0)
    )
    assert len(faulty.warm_up(max_seconds_per_bucket=0.0, min_runs=1).buckets) == 3


def test_int8_and_bf16_scorers_work(untrained_model_dir: Path, fp32_scorer: Scorer, features: list[np.ndarray]) -> None:
    reference = fp32_scorer.score(features[:64]).scores
    for variant in ("int8", "bf16"):
        scorer = Scorer.load(untrained_model_dir, quantization=variant, max_batch=64)
        scores = scorer.score(features[:64]).scores
        assert scores.dtype == np.float32
        assert np.max(np.abs(scores - reference)) < 0.05
        assert scorer.model_bytes().linear_weight_ratio < 1.0


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error without a GPU")
def test_cuda_without_a_gpu_is_a_device_error(untrained_model_dir: Path) -> None:
    with pytest.raises(DeviceError, match="CUDA is not available"):
        Scorer.load(untrained_model_dir, device="cuda:0")


@pytest.mark.parametrize("device", ["tpu", "gpu:0", "cuda:x"])
def test_invalid_devices_are_rejected(device: str) -> None:
    with pytest.raises(DeviceError):
        parse_device(device)


def test_thread_count_is_applied(untrained_model_dir: Path) -> None:
    before = torch.get_num_threads()
    try:
        scorer = Scorer.load(untrained_model_dir, quantization="fp32", threads=1)
        assert scorer.threads == 1 == torch.get_num_threads()
    finally:
        torch.set_num_threads(before)
