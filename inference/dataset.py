"""A bank's labelled history -> training, validation and holdout token arrays, in bounded memory.

The split (``--split``):

``time`` (default)
    the holdout is the latest ``holdout_fraction`` of the rows by event time — the honest split for
    fraud, where the model always scores the future; never a random row split, which leaks an
    account's and a fraud ring's other transactions into training.
``account``
    the holdout is every row of a ``holdout_fraction`` of the accounts (chosen by a seeded hash of
    the account id), whatever their time: accounts the model never saw.
``time+account``
    the holdout is the latest period's rows of holdout accounts; training gets the earlier rows
    of the other accounts; the rest (late rows of training accounts, early rows of holdout
    accounts) is left out, so the holdout is both later and unseen.

Validation (early stopping, the initial thresholds) is the latest ``validation_fraction`` of the
training rows by time; the featurization is fitted on the remaining training rows only, and the
holdout is not looked at until the final report.

Memory: the file is read twice (:class:`~inference.data.RecordReader`, chunk by chunk). The first
pass maps every row and keeps, per good row, its time, label, account hash and the values fitting
needs (:class:`~inference.features.FeatureStatistics`): about 80 bytes a row, in numpy arrays. The
split and the spec are computed from those arrays; they are then freed, and the second pass
featurizes each row with the very featurizer that serves it into its set's preallocated int16
token array (32 bytes a row). No Python object outlives its chunk.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final, Literal

import numpy as np
import numpy.typing as npt
from tokenizers import Tokenizer

from inference.data import BadRows, DataError, RecordReader
from inference.features import (
    DEFAULT_MIN_COUNT,
    FeatureSpec,
    FeatureStatistics,
    Featurizer,
    build_tokenizer,
    fit_feature_spec,
)
from inference.sequence import (
    RECORD_DTYPE,
    HistorySpec,
    SequenceFeaturizer,
    history_tokens,
    records_array,
    replay_arrays,
)
from schemas import TransactionEvent

SplitMode = Literal["time", "account", "time+account"]
SPLIT_MODES: Final = ("time", "account", "time+account")
TRAIN, VALIDATION, HOLDOUT, UNUSED = 0, 1, 2, 3
SET_NAMES: Final = ("train", "validation", "holdout", "unused")
DEFAULT_HOLDOUT_FRACTION: Final = 0.2
DEFAULT_VALIDATION_FRACTION: Final = 0.1
DEFAULT_MAX_BAD_FRACTION: Final = 0.01

#: Progress callback: (phase "read" or "featurize", rows done, rows expected).
DataProgress = Callable[[str, int, int], None]


def account_hash(account_id: str, seed: int) -> int:
    """A seeded 64-bit hash of an account id: which side of an account split it falls on."""
    key = (seed & 0xFFFFFFFFFFFFFFFF).to_bytes(8, "little")
    return int.from_bytes(hashlib.blake2b(account_id.encode("utf-8"), digest_size=8, key=key).digest(), "little")


@dataclass(frozen=True)
class SplitPlan:
    """How rows were assigned to sets. Times are epoch seconds; rows at or after a boundary are on its later side."""

    mode: SplitMode
    holdout_fraction: float
    validation_fraction: float
    seed: int
    holdout_from: float | None
    validation_from: float
    holdout_account_below: int | None

    def to_json(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "holdout_fraction": self.holdout_fraction,
            "validation_fraction": self.validation_fraction,
            "seed": self.seed,
            "holdout_from": _iso(self.holdout_from) if self.holdout_from is not None else None,
            "validation_from": _iso(self.validation_from),
        }


@dataclass(frozen=True)
class SetSummary:
    """Size, fraud and period of one set."""

    name: str
    rows: int
    fraud: int
    first: float | None
    last: float | None

    @property
    def fraud_rate(self) -> float:
        return self.fraud / self.rows if self.rows else 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "fraud": self.fraud,
            "fraud_rate": round(self.fraud_rate, 6),
            "first": _iso(self.first) if self.first is not None else None,
            "last": _iso(self.last) if self.last is not None else None,
        }


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _quantile_time(times: npt.NDArray[np.float64], fraction: float, what: str) -> float:
    """The time from which the latest ``fraction`` of ``times`` begins (ties all go later)."""
    if times.size < 2:
        raise DataError(f"too few rows to hold out {what}")
    index = min(times.size - 1, int(np.floor((1.0 - fraction) * times.size)))
    boundary = float(np.partition(times, index)[index])
    if boundary <= float(times.min()):
        raise DataError(f"cannot split off {what} by time: the rows share too few distinct times")
    return boundary


def in_holdout_accounts(account_hashes: npt.NDArray[np.uint64], holdout_fraction: float) -> npt.NDArray[np.bool_]:
    """Which rows belong to the accounts an ``account`` or ``time+account`` split holds out: those
    whose :func:`account_hash` (with the split's seed) falls in the lowest ``holdout_fraction``."""
    return account_hashes < np.uint64(min(int(holdout_fraction * 2.0**64), 2**64 - 1))


def plan_split(
    times: npt.NDArray[np.float64],
    account_hashes: npt.NDArray[np.uint64],
    *,
    mode: SplitMode = "time",
    holdout_fraction: float = DEFAULT_HOLDOUT_FRACTION,
    validation_fraction: float = DEFAULT_VALIDATION_FRACTION,
    seed: int = 0,
) -> tuple[SplitPlan, npt.NDArray[np.int8]]:
    """The split of rows with these times and account hashes: the plan and each row's set."""
    if mode not in SPLIT_MODES:
        raise ValueError(f"split must be one of {', '.join(SPLIT_MODES)}")
    if not 0.0 < holdout_fraction < 1.0:
        raise ValueError("holdout fraction must be between 0 and 1")
    if not 0.0 < validation_fraction < 1.0:
        raise ValueError("validation fraction must be between 0 and 1")
    holdout_from: float | None = None
    account_below: int | None = None
    late = np.zeros(times.size, dtype=bool)
    unseen = np.zeros(times.size, dtype=bool)
    if mode in ("time", "time+account"):
        holdout_from = _quantile_time(times, holdout_fraction, "a holdout period")
        late = times >= holdout_from
    if mode in ("account", "time+account"):
        account_below = int(holdout_fraction * 2.0**64)
        unseen = in_holdout_accounts(account_hashes, holdout_fraction)
    sets = np.full(times.size, TRAIN, dtype=np.int8)
    if mode == "time":
        sets[late] = HOLDOUT
    elif mode == "account":
        sets[unseen] = HOLDOUT
    else:
        sets[late & unseen] = HOLDOUT
        sets[late != unseen] = UNUSED
    training = sets == TRAIN
    validation_from = _quantile_time(times[training], validation_fraction, "a validation period")
    sets[training & (times >= validation_from)] = VALIDATION
    plan = SplitPlan(mode, holdout_fraction, validation_fraction, seed, holdout_from, validation_from, account_below)
    return plan, sets


def summarize_sets(
    times: npt.NDArray[np.float64], labels: npt.NDArray[np.int8], sets: npt.NDArray[np.int8]
) -> dict[str, SetSummary]:
    summaries = {}
    for index, name in enumerate(SET_NAMES):
        members = sets == index
        count = int(members.sum())
        chosen = times[members]
        summaries[name] = SetSummary(
            name=name,
            rows=count,
            fraud=int(labels[members].sum()),
            first=float(chosen.min()) if count else None,
            last=float(chosen.max()) if count else None,
        )
    return summaries


@dataclass
class PreparedData:
    """Everything training needs from a data file: the spec, its tokenizer, token arrays per set."""

    spec: FeatureSpec
    tokenizer: Tokenizer
    inputs: dict[str, npt.NDArray[np.integer]]
    labels: dict[str, npt.NDArray[np.int64]]
    plan: SplitPlan
    sets: dict[str, SetSummary]
    bad_rows: BadRows
    rows_read: int
    source: dict[str, Any] = field(default_factory=dict)
    #: The account history the ids were built with (None: stateless ids, one event at a time).
    history: HistorySpec | None = None

    def describe(self) -> dict[str, Any]:
        """The data part of the training record (names and counts, never row content)."""
        return {
            "source": self.source,
            "rows_read": self.rows_read,
            "bad_rows": self.bad_rows.to_json(),
            "split": self.plan.to_json(),
            "sets": {name: summary.to_json() for name, summary in self.sets.items()},
        }


def _token_dtype(vocabulary_size: int) -> type[np.integer]:
    return np.int16 if vocabulary_size <= np.iinfo(np.int16).max else np.int32


def _check_sets(sets: dict[str, SetSummary]) -> None:
    for name in ("train", "validation", "holdout"):
        summary = sets[name]
        if summary.fraud == 0 or summary.fraud == summary.rows:
            raise DataError(
                f"the {name} set ({summary.rows} rows, {summary.fraud} fraud) needs both fraud and legitimate "
                "rows: use more data or another --holdout-fraction/--split"
            )


def _fit(
    statistics: FeatureStatistics,
    sets: npt.NDArray[np.int8],
    *,
    min_count: int,
    fit_edges: bool,
    history: HistorySpec | None = None,
) -> tuple[FeatureSpec, Tokenizer, Featurizer, SequenceFeaturizer | None]:
    spec = fit_feature_spec(statistics, sets == TRAIN, min_count=min_count, fit_edges=fit_edges)
    if history is None:
        tokenizer = build_tokenizer(spec)
        return spec, tokenizer, Featurizer(spec, tokenizer.get_vocab()), None
    tokenizer = build_tokenizer(spec, history_tokens(spec))
    sequences = SequenceFeaturizer(spec, history, tokenizer.get_vocab())
    return spec, tokenizer, sequences.event_featurizer, sequences


def _split_sets(ids: npt.NDArray[np.integer], sets: npt.NDArray[np.int8]) -> dict[str, npt.NDArray[np.integer]]:
    """The ids of the rows in train/validation/holdout (``ids`` holds exactly those rows, in row order)."""
    used = sets[sets != UNUSED]
    return {name: ids[used == index] for index, name in enumerate(SET_NAMES[:3])}


def _row_columns(
    events: Sequence[TransactionEvent], labels: Sequence[int], seed: int
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.int8], npt.NDArray[np.uint64]]:
    times = np.fromiter((event.event_time.timestamp() for event in events), dtype=np.float64, count=len(events))
    marks = np.asarray(labels, dtype=np.int8)
    hashes = np.fromiter((account_hash(event.account_id, seed) for event in events), dtype=np.uint64, count=len(events))
    return times, marks, hashes


