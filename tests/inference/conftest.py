"""Fixtures for the inference tests.

``untrained_model_dir``: a complete checkpoint with randomly initialised ``tiny`` weights, built in
about a second; enough for everything that does not depend on what the model learned (loading,
corruption, scorer mechanics, quantization, CLI plumbing).

``untrained_history_dir`` / ``untrained_rows_dir``: the same for a model that reads account history
(flat and row-pooled encodings).

``trained_tiny_dir``: one ``riskstream train --preset tiny`` run shared by the whole session (about
10-20 s on two cores); only tests marked ``slow`` use it.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from inference.checkpoint import DecisionThresholds, RiskMetadata, save_checkpoint
from inference.features import PAD_TOKEN, Featurizer, build_feature_spec, build_tokenizer
from inference.model import build_config, build_model, get_preset
from inference.sequence import HistorySpec, SequenceFeaturizer, history_tokens
from inference.synthetic import LabelledEvent, generate
from inference.synthetic_history import generate_histories
from inference.train import TrainResult, train


def build_untrained_checkpoint(
    out_dir: Path, *, seed: int = 0, events: int = 800, history: HistorySpec | None = None
) -> Path:
    """Save a randomly initialised tiny model with a real feature spec and tokenizer (reading
    account history as ``history`` says, when given)."""
    items = list(generate(events, seed=seed) if history is None else generate_histories(events, seed=seed))
    spec = build_feature_spec((item.event for item in items), min_count=2)
    tokenizer = build_tokenizer(spec) if history is None else build_tokenizer(spec, history_tokens(spec))
    vocabulary = tokenizer.get_vocab()
    config = build_config(
        get_preset("tiny"),
        vocab_size=len(vocabulary),
        sequence_length=spec.sequence_length if history is None else history.positions,
        pad_token_id=vocabulary[PAD_TOKEN],
    )
    torch.manual_seed(seed)
    model = build_model(config).eval()
    metadata = RiskMetadata(
        name="riskstream-deepseek-v3-untrained",
        version="",
        feature_spec=spec,
        thresholds=DecisionThresholds(review=0.5, decline=0.8),
        history=history,
    )
    save_checkpoint(out_dir, model, tokenizer, metadata)
    # The fixture is only useful if the pair is consistent.
    if history is None:
        Featurizer(spec, vocabulary)
    else:
        SequenceFeaturizer(spec, history, vocabulary)
    return out_dir


@pytest.fixture(scope="session")
def untrained_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_untrained_checkpoint(tmp_path_factory.mktemp("untrained") / "model")


@pytest.fixture(scope="session")
def untrained_history_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained tiny model that reads 4 history rows, flat encoding."""
    return build_untrained_checkpoint(
        tmp_path_factory.mktemp("untrained-history") / "model", history=HistorySpec(rows=4)
    )


@pytest.fixture(scope="session")
def untrained_rows_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained tiny model that reads 6 history rows, row-pooled (hierarchical) encoding."""
    return build_untrained_checkpoint(
        tmp_path_factory.mktemp("untrained-rows") / "model", history=HistorySpec(rows=6, encoding="rows")
    )


@pytest.fixture
def model_copy(untrained_model_dir: Path, tmp_path: Path) -> Callable[[], Path]:
    """A factory of private copies of the untrained checkpoint, for tests that damage it."""

    def make() -> Path:
        target = tmp_path / f"copy-{len(list(tmp_path.iterdir()))}"
        shutil.copytree(untrained_model_dir, target)
        return target

    return make


@pytest.fixture(scope="session")
def sample_events() -> list[LabelledEvent]:
    """2,000 synthetic events with 5% fraud (seed 42: never a training seed in these tests)."""
    return list(generate(2_000, seed=42, fraud_rate=0.05))


@pytest.fixture(scope="session")
def trained_tiny(tmp_path_factory: pytest.TempPathFactory) -> TrainResult:
    """One training run of the tiny preset for the whole session (slow: use from slow tests only)."""
    return train(tmp_path_factory.mktemp("trained") / "tiny", preset="tiny", seed=0)
