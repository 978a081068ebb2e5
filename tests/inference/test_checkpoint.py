"""Checkpoint save/load round trip and clear errors for missing, partial or corrupt directories."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from inference.checkpoint import METADATA_FILE, DecisionThresholds, load_checkpoint, read_metadata, save_checkpoint
from inference.errors import CheckpointError, InferenceError
from inference.features import build_tokenizer
from inference.scorer import Scorer
from inference.synthetic import LabelledEvent
from schemas import Decision


def test_directory_layout(untrained_model_dir: Path) -> None:
    names = {path.name for path in untrained_model_dir.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", METADATA_FILE} <= names
    metadata = json.loads((untrained_model_dir / METADATA_FILE).read_text())
    assert metadata["format"] == "riskstream-model"
    assert metadata["positive_label"] == "fraud"
    assert set(metadata["thresholds"]) == {"review", "decline"}
    assert metadata["default_quantization"] == {"cpu": "int8", "cuda": "bf16"}
    assert len(metadata["weights_sha256"]) == 64
    assert metadata["version"].count("-") == 1


def test_save_then_load_gives_identical_scores(
    untrained_model_dir: Path, tmp_path: Path, sample_events: list[LabelledEvent]
) -> None:
    loaded = load_checkpoint(untrained_model_dir)
    resaved = tmp_path / "resaved"
    save_checkpoint(resaved, loaded.model, build_tokenizer(loaded.metadata.feature_spec), loaded.metadata)
    original = Scorer.load(untrained_model_dir, quantization="fp32")
    again = Scorer.load(resaved, quantization="fp32")
    features = [original.featurize(item.event) for item in sample_events[:300]]
    np.testing.assert_array_equal(original.score(features).scores, again.score(features).scores)
    assert again.info.version == original.info.version


def test_saving_over_a_foreign_directory_is_refused(untrained_model_dir: Path, tmp_path: Path) -> None:
    foreign = tmp_path / "photos"
    foreign.mkdir()
    (foreign / "holiday.jpg").write_bytes(b"\xff\xd8")
    loaded = load_checkpoint(untrained_model_dir)
    with pytest.raises(CheckpointError, match="not a riskstream model directory"):
        save_checkpoint(foreign, loaded.model, build_tokenizer(loaded.metadata.feature_spec), loaded.metadata)
    assert (foreign / "holiday.jpg").exists()


def test_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nowhere")


def test_a_file_is_not_a_directory(tmp_path: Path) -> None:
    path = tmp_path / "model.bin"
    path.write_bytes(b"x")
    with pytest.raises(CheckpointError, match="not a directory"):
        load_checkpoint(path)


@pytest.mark.parametrize("missing", ["model.safetensors", "config.json", "tokenizer.json", METADATA_FILE])
def test_partial_directory_names_what_is_missing(model_copy: Callable[[], Path], missing: str) -> None:
    directory = model_copy()
    (directory / missing).unlink()
    with pytest.raises(CheckpointError, match=f"incomplete.*missing {missing}"):
        load_checkpoint(directory)


def test_truncated_weights(model_copy: Callable[[], Path]) -> None:
    directory = model_copy()
    weights = directory / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load_checkpoint(directory)


def test_garbage_weights(model_copy: Callable[[], Path]) -> None:
    directory = model_copy()
    (directory / "model.safetensors").write_bytes(b"\x00" * 100)
    with pytest.raises(CheckpointError, match="corrupt"):
        load_checkpoint(directory)


def test_altered_weights_fail_the_checksum(model_copy: Callable[[], Path]) -> None:
    directory = model_copy()
    weights = directory / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF  # a flipped bit in the last tensor: the header still parses
    weights.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="SHA-256"):
        load_checkpoint(directory)


@pytest.mark.parametrize("name", ["config.json", METADATA_FILE])
def test_unparsable_json(model_copy: Callable[[], Path], name: str) -> None:
    directory = model_copy()
    (directory / name).write_text("{not json")
    with pytest.raises(CheckpointError, match=name.replace(".", r"\.")):
        load_checkpoint(directory)


def test_metadata_of_another_format(model_copy: Callable[[], Path]) -> None:
    directory = model_copy()
    path = directory / METADATA_FILE
    data = json.loads(path.read_text())
    data["format_version"] = 99
    path.write_text(json.dumps(data))
    with pytest.raises(CheckpointError, match="format_version=99"):
        read_metadata(directory)


def test_thresholds_out_of_order_are_invalid(model_copy: Callable[[], Path]) -> None:
    directory = model_copy()
    path = directory / METADATA_FILE
    data = json.loads(path.read_text())
    data["thresholds"] = {"review": 0.9, "decline": 0.1}
    path.write_text(json.dumps(data))
    with pytest.raises(CheckpointError, match="thresholds"):
        load_checkpoint(directory)


def test_tokenizer_that_does_not_fit_the_feature_spec(model_copy: Callable[[], Path]) -> None:
    directory = model_copy()
    path = directory / "tokenizer.json"
    data = json.loads(path.read_text())
    del data["model"]["vocab"]["mcc:?"]
    path.write_text(json.dumps(data))
    with pytest.raises(CheckpointError, match="tokenizer and feature spec disagree"):
        load_checkpoint(directory)


def test_positive_label_unknown_to_the_model(model_copy: Callable[[], Path]) -> None:
    directory = model_copy()
    path = directory / METADATA_FILE
    data = json.loads(path.read_text())
    data["positive_label"] = "chargeback"
    path.write_text(json.dumps(data))
    with pytest.raises(CheckpointError, match="chargeback"):
        load_checkpoint(directory)


def test_checkpoint_errors_are_inference_errors() -> None:
    assert issubclass(CheckpointError, InferenceError)


@pytest.mark.parametrize(
    ("score", "decision"),
    [
        (0.0, Decision.APPROVE),
        (0.49, Decision.APPROVE),
        (0.5, Decision.REVIEW),
        (0.8, Decision.DECLINE),
        (1.0, Decision.DECLINE),
        (float("nan"), Decision.REVIEW),
    ],
)
def test_decide(score: float, decision: Decision) -> None:
    assert DecisionThresholds(review=0.5, decline=0.8).decide(score) is decision