def prepare_events(
    events: Sequence[TransactionEvent],
    labels: Sequence[int],
    *,
    split: SplitMode = "time",
    holdout_fraction: float = DEFAULT_HOLDOUT_FRACTION,
    validation_fraction: float = DEFAULT_VALIDATION_FRACTION,
    seed: int = 0,
    min_count: int = DEFAULT_MIN_COUNT,
    fit_edges: bool = True,
    history: HistorySpec | None = None,
) -> PreparedData:
    """:func:`prepare_file` for events already in memory: the same split, fit and arrays."""
    if len(events) != len(labels):
        raise ValueError("events and labels differ in length")
    times, marks, hashes = _row_columns(events, labels, seed)
    plan, sets = plan_split(
        times, hashes, mode=split, holdout_fraction=holdout_fraction, validation_fraction=validation_fraction, seed=seed
    )
    summaries = summarize_sets(times, marks, sets)
    _check_sets(summaries)
    statistics = FeatureStatistics.from_events(events)
    spec, tokenizer, featurizer, sequences = _fit(
        statistics, sets, min_count=min_count, fit_edges=fit_edges, history=history
    )
    dtype = _token_dtype(len(tokenizer.get_vocab()))
    stateless = featurizer.featurize_batch(events).astype(dtype)
    if sequences is None:
        inputs = {name: stateless[sets == index] for index, name in enumerate(SET_NAMES[:3])}
    else:
        ids = replay_arrays(sequences, stateless, records_array(events), hashes, times, sets != UNUSED, dtype=dtype)
        inputs = _split_sets(ids, sets)
    targets = {name: marks[sets == index].astype(np.int64) for index, name in enumerate(SET_NAMES[:3])}
    return PreparedData(
        spec, tokenizer, inputs, targets, plan, summaries, BadRows(), len(events), {"in_memory": True}, history
    )


