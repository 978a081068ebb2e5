"""Featurizing an event together with its account's history: the input of ``sequence`` models.

A history model reads, for each event, a fixed number of token ids (static shapes: cold accounts
and short histories are padded with ``empty`` rows):

=================  =========================================================================
block              tokens
=================  =========================================================================
history rows       the account's newest ``rows`` transactions (:class:`HistorySpec`), oldest
                   first, five tokens each: ``rdt`` time before the current event, ``ramt``
                   amount bucket (the spec's amount edges), ``rmcc`` MCC (the spec's
                   vocabulary), ``rhow`` channel x card-present x entry mode, ``rrel`` relation
                   to the current event (device none/same/other x merchant same/same country/
                   other country x IP country none/same/other); ``{field}:empty`` for a missing row
aggregates         sixteen tokens read from the account's state (:class:`~inference.history.HistorySummary`):
                   ``hn`` transactions seen, ``hten`` tenure, ``hgap`` time since the previous one,
                   ``hc10m``/``hc1h``/``hc24h``/``hc7d`` counts and ``hs1h``/``hs24h`` USD sums over
                   the windows, ``hz`` the amount's z-score against the account's (log scale),
                   ``hdm``/``hdc``/``hdd`` distinct merchants, merchant countries and devices
                   over 24 h, ``hdev`` the device (none / new / known for how long), ``hmer`` the
                   merchant new or known, ``hctry`` merchant country and IP country new or known
current event      the fifteen field tokens of the stateless layout (:mod:`inference.features`,
                   version 1: amount, MCC, countries, channel, entry, time, upstream features,
                   device) and the ``[SUM]`` token the classifier reads
=================  =========================================================================

Two encodings of the same ids (:data:`ENCODINGS`), measured against each other:

``flat``
    every token is a position of the transformer: ``5 x rows + 32`` positions.
``rows``
    hierarchical, field then row: the model sums the field embeddings of each row (every history
    row, the aggregates, the current event) into one position, then attends over rows:
    ``rows + 3`` positions for the same ids (:class:`inference.model.RowPooledClassifier`).

The vocabulary is the stateless spec's (ids unchanged) followed by the history tokens, so a
history checkpoint's ``tokenizer.json`` is the same real ``tokenizers`` WordLevel tokenizer;
:meth:`SequenceFeaturizer.tokens` gives the words, which tests check against it. Pure Python and
numpy: the worker calls :meth:`SequenceFeaturizer.featurize` on its hot path.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal, cast

import numpy as np
import numpy.typing as npt

from inference.errors import FeaturizeError
from inference.features import MISSING_VALUE, SUMMARY_TOKEN, Features, FeatureSpec, Featurizer, FieldSpec
from inference.history import (
    DEFAULT_CAPACITY,
    HISTORY_FORMAT_VERSION,
    NO_COUNTRY,
    NO_DEVICE,
    TTL_SECONDS,
    WINDOWS,
    AccountHistory,
    HistorySummary,
    TransactionRecord,
    cold_summary,
    record_of,
)
from schemas import Channel, EntryMode, TransactionEvent

HISTORY_SPEC_VERSION: Final = 1
Encoding = Literal["flat", "rows"]
ENCODINGS: Final = ("flat", "rows")
EMPTY_VALUE: Final = "empty"
COLD_VALUE: Final = "cold"
ROW_FIELDS: Final = ("rdt", "ramt", "rmcc", "rhow", "rrel")
#: Tokens of the current-event block: the stateless layout without its summary token.
EVENT_FIELDS: Final = 15

_MINUTE, _HOUR, _DAY = 60.0, 3_600.0, 86_400.0
_DELAY_EDGES: Final = (
    10.0,
    _MINUTE,
    5 * _MINUTE,
    10 * _MINUTE,
    30 * _MINUTE,
    _HOUR,
    3 * _HOUR,
    6 * _HOUR,
    12 * _HOUR,
    _DAY,
    2 * _DAY,
    4 * _DAY,
    7 * _DAY,
    14 * _DAY,
)
_GAP_EDGES: Final = (
    10.0,
    _MINUTE,
    5 * _MINUTE,
    10 * _MINUTE,
    30 * _MINUTE,
    _HOUR,
    3 * _HOUR,
    12 * _HOUR,
    _DAY,
    3 * _DAY,
    7 * _DAY,
)
_HOWS: Final = tuple(
    f"{channel.value}-{'cp' if present else 'cnp'}-{mode.value}"
    for channel in Channel
    for mode in EntryMode
    for present in (False, True)
)
_RELATIONS: Final = tuple(
    f"d{device}-{place}-i{ip}"
    for device in ("none", "same", "other")
    for place in ("mer", "ctry", "abroad")
    for ip in ("none", "same", "other")
)
_CTRY_VALUES: Final = tuple(f"m{m}-i{i}" for m in ("new", "known") for i in ("none", "new", "known"))

#: The aggregate block: one field per token, in order.
AGGREGATE_FIELDS: Final = (
    FieldSpec("hn", "bucket", edges=(0.5, 1.5, 2.5, 4.5, 9.5, 19.5, 49.5)),
    FieldSpec("hten", "bucket", edges=(_HOUR, _DAY, 3 * _DAY, 7 * _DAY, 14 * _DAY), values=(COLD_VALUE,)),
    FieldSpec("hgap", "bucket", edges=_GAP_EDGES, values=(COLD_VALUE,)),
    FieldSpec("hc10m", "bucket", edges=(0.5, 1.5, 2.5, 3.5, 5.5, 8.5, 12.5)),
    FieldSpec("hc1h", "bucket", edges=(0.5, 1.5, 2.5, 3.5, 5.5, 8.5, 12.5, 20.5)),
    FieldSpec("hc24h", "bucket", edges=(0.5, 1.5, 2.5, 4.5, 6.5, 9.5, 14.5, 20.5, 30.5)),
    FieldSpec("hc7d", "bucket", edges=(0.5, 2.5, 5.5, 10.5, 20.5, 40.5, 80.5)),
    FieldSpec("hs1h", "bucket", edges=(0.5, 10.0, 30.0, 100.0, 300.0, 1_000.0, 3_000.0)),
    FieldSpec("hs24h", "bucket", edges=(0.5, 10.0, 30.0, 100.0, 300.0, 1_000.0, 3_000.0, 10_000.0)),
    FieldSpec("hz", "bucket", edges=(-2.0, -1.0, -0.5, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0)),
    FieldSpec("hdm", "bucket", edges=(0.5, 1.5, 2.5, 3.5, 5.5, 8.5)),
    FieldSpec("hdc", "bucket", edges=(0.5, 1.5, 2.5)),
    FieldSpec("hdd", "bucket", edges=(0.5, 1.5, 2.5)),
    FieldSpec("hdev", "bucket", edges=(_HOUR, _DAY, 7 * _DAY, 30 * _DAY), values=("none", "new")),
    FieldSpec("hmer", "category", values=("new", "known")),
    FieldSpec("hctry", "category", values=_CTRY_VALUES),
)


@dataclass(frozen=True)
class HistorySpec:
    """What a history model reads: stored as ``history`` in a checkpoint's ``riskstream.json``.

    ``rows``: the newest ring rows read (at most the state's ``capacity``); ``encoding``: how the
    model turns the ids into positions (:data:`ENCODINGS`). ``state_version``, ``capacity`` and
    ``ttl_s`` say which account state (:mod:`inference.history`) the model was trained against:
    the worker must keep that format, at least ``rows`` transactions, and that TTL.
    """

    rows: int = 8
    encoding: Encoding = "flat"
    version: int = HISTORY_SPEC_VERSION
    state_version: int = HISTORY_FORMAT_VERSION
    capacity: int = DEFAULT_CAPACITY
    ttl_s: int = TTL_SECONDS

    def __post_init__(self) -> None:
        if self.encoding not in ENCODINGS:
            raise ValueError(f"history encoding must be one of {', '.join(ENCODINGS)}")
        if not 0 <= self.rows <= self.capacity:
            raise ValueError(f"history rows must be within [0, capacity={self.capacity}]")

    @property
    def ids_per_event(self) -> int:
        """Token ids per event: the rows, the aggregates, the current event and ``[SUM]``."""
        return len(ROW_FIELDS) * self.rows + len(AGGREGATE_FIELDS) + EVENT_FIELDS + 1

    @property
    def positions(self) -> int:
        """Positions the transformer attends over (its ``max_position_embeddings``)."""
        if self.encoding == "flat":
            return self.ids_per_event
        return self.rows + 3

    def to_json(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "rows": self.rows,
            "encoding": self.encoding,
            "ids_per_event": self.ids_per_event,
            "positions": self.positions,
            "state": {
                "format_version": self.state_version,
                "capacity": self.capacity,
                "ttl_s": self.ttl_s,
                "windows_s": [seconds for _, seconds, _ in WINDOWS],
            },
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> HistorySpec:
        """Parse :meth:`to_json` output; ``ValueError`` for a layout or state this version cannot build."""
        if data.get("version") != HISTORY_SPEC_VERSION:
            raise ValueError(f"unsupported history spec version {data.get('version')!r} (supported: 1)")
        state = data.get("state", {})
        if state.get("format_version") != HISTORY_FORMAT_VERSION:
            raise ValueError(
                f"the model was trained on account state format {state.get('format_version')!r}; "
                f"this riskstream keeps format {HISTORY_FORMAT_VERSION}"
            )
        encoding = str(data["encoding"])
        if encoding not in ENCODINGS:
            raise ValueError(f"unknown history encoding {encoding!r}")
        return cls(
            rows=int(data["rows"]),
            encoding=cast("Encoding", encoding),
            capacity=int(state.get("capacity", DEFAULT_CAPACITY)),
            ttl_s=int(state.get("ttl_s", TTL_SECONDS)),
        )


def row_fields(spec: FeatureSpec) -> tuple[FieldSpec, ...]:
    """The five fields of a history row, with the amount edges and MCC vocabulary of ``spec``."""
    return (
        FieldSpec("rdt", "bucket", edges=_DELAY_EDGES, values=(EMPTY_VALUE,)),
        FieldSpec("ramt", "bucket", edges=spec.field_spec("amt").edges, values=(EMPTY_VALUE,)),
        FieldSpec("rmcc", "category", values=(*spec.field_spec("mcc").values, EMPTY_VALUE)),
        FieldSpec("rhow", "category", values=(*_HOWS, EMPTY_VALUE)),
        FieldSpec("rrel", "category", values=(*_RELATIONS, EMPTY_VALUE)),
    )


def history_tokens(spec: FeatureSpec) -> list[str]:
    """Tokens a history model adds after ``spec``'s vocabulary, in vocabulary order."""
    tokens: list[str] = []
    for field_spec in (*row_fields(spec), *AGGREGATE_FIELDS):
        tokens.extend(field_spec.tokens())
    return tokens


class _Bucket:
    """Token ids of a bucket field: index ``bisect_right(edges, v)``, then missing, then named values."""

    __slots__ = ("edges", "ids", "missing", "named")

    def __init__(self, field_spec: FieldSpec, vocabulary: Mapping[str, int]) -> None:
        tokens = field_spec.tokens()
        self.edges = field_spec.edges
        self.ids = tuple(vocabulary[token] for token in tokens[: len(field_spec.edges) + 1])
        self.missing = vocabulary[f"{field_spec.name}:{MISSING_VALUE}"]
        self.named = {value: vocabulary[f"{field_spec.name}:{value}"] for value in field_spec.values}

    def id(self, value: float) -> int:
        return self.ids[bisect_right(self.edges, value)]

    def key(self, value: float | None) -> str:
        return MISSING_VALUE if value is None else f"{bisect_right(self.edges, value):02d}"


class SequenceFeaturizer:
    """Event + account history -> token ids (see the module docstring). Immutable; thread-safe.

    :meth:`featurize` reads the history without changing it: the caller observes the event into
    the history afterwards (:func:`inference.history.replay`).
    """

    def __init__(self, spec: FeatureSpec, history: HistorySpec, vocabulary: Mapping[str, int]) -> None:
        missing = [token for token in history_tokens(spec) if token not in vocabulary]
        if missing:
            raise ValueError(f"the tokenizer lacks {len(missing)} history tokens, e.g. {missing[:3]}")
        self.spec = spec
        self.history = history
        self.event_featurizer = Featurizer(spec, vocabulary)
        self.sequence_length = history.ids_per_event
        self._rates = dict(spec.usd_per_unit)
        rdt, ramt, rmcc, _, _ = row_fields(spec)
        self._delay = _Bucket(rdt, vocabulary)
        self._row_amount = _Bucket(ramt, vocabulary)
        self._row_mcc = {int(value): vocabulary[f"rmcc:{value}"] for value in rmcc.values if value != EMPTY_VALUE}
        self._row_mcc_unknown = vocabulary["rmcc:?"]
        self._row_how = tuple(vocabulary[f"rhow:{value}"] for value in _HOWS)
        self._row_relation = tuple(vocabulary[f"rrel:{value}"] for value in _RELATIONS)
        self._empty_row = [vocabulary[f"{name}:{EMPTY_VALUE}"] for name in ROW_FIELDS]
        buckets = {f.name: _Bucket(f, vocabulary) for f in AGGREGATE_FIELDS if f.kind == "bucket"}
        self._aggregate = buckets
        self._merchant = (vocabulary["hmer:new"], vocabulary["hmer:known"])
        self._country = {value: vocabulary[f"hctry:{value}"] for value in _CTRY_VALUES}
        self._summary_token = vocabulary[SUMMARY_TOKEN]

    def featurize(self, event: TransactionEvent, history: AccountHistory | None = None) -> Features:
        """Token ids of ``event`` against ``history`` (None: a cold account). Raises ``FeaturizeError``."""
        try:
            ids = self.ids(self.event_featurizer._ids(event), record_of(event), history)
            return np.array(ids, dtype=np.int64)
        except (ArithmeticError, AttributeError, LookupError, TypeError, ValueError) as exc:
            # ``from None``: the cause's message may quote event values; the error must not.
            raise FeaturizeError(f"cannot featurize event: {exc.__class__.__name__}") from None

    def ids(self, event_ids: Sequence[int], record: TransactionRecord, history: AccountHistory | None) -> list[int]:
        """The ids from parts: the event's stateless ids (with or without ``[SUM]``), its record
        (:func:`inference.history.record_of`) and the history before it."""
        rows = self.history.rows
        summary = cold_summary(record) if history is None else history.summary(record, rows)
        kept = summary.rows
        result: list[int] = self._empty_row * (rows - len(kept))
        if kept:
            delay_edges, delay_ids = self._delay.edges, self._delay.ids
            amount_edges, amount_ids = self._row_amount.edges, self._row_amount.ids
            mcc_id, mcc_unknown = self._row_mcc.get, self._row_mcc_unknown
            how_ids, relation_ids = self._row_how, self._row_relation
            current_device, current_merchant = record.device, record.merchant
            current_country, current_ip = record.merchant_country, record.ip_country
            for delay, amount, mcc, merchant_country, ip, how, device, merchant in kept:
                # Relation to the current event: device (none/same/other) x place x IP country.
                relation = (0 if device == NO_DEVICE else 1 if device == current_device else 2) * 9
                relation += (0 if merchant == current_merchant else 1 if merchant_country == current_country else 2) * 3
                relation += 0 if ip == NO_COUNTRY else 1 if ip == current_ip else 2
                result += (
                    delay_ids[bisect_right(delay_edges, delay)],
                    amount_ids[bisect_right(amount_edges, amount)],
                    mcc_id(mcc, mcc_unknown),
                    how_ids[how],
                    relation_ids[relation],
                )
        result += self._aggregate_ids(summary, record)
        result += event_ids[:EVENT_FIELDS]
        result.append(self._summary_token)
        return result

    def _aggregate_ids(self, summary: HistorySummary, record: TransactionRecord) -> list[int]:
        bucket = self._aggregate
        counts, sums = summary.window_counts, summary.window_sums
        cold = summary.observed == 0
        if record.device == NO_DEVICE:
            device = bucket["hdev"].named["none"]
        elif summary.device_age_s is None:
            device = bucket["hdev"].named["new"]
        else:
            device = bucket["hdev"].id(summary.device_age_s)
        return [
            bucket["hn"].id(summary.observed),
            bucket["hten"].named[COLD_VALUE] if cold else bucket["hten"].id(summary.tenure_s),
            bucket["hgap"].named[COLD_VALUE]
            if summary.since_previous_s is None
            else bucket["hgap"].id(summary.since_previous_s),
            bucket["hc10m"].id(counts[0]),
            bucket["hc1h"].id(counts[1]),
            bucket["hc24h"].id(counts[2]),
            bucket["hc7d"].id(counts[3]),
            bucket["hs1h"].id(sums[1]),
            bucket["hs24h"].id(sums[2]),
            bucket["hz"].missing if summary.amount_z is None else bucket["hz"].id(summary.amount_z),
            bucket["hdm"].id(summary.distinct_merchants_24h),
            bucket["hdc"].id(summary.distinct_merchant_countries_24h),
            bucket["hdd"].id(summary.distinct_devices_24h),
            device,
            self._merchant[0 if summary.new_merchant else 1],
            self._country[_country_value(summary)],
        ]

    def tokens(self, event: TransactionEvent, history: AccountHistory | None = None) -> list[str]:
        """The words the tokenizer sees for ``event`` against ``history``, built independently of
        :meth:`featurize` (string formatting rather than id tables), so tests can check one against the other."""
        record = record_of(event)
        rows = self.history.rows
        summary = cold_summary(record) if history is None else history.summary(record, rows)
        words: list[str] = []
        for _ in range(rows - len(summary.rows)):
            words.extend(f"{name}:{EMPTY_VALUE}" for name in ROW_FIELDS)
        known_mcc = set(self.spec.field_spec("mcc").values)
        for delay, amount, mcc, merchant_country, ip, how, device, merchant in summary.rows:
            device_word = "none" if device == NO_DEVICE else ("same" if device == record.device else "other")
            if merchant == record.merchant:
                place = "mer"
            else:
                place = "ctry" if merchant_country == record.merchant_country else "abroad"
            ip_word = "none" if ip == NO_COUNTRY else ("same" if ip == record.ip_country else "other")
            code = f"{mcc:04d}"
            words.extend(
                (
                    f"rdt:{self._delay.key(delay)}",
                    f"ramt:{self._row_amount.key(amount)}",
                    f"rmcc:{code if code in known_mcc else '?'}",
                    f"rhow:{_HOWS[how]}",
                    f"rrel:d{device_word}-{place}-i{ip_word}",
                )
            )
        aggregate = self._aggregate
        counts, sums = summary.window_counts, summary.window_sums
        cold = summary.observed == 0
        since = summary.since_previous_s
        gap = COLD_VALUE if since is None else aggregate["hgap"].key(since)
        if record.device == NO_DEVICE:
            device_key = "none"
        elif summary.device_age_s is None:
            device_key = "new"
        else:
            device_key = aggregate["hdev"].key(summary.device_age_s)
        words.extend(
            (
                f"hn:{aggregate['hn'].key(summary.observed)}",
                f"hten:{COLD_VALUE if cold else aggregate['hten'].key(summary.tenure_s)}",
                f"hgap:{gap}",
                f"hc10m:{aggregate['hc10m'].key(counts[0])}",
                f"hc1h:{aggregate['hc1h'].key(counts[1])}",
                f"hc24h:{aggregate['hc24h'].key(counts[2])}",
                f"hc7d:{aggregate['hc7d'].key(counts[3])}",
                f"hs1h:{aggregate['hs1h'].key(sums[1])}",
                f"hs24h:{aggregate['hs24h'].key(sums[2])}",
                f"hz:{aggregate['hz'].key(summary.amount_z)}",
                f"hdm:{aggregate['hdm'].key(summary.distinct_merchants_24h)}",
                f"hdc:{aggregate['hdc'].key(summary.distinct_merchant_countries_24h)}",
                f"hdd:{aggregate['hdd'].key(summary.distinct_devices_24h)}",
                f"hdev:{device_key}",
                f"hmer:{'new' if summary.new_merchant else 'known'}",
                f"hctry:{_country_value(summary)}",
            )
        )
        words.extend(self.event_featurizer.tokens(event)[:EVENT_FIELDS])
        words.append(SUMMARY_TOKEN)
        return words

    def text(self, event: TransactionEvent, history: AccountHistory | None = None) -> str:
        return " ".join(self.tokens(event, history))


def _country_value(summary: HistorySummary) -> str:
    merchant = "new" if summary.new_merchant_country else "known"
    ip = "none" if summary.new_ip_country is None else "new" if summary.new_ip_country else "known"
    return f"m{merchant}-i{ip}"


#: The record columns of :func:`records_array` (what :class:`TransactionRecord` holds).
RECORD_DTYPE: Final = np.dtype(
    [
        ("time", "<i8"),
        ("amount_usd", "<f4"),
        ("mcc", "<u2"),
        ("merchant_country", "<u2"),
        ("ip_country", "<u2"),
        ("how", "u1"),
        ("device", "<u4"),
        ("merchant", "<u4"),
    ]
)


def records_array(events: Iterable[TransactionEvent]) -> npt.NDArray[np.void]:
    """The history records of ``events`` as a structured array (``RECORD_DTYPE``), 32 bytes a row.

    Raises ``FeaturizeError`` for an event that cannot be recorded (an amount not finite in USD).
    """
    try:
        rows = [record_of(event) for event in events]
    except (ArithmeticError, ValueError) as exc:
        raise FeaturizeError(f"cannot featurize event: {exc.__class__.__name__}") from None
    return np.array(rows, dtype=RECORD_DTYPE)


def replay_arrays(
    featurizer: SequenceFeaturizer,
    event_ids: npt.NDArray[np.integer],
    records: npt.NDArray[np.void],
    accounts: npt.NDArray[np.uint64],
    times: npt.NDArray[np.float64],
    wanted: npt.NDArray[np.bool_] | None = None,
    *,
    dtype: type[np.integer] = np.int32,
) -> npt.NDArray[np.integer]:
    """History-model ids of the ``wanted`` rows (default: all), in row order, from per-row parts.

    Each account's rows are replayed in time order (``times``; ties in row order) through a fresh
    :class:`~inference.history.AccountHistory`: row ``i`` is featurized against its account's rows
    that come before it in time, never a later one, and every row — wanted or not — joins its
    account's history. ``event_ids`` are the stateless ids of each row
    (:meth:`inference.features.Featurizer.featurize_batch`), ``records`` its
    :func:`records_array` row, ``accounts`` a per-account key (e.g. a seeded hash of the id).
    The same rows in time order through :func:`inference.history.replay` give the same ids.
    """
    count = len(records)
    if not (len(event_ids) == len(accounts) == len(times) == count):
        raise ValueError("event_ids, records, accounts and times must have one entry per row")
    chosen = np.ones(count, dtype=bool) if wanted is None else np.asarray(wanted, dtype=bool)
    slots = np.cumsum(chosen) - 1
    out = np.empty((int(chosen.sum()), featurizer.sequence_length), dtype=dtype)
    order = np.lexsort((np.arange(count), times, accounts))
    capacity = featurizer.history.capacity
    history: AccountHistory | None = None
    current: int | None = None
    needed = _accounts_needed(accounts, chosen)
    chunk = 65_536
    for start in range(0, count, chunk):
        indices = order[start : start + chunk]
        rows = records[indices].tolist()
        keys = accounts[indices].tolist()
        for index, key, row in zip(indices.tolist(), keys, rows, strict=True):
            if key != current:
                current = key
                history = AccountHistory(capacity) if key in needed else None
            if history is None:
                continue  # no wanted row in this account: its history is never read
            record = TransactionRecord._make(row)
            if chosen[index]:
                out[slots[index]] = featurizer.ids(event_ids[index].tolist(), record, history)
            history.observe_record(record)
    return out


def _accounts_needed(accounts: npt.NDArray[np.uint64], chosen: npt.NDArray[np.bool_]) -> set[int]:
    return set(np.unique(accounts[chosen]).tolist())