def prepare_file(
    reader: RecordReader,
    *,
    history: HistorySpec | None = None,
    split: SplitMode = "time",
    holdout_fraction: float = DEFAULT_HOLDOUT_FRACTION,
    validation_fraction: float = DEFAULT_VALIDATION_FRACTION,
    seed: int = 0,
    min_count: int = DEFAULT_MIN_COUNT,
    fit_edges: bool = True,
    max_bad_fraction: float = DEFAULT_MAX_BAD_FRACTION,
    on_progress: DataProgress | None = None,
) -> PreparedData:
    """Read, split, fit and featurize a labelled file in two passes (see the module docstring).

    Raises :class:`~inference.data.DataError` when more than ``max_bad_fraction`` of the rows are
    bad (checked while reading against the expected row count, and at the end), when a set lacks
    fraud or legitimate rows, or when the file changes between the passes.
    """
    if not 0.0 <= max_bad_fraction <= 1.0:
        raise ValueError("max bad fraction must be within [0, 1]")
    report = on_progress or (lambda phase, done, total: None)
    expected = reader.row_estimate()
    bad = BadRows(limit=int(max_bad_fraction * expected) if max_bad_fraction < 1.0 else None)
    statistics = FeatureStatistics(capacity=expected)
    times = np.empty(max(1, expected), dtype=np.float64)
    marks = np.empty(max(1, expected), dtype=np.int8)
    hashes = np.empty(max(1, expected), dtype=np.uint64)
    good = 0
    done = 0

    def read_progress(rows: int) -> None:
        nonlocal done
        done += rows
        report("read", done, expected)

    for chunk in reader.chunks(bad, on_rows=read_progress):
        count = len(chunk.events)
        if good + count > times.size:  # a text file's line count is an upper bound, but be safe
            grown = max(good + count, 2 * times.size)
            times = np.concatenate((times[:good], np.empty(grown - good, dtype=np.float64)))
            marks = np.concatenate((marks[:good], np.empty(grown - good, dtype=np.int8)))
            hashes = np.concatenate((hashes[:good], np.empty(grown - good, dtype=np.uint64)))
        chunk_times, chunk_marks, chunk_hashes = _row_columns(chunk.events, chunk.labels, seed)
        times[good : good + count] = chunk_times
        marks[good : good + count] = chunk_marks
        hashes[good : good + count] = chunk_hashes
        statistics.add(chunk.events)
        good += count
    total = good + bad.count
    if total == 0:
        raise DataError(f"{reader.path}: no rows")
    if bad.count > max_bad_fraction * total:
        raise DataError(
            f"{reader.path}: {bad.count / total:.2%} of the rows are bad (limit {max_bad_fraction:.2%}); "
            f"{bad.summary()}"
        )
    times, marks, hashes = times[:good], marks[:good], hashes[:good]
    plan, sets = plan_split(
        times, hashes, mode=split, holdout_fraction=holdout_fraction, validation_fraction=validation_fraction, seed=seed
    )
    summaries = summarize_sets(times, marks, sets)
    _check_sets(summaries)
    spec, tokenizer, featurizer, sequences = _fit(
        statistics, sets, min_count=min_count, fit_edges=fit_edges, history=history
    )
    first_pass_bytes = statistics.nbytes + times.nbytes + marks.nbytes + hashes.nbytes + sets.nbytes
    del statistics  # the second pass needs each row's set and label (and, for history, time and account)
    if sequences is None:
        del times, hashes

    dtype = _token_dtype(len(tokenizer.get_vocab()))
    length = spec.sequence_length
    if sequences is None:
        inputs = {name: np.empty((summaries[name].rows, length), dtype=dtype) for name in SET_NAMES[:3]}
    else:
        # History ids need each account's rows in time order: keep every row's stateless ids and
        # history record (64 bytes a row), then replay account by account.
        stateless = np.empty((good, length), dtype=dtype)
        records = np.empty(good, dtype=RECORD_DTYPE)
    filled = dict.fromkeys(SET_NAMES[:3], 0)
    position = 0
    again = BadRows()
    done = 0

    def featurize_progress(rows: int) -> None:
        nonlocal done
        done += rows
        report("featurize", done, total)

    for chunk in reader.chunks(again, on_rows=featurize_progress):
        count = len(chunk.events)
        if position + count > good:
            raise DataError(f"{reader.path} changed while it was being read (more good rows on the second pass)")
        tokens = featurizer.featurize_batch(chunk.events)
        if sequences is not None:
            stateless[position : position + count] = tokens
            records[position : position + count] = records_array(chunk.events)
            position += count
            continue
        chunk_sets = sets[position : position + count]
        for index, name in enumerate(SET_NAMES[:3]):
            members = tokens[chunk_sets == index]
            inputs[name][filled[name] : filled[name] + len(members)] = members
            filled[name] += len(members)
        position += count
    if position != good or again.count != bad.count:
        raise DataError(f"{reader.path} changed while it was being read (the passes saw different rows)")
    if sequences is not None:
        report("history", 0, good)
        ids = replay_arrays(sequences, stateless, records, hashes, times, sets != UNUSED, dtype=dtype)
        del stateless, records
        inputs = _split_sets(ids, sets)
        report("history", good, good)
    targets = {name: marks[sets == index].astype(np.int64) for index, name in enumerate(SET_NAMES[:3])}
    source = {
        "file": reader.path.name,
        "format": reader.format,
        "label": reader.label_source,
        "bytes": reader.path.stat().st_size,
        # What the bounded passes held in numpy arrays (the process adds the libraries' fixed cost).
        "first_pass_array_bytes": int(first_pass_bytes),
        "token_array_bytes": int(sum(array.nbytes for array in inputs.values())),
    }
    if reader.unmapped_columns:
        source["unmapped_columns"] = list(reader.unmapped_columns)
    return PreparedData(spec, tokenizer, inputs, targets, plan, summaries, bad, total, source, history)
