"""Featurizer and tokenizer: a ``TransactionEvent`` becomes a fixed-length sequence of field tokens.

Token layout (``FEATURE_SPEC_VERSION`` 1), one token per field in this order, then a summary token:

====  =========  ==========================================================================
pos   field      value
====  =========  ==========================================================================
0     ``amt``    amount converted to USD with the spec's approximate rates, log-scale bucket
1     ``mcc``    merchant category code (vocabulary learned from training data)
2     ``mctry``  merchant country (learned vocabulary)
3     ``ipctry`` client IP country, ``none`` when absent (learned vocabulary)
4     ``geo``    upstream ``cross_border`` flag x IP-vs-merchant country (none/same/diff)
5     ``chan``   channel and card-present flag, e.g. ``ecommerce-cnp``
6     ``entry``  entry mode
7     ``time``   hour of day and weekday/weekend, in the event's own UTC offset
8-13  ...        upstream ``velocity_1h``, ``velocity_24h``, ``amount_zscore``,
                 ``account_age_days``, ``distinct_merchants_24h``, ``failed_auth_24h``, bucketed
14    ``dev``    ``none`` without a device id, else bucketed ``device_age_days``
15    ``[SUM]``  summary token; the classifier reads the last position, which (causal attention)
                 is the only one that sees every field
====  =========  ==========================================================================

Every field has its own unknown token (``mcc:?``) for values outside its vocabulary and, for
upstream features, a missing token (``v1h:na``).

Two ways to build a spec: :func:`build_feature_spec` (the synthetic recipe: learned vocabularies,
bucket edges fixed by hand for the synthetic world's units) and :func:`fit_feature_spec` (a bank's
own data: vocabularies *and* every bucket edge fitted on the training rows, from quantiles — a
bank's velocity counts, tenure units or amount scale need no hand tuning). Both produce the same
format (version 1 stores each field's edges and values); a fitted spec also carries a ``fit``
record of how it was fitted, which older readers ignore. Sixteen tokens keep CPU inference cheap: cost grows
with sequence length, and one token per field is the least a transformer can be given.

Two equivalent paths produce the token ids: the real ``tokenizers`` WordLevel tokenizer over the
text form (``"amt:07 mcc:5411 ... [SUM]"``), saved as ``tokenizer.json`` and loadable as a
``transformers.PreTrainedTokenizerFast``; and :meth:`Featurizer.featurize`, which applies the same
vocabulary with dictionary look-ups (a few microseconds per event instead of tens). Tests prove the
two agree.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Final, Literal

import numpy as np
import numpy.typing as npt
from tokenizers import Tokenizer, models, pre_tokenizers

from inference.errors import FeaturizeError
from inference.reference import USD_PER_UNIT
from schemas import Channel, EntryMode, TransactionEvent

FEATURE_SPEC_VERSION: Final = 1
# Vocabulary tokens, not secrets (bandit's S105 matches on the word "token").
PAD_TOKEN: Final = "[PAD]"  # noqa: S105
UNK_TOKEN: Final = "[UNK]"  # noqa: S105
SUMMARY_TOKEN: Final = "[SUM]"  # noqa: S105
SPECIAL_TOKENS: Final = (PAD_TOKEN, UNK_TOKEN, SUMMARY_TOKEN)
UNKNOWN_VALUE: Final = "?"
MISSING_VALUE: Final = "na"

#: Token ids of one event: ``int64`` (the dtype embedding look-ups take), shape ``(sequence_length,)``.
Features = npt.NDArray[np.int64]

FieldKind = Literal["bucket", "category"]


@dataclass(frozen=True)
class FieldSpec:
    """One token position.

    Buckets: value ``v`` gets index ``bisect_right(edges, v)``, a missing value ``MISSING_VALUE``,
    and ``values`` are extra named states (``dev:none``). Categories: ``values`` is the vocabulary;
    anything else is ``UNKNOWN_VALUE``.
    """

    name: str
    kind: FieldKind
    edges: tuple[float, ...] = ()
    values: tuple[str, ...] = ()

    def tokens(self) -> list[str]:
        """Every token of this field, in vocabulary order."""
        if self.kind == "bucket":
            keys = [f"{index:02d}" for index in range(len(self.edges) + 1)] + [MISSING_VALUE, *self.values]
        else:
            keys = [*self.values, UNKNOWN_VALUE]
        return [f"{self.name}:{key}" for key in keys]


# Upstream feature name -> (field name, bucket edges).
_UPSTREAM: Final = (
    ("velocity_1h", "v1h", (1.5, 2.5, 3.5, 5.0, 7.0, 10.0, 15.0, 25.0)),
    ("velocity_24h", "v24h", (1.5, 2.5, 4.0, 6.0, 9.0, 13.0, 19.0, 28.0, 45.0)),
    ("amount_zscore", "amtz", (-2.0, -1.0, -0.5, 0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 4.0)),
    ("account_age_days", "age", (7.0, 30.0, 90.0, 180.0, 365.0, 730.0, 1825.0)),
    ("distinct_merchants_24h", "dm24", (1.5, 2.5, 3.5, 5.0, 8.0, 12.0, 20.0)),
    ("failed_auth_24h", "fail", (0.5, 1.5, 2.5, 4.0, 7.0)),
)
_AMOUNT_EDGES: Final = (
    1.0,
    2.0,
    3.5,
    5.0,
    7.5,
    10.0,
    15.0,
    25.0,
    40.0,
    60.0,
    90.0,
    140.0,
    200.0,
    300.0,
    450.0,
    700.0,
    1000.0,
    1500.0,
    2500.0,
    5000.0,
    10000.0,
)
_DEVICE_AGE_EDGES: Final = (1.0, 7.0, 30.0, 90.0, 365.0)
_GEO_VALUES: Final = tuple(f"x{flag}-{rel}" for flag in ("0", "1", MISSING_VALUE) for rel in ("none", "same", "diff"))
_CHANNEL_VALUES: Final = tuple(f"{channel.value}-{cp}" for channel in Channel for cp in ("cp", "cnp"))
_ENTRY_VALUES: Final = tuple(mode.value for mode in EntryMode)
_TIME_VALUES: Final = tuple(f"{hour:02d}{part}" for hour in range(24) for part in ("wd", "we"))
#: Categorical fields whose vocabulary is learned from the training events.
LEARNED_FIELDS: Final = ("mcc", "mctry", "ipctry")


@dataclass(frozen=True)
class FeatureSpec:
    """What the featurizer computes; stored in a checkpoint's ``riskstream.json``."""

    fields: tuple[FieldSpec, ...]
    usd_per_unit: Mapping[str, float] = field(default_factory=lambda: dict(USD_PER_UNIT))
    version: int = FEATURE_SPEC_VERSION
    #: How the edges and vocabularies were fitted (:func:`fit_feature_spec`); None for hand-set edges.
    fit: Mapping[str, Any] | None = None

    @property
    def sequence_length(self) -> int:
        """Tokens per event: one per field plus the summary token."""
        return len(self.fields) + 1

    def vocabulary(self) -> dict[str, int]:
        """Token -> id: special tokens first (``[PAD]`` = 0), then each field's tokens in order."""
        tokens = [*SPECIAL_TOKENS]
        for spec in self.fields:
            tokens.extend(spec.tokens())
        return {token: index for index, token in enumerate(tokens)}

    def field_spec(self, name: str) -> FieldSpec:
        """The field called ``name``; ``KeyError`` if the spec has none."""
        for spec in self.fields:
            if spec.name == name:
                return spec
        raise KeyError(name)

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "version": self.version,
            "usd_per_unit": dict(self.usd_per_unit),
            "fields": [
                {"name": f.name, "kind": f.kind, "edges": list(f.edges), "values": list(f.values)} for f in self.fields
            ],
        }
        if self.fit is not None:
            data["fit"] = dict(self.fit)
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> FeatureSpec:
        """Parse :meth:`to_json` output; ``ValueError`` for anything this version cannot featurize."""
        if data.get("version") != FEATURE_SPEC_VERSION:
            raise ValueError(f"unsupported feature spec version {data.get('version')!r} (supported: 1)")
        fields = tuple(
            FieldSpec(
                name=str(item["name"]),
                kind=item["kind"],
                edges=tuple(float(edge) for edge in item.get("edges", ())),
                values=tuple(str(value) for value in item.get("values", ())),
            )
            for item in data["fields"]
        )
        expected = tuple(spec.name for spec in default_fields({}))
        if tuple(spec.name for spec in fields) != expected:
            raise ValueError(f"feature spec fields must be {list(expected)}")
        rates = {str(code): float(rate) for code, rate in data.get("usd_per_unit", {}).items()}
        fit = data.get("fit")
        return cls(fields=fields, usd_per_unit=rates, fit=dict(fit) if isinstance(fit, Mapping) else None)


def default_fields(learned: Mapping[str, Sequence[str]]) -> tuple[FieldSpec, ...]:
    """The version-1 field list, with learned vocabularies for ``LEARNED_FIELDS`` (missing = empty)."""
    upstream = tuple(FieldSpec(name, "bucket", edges=edges) for _, name, edges in _UPSTREAM)
    return (
        FieldSpec("amt", "bucket", edges=_AMOUNT_EDGES),
        FieldSpec("mcc", "category", values=tuple(learned.get("mcc", ()))),
        FieldSpec("mctry", "category", values=tuple(learned.get("mctry", ()))),
        FieldSpec("ipctry", "category", values=tuple(learned.get("ipctry", ()))),
        FieldSpec("geo", "category", values=_GEO_VALUES),
        FieldSpec("chan", "category", values=_CHANNEL_VALUES),
        FieldSpec("entry", "category", values=_ENTRY_VALUES),
        FieldSpec("time", "category", values=_TIME_VALUES),
        *upstream,
        FieldSpec("dev", "bucket", edges=_DEVICE_AGE_EDGES, values=("none",)),
    )


def build_feature_spec(events: Iterable[TransactionEvent], *, min_count: int = 5) -> FeatureSpec:
    """A spec whose learned vocabularies hold every value seen at least ``min_count`` times.

    Rare values are left out on purpose: their embeddings would be trained on a handful of examples,
    and the field's unknown token (trained on all of them together) generalises better.
    """
    counters: dict[str, Counter[str]] = {name: Counter() for name in LEARNED_FIELDS}
    for event in events:
        counters["mcc"][event.merchant.mcc] += 1
        counters["mctry"][event.merchant.country] += 1
        counters["ipctry"][event.ip_country or "none"] += 1
    counters["ipctry"]["none"] += min_count  # absence is a value of its own, always in the vocabulary
    learned = {
        name: sorted(value for value, count in counter.items() if count >= min_count)
        for name, counter in counters.items()
    }
    return FeatureSpec(fields=default_fields(learned))


#: Bucket fields fitted from data, and the upstream feature each reads (``amt`` reads the amount).
FITTED_BUCKETS: Final = (("amt", None), *((name, source) for source, name, _ in _UPSTREAM), ("dev", "device_age_days"))
# Quantile levels for bucket edges: equal-frequency levels plus both tails, where fraud lives (card
# testing in the smallest amounts, bursts in the top percentile of velocity) and where
# equal-frequency buckets over mostly legitimate traffic would put a single bucket.
_TAIL_LEVELS: Final = (0.001, 0.005, 0.01, 0.02, 0.98, 0.99, 0.995, 0.999)
DEFAULT_MIN_COUNT: Final = 5
DEFAULT_AMOUNT_BUCKETS: Final = 24
DEFAULT_FEATURE_BUCKETS: Final = 12


class FeatureStatistics:
    """The per-row values that fitting a spec needs, as numpy columns (no Python object per row).

    Rows are appended chunk by chunk (:meth:`add`), so a training file of any size is summarised in
    61 bytes per row: the USD amount and seven upstream features as float32 (NaN when absent; the
    device age only for events with a device, as the featurizer reads it), and the three learned
    categorical fields as indices into per-field value tables.
    """

    NUMERIC: Final = tuple(name for name, _ in FITTED_BUCKETS)

    def __init__(self, *, usd_per_unit: Mapping[str, float] = USD_PER_UNIT, capacity: int = 1024) -> None:
        self._rates = dict(usd_per_unit)
        self._size = 0
        self._numeric = np.empty((max(1, capacity), len(self.NUMERIC)), dtype=np.float32)
        self._codes = np.empty((max(1, capacity), len(LEARNED_FIELDS)), dtype=np.int32)
        self._tables: tuple[dict[str, int], ...] = tuple({} for _ in LEARNED_FIELDS)

    def __len__(self) -> int:
        return self._size

    @property
    def usd_per_unit(self) -> Mapping[str, float]:
        return self._rates

    @property
    def nbytes(self) -> int:
        """Bytes held by the columns (their allocated capacity)."""
        return int(self._numeric.nbytes + self._codes.nbytes)

    def _grow(self, needed: int) -> None:
        capacity = len(self._numeric)
        if needed <= capacity:
            return
        capacity = max(needed, capacity * 2)
        numeric = np.empty((capacity, len(self.NUMERIC)), dtype=np.float32)
        codes = np.empty((capacity, len(LEARNED_FIELDS)), dtype=np.int32)
        numeric[: self._size] = self._numeric[: self._size]
        codes[: self._size] = self._codes[: self._size]
        self._numeric, self._codes = numeric, codes

    def add(self, events: Sequence[TransactionEvent]) -> None:
        """Append one row per event. Raises ``FeaturizeError`` (and adds nothing) for a non-finite amount."""
        count = len(events)
        self._grow(self._size + count)
        numeric = np.full((count, len(self.NUMERIC)), np.nan, dtype=np.float64)
        codes = np.empty((count, len(LEARNED_FIELDS)), dtype=np.int32)
        sources = [source for source, _, _ in _UPSTREAM]
        mcc, mctry, ipctry = self._tables
        for row, event in enumerate(events):
            amount = float(event.amount) * self._rates.get(event.currency, 1.0)
            if not math.isfinite(amount):
                raise FeaturizeError("cannot featurize event: amount is not finite")
            values = numeric[row]
            values[0] = amount
            upstream = event.features
            for column, source in enumerate(sources, start=1):
                value = upstream.get(source)
                if value is not None:
                    values[column] = value
            if event.device_id is not None:
                age = upstream.get("device_age_days")
                if age is not None:
                    values[-1] = age
            codes[row, 0] = mcc.setdefault(event.merchant.mcc, len(mcc))
            codes[row, 1] = mctry.setdefault(event.merchant.country, len(mctry))
            codes[row, 2] = ipctry.setdefault(event.ip_country or "none", len(ipctry))
        self._numeric[self._size : self._size + count] = numeric
        self._codes[self._size : self._size + count] = codes
        self._size += count

    @classmethod
    def from_events(cls, events: Iterable[TransactionEvent], **options: Any) -> FeatureStatistics:
        """Statistics of events held in memory (tests, small data)."""
        items = list(events)
        statistics = cls(capacity=len(items), **options)
        statistics.add(items)
        return statistics

    def numeric(self, name: str) -> npt.NDArray[np.float32]:
        """The column of numeric field ``name`` (a view; NaN = absent)."""
        return self._numeric[: self._size, self.NUMERIC.index(name)]

    def categories(self, name: str) -> tuple[npt.NDArray[np.int32], tuple[str, ...]]:
        """(index per row, value of each index) for learned field ``name``."""
        position = LEARNED_FIELDS.index(name)
        table = self._tables[position]
        values = tuple(sorted(table, key=table.__getitem__))
        return self._codes[: self._size, position], values


def fitted_edges(values: npt.NDArray[np.floating], *, buckets: int, min_count: int) -> tuple[float, ...]:
    """Bucket edges for ``values`` (NaN ignored): quantiles, tails included, no bucket under ``min_count``.

    A value ``v`` falls in bucket ``bisect_right(edges, v)``. Edges are values taken from the data
    (quantiles by the ``lower`` method), so a discrete signal (counts, flags) gets one bucket per
    frequent value and a continuous one equal-frequency buckets, with extra resolution in the
    outer 2% on both sides. Buckets holding fewer than ``min_count`` values are merged into their
    smaller neighbour.
    """
    present = np.sort(values[np.isfinite(values)])
    if present.size == 0:
        return ()
    levels = sorted({*(k / buckets for k in range(1, buckets)), *_TAIL_LEVELS})
    candidates = np.unique(np.quantile(present, levels, method="lower"))
    # The shortest decimal that is the same float32 (1.0476, not 1.0476000308990479): the edge the
    # data meant, so a value written as 1.0476 falls on the edge's upper side as intended.
    edges = [float(str(np.float32(edge))) for edge in candidates if edge > present[0]]
    counts = np.diff(np.searchsorted(present, [-np.inf, *edges, np.inf], side="left")).tolist()
    while edges and min(counts) < min_count:
        smallest = int(np.argmin(counts))
        if smallest == 0:
            neighbour = 1
        elif smallest == len(counts) - 1:
            neighbour = smallest - 1
        else:
            neighbour = smallest - 1 if counts[smallest - 1] <= counts[smallest + 1] else smallest + 1
        low = min(smallest, neighbour)
        counts[low : low + 2] = [counts[low] + counts[low + 1]]
        del edges[low]
    return tuple(edges)


def fit_feature_spec(
    statistics: FeatureStatistics,
    rows: npt.NDArray[np.bool_] | None = None,
    *,
    min_count: int = DEFAULT_MIN_COUNT,
    amount_buckets: int = DEFAULT_AMOUNT_BUCKETS,
    feature_buckets: int = DEFAULT_FEATURE_BUCKETS,
    fit_edges: bool = True,
) -> FeatureSpec:
    """A spec fitted on the rows of ``statistics`` selected by the mask ``rows`` (default: all).

    Vocabularies hold the values seen at least ``min_count`` times (absence of an IP country is
    always a value); every bucket field's edges come from :func:`fitted_edges` (``amount_buckets``
    equal-frequency levels for the amount, ``feature_buckets`` for the upstream features and device
    age). Nothing depends on the synthetic world's units: a bank's signals are bucketed as they are.
    ``fit_edges=False`` keeps the hand-set edges of :func:`build_feature_spec` (the same spec it
    builds from the same rows): the comparison that shows what fitting the edges is worth.
    """
    if min_count < 1:
        raise ValueError("min_count must be >= 1")
    if amount_buckets < 2 or feature_buckets < 2:
        raise ValueError("bucket counts must be >= 2")
    selected = np.ones(len(statistics), dtype=bool) if rows is None else np.asarray(rows, dtype=bool)
    if selected.shape != (len(statistics),):
        raise ValueError("rows must be a mask with one entry per statistics row")
    learned: dict[str, list[str]] = {}
    for name in LEARNED_FIELDS:
        codes, values = statistics.categories(name)
        counts = np.bincount(codes[selected], minlength=len(values))
        learned[name] = sorted(
            value for value, count in zip(values, counts.tolist(), strict=True) if count >= min_count
        )
    if "none" not in learned["ipctry"]:
        learned["ipctry"] = sorted([*learned["ipctry"], "none"])  # absence is a value of its own, always known
    if not fit_edges:
        return FeatureSpec(fields=default_fields(learned), usd_per_unit=dict(statistics.usd_per_unit))
    edges = {
        name: fitted_edges(
            statistics.numeric(name)[selected],
            buckets=amount_buckets if name == "amt" else feature_buckets,
            min_count=min_count,
        )
        for name in FeatureStatistics.NUMERIC
    }
    fields = tuple(
        replace(spec, edges=edges[spec.name]) if spec.name in edges else spec for spec in default_fields(learned)
    )
    fit = {
        "method": "quantiles",
        "rows": int(selected.sum()),
        "min_count": min_count,
        "amount_buckets": amount_buckets,
        "feature_buckets": feature_buckets,
        "tail_levels": list(_TAIL_LEVELS),
    }
    return FeatureSpec(fields=fields, usd_per_unit=dict(statistics.usd_per_unit), fit=fit)


def build_tokenizer(spec: FeatureSpec, extra_tokens: Sequence[str] = ()) -> Tokenizer:
    """The WordLevel tokenizer of ``spec``'s vocabulary, splitting the text form on whitespace.

    ``extra_tokens`` (a history model's, :func:`inference.sequence.history_tokens`) follow the
    spec's tokens, whose ids they leave unchanged.
    """
    vocabulary = spec.vocabulary()
    for token in extra_tokens:
        if token in vocabulary:
            raise ValueError(f"extra token {token!r} is already in the feature spec's vocabulary")
        vocabulary[token] = len(vocabulary)
    tokenizer = Tokenizer(models.WordLevel(vocab=vocabulary, unk_token=UNK_TOKEN))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer.add_special_tokens(list(SPECIAL_TOKENS))
    return tokenizer


class Featurizer:
    """Event -> token ids with the vocabulary of a tokenizer. Immutable after construction.

    :meth:`featurize` and :meth:`tokens` are pure and thread-safe: they only read tables built here.
    """

    def __init__(self, spec: FeatureSpec, vocabulary: Mapping[str, int]) -> None:
        missing = [token for token in spec.vocabulary() if token not in vocabulary]
        if missing:
            raise ValueError(f"the tokenizer lacks {len(missing)} tokens of the feature spec, e.g. {missing[:3]}")
        self.spec = spec
        self.sequence_length = spec.sequence_length
        self._rates = dict(spec.usd_per_unit)
        by_name = {f.name: f for f in spec.fields}
        self._edges = {f.name: f.edges for f in spec.fields if f.kind == "bucket"}

        def bucket_ids(name: str) -> tuple[int, ...]:
            # Indices 0..len(edges) are the buckets; index len(edges) + 1 is the missing-value token.
            field_spec = by_name[name]
            return tuple(vocabulary[token] for token in field_spec.tokens()[: len(field_spec.edges) + 2])

        def category_ids(name: str) -> tuple[dict[str, int], int]:
            table = {value: vocabulary[f"{name}:{value}"] for value in by_name[name].values}
            return table, vocabulary[f"{name}:{UNKNOWN_VALUE}"]

        self._amount = (self._edges["amt"], bucket_ids("amt"))
        self._mcc, self._mcc_unknown = category_ids("mcc")
        self._mctry, self._mctry_unknown = category_ids("mctry")
        self._ipctry, self._ipctry_unknown = category_ids("ipctry")
        self._geo, _ = category_ids("geo")
        self._channel, self._channel_unknown = category_ids("chan")
        self._entry, self._entry_unknown = category_ids("entry")
        self._time, _ = category_ids("time")
        self._upstream = tuple((source, self._edges[name], bucket_ids(name)) for source, name, _ in _UPSTREAM)
        self._device = (self._edges["dev"], bucket_ids("dev"))
        self._device_none = vocabulary["dev:none"]
        self._summary = vocabulary[SUMMARY_TOKEN]

    def featurize(self, event: TransactionEvent) -> Features:
        """Token ids of ``event``, identical to the tokenizer's ids for :meth:`text`.

        Raises ``FeaturizeError`` when a value cannot be featurized (e.g. a non-finite amount).
        """
        try:
            return np.array(self._ids(event), dtype=np.int64)
        except (ArithmeticError, AttributeError, TypeError, ValueError) as exc:
            # ``from None``: the cause's message may quote event values; the error must not.
            raise FeaturizeError(f"cannot featurize event: {exc.__class__.__name__}") from None

    def _ids(self, event: TransactionEvent) -> list[int]:
        merchant = event.merchant
        upstream = event.features
        edges, ids = self._amount
        amount_usd = float(event.amount) * self._rates.get(event.currency, 1.0)
        if not math.isfinite(amount_usd):
            raise ValueError("amount is not finite")
        result = [
            ids[bisect_right(edges, amount_usd)],
            self._mcc.get(merchant.mcc, self._mcc_unknown),
            self._mctry.get(merchant.country, self._mctry_unknown),
            self._ipctry.get(event.ip_country or "none", self._ipctry_unknown),
            self._geo[_geo_value(event)],
            self._channel.get(_channel_value(event), self._channel_unknown),
            self._entry.get(event.entry_mode.value, self._entry_unknown),
            self._time[_time_value(event)],
        ]
        for source, edges, ids in self._upstream:
            value = upstream.get(source)
            result.append(ids[-1] if value is None else ids[bisect_right(edges, value)])
        if event.device_id is None:
            result.append(self._device_none)
        else:
            edges, ids = self._device
            age = upstream.get("device_age_days")
            result.append(ids[-1] if age is None else ids[bisect_right(edges, age)])
        result.append(self._summary)
        return result

    def featurize_batch(self, events: Iterable[TransactionEvent]) -> npt.NDArray[np.int64]:
        """Token ids of many events as one ``(n, sequence_length)`` array (training, evaluation)."""
        try:
            rows = [self._ids(event) for event in events]
        except (ArithmeticError, AttributeError, TypeError, ValueError) as exc:
            raise FeaturizeError(f"cannot featurize event: {exc.__class__.__name__}") from None
        if not rows:
            return np.empty((0, self.sequence_length), dtype=np.int64)
        return np.array(rows, dtype=np.int64)

    def tokens(self, event: TransactionEvent) -> list[str]:
        """The words the tokenizer sees for ``event``: ``["amt:07", "mcc:5411", ..., "[SUM]"]``.

        Built independently of :meth:`featurize` (string formatting rather than id tables), which is
        what lets tests check the fast path against the real tokenizer.
        """
        upstream = event.features
        amount_usd = float(event.amount) * self._rates.get(event.currency, 1.0)
        categories = {
            "mcc": (event.merchant.mcc, self._mcc),
            "mctry": (event.merchant.country, self._mctry),
            "ipctry": (event.ip_country or "none", self._ipctry),
            "geo": (_geo_value(event), self._geo),
            "chan": (_channel_value(event), self._channel),
            "entry": (event.entry_mode.value, self._entry),
            "time": (_time_value(event), self._time),
        }
        words = [f"amt:{bisect_right(self._edges['amt'], amount_usd):02d}"]
        for name, (key, known) in categories.items():
            words.append(f"{name}:{key if key in known else UNKNOWN_VALUE}")
        for source, name, _ in _UPSTREAM:
            words.append(f"{name}:{self._bucket_key(name, upstream.get(source))}")
        if event.device_id is None:
            words.append("dev:none")
        else:
            words.append(f"dev:{self._bucket_key('dev', upstream.get('device_age_days'))}")
        words.append(SUMMARY_TOKEN)
        return words

    def _bucket_key(self, name: str, value: float | None) -> str:
        return MISSING_VALUE if value is None else f"{bisect_right(self._edges[name], value):02d}"

    def text(self, event: TransactionEvent) -> str:
        """The tokenizer input for ``event``: :meth:`tokens` joined by spaces."""
        return " ".join(self.tokens(event))


def _geo_value(event: TransactionEvent) -> str:
    flag = event.features.get("cross_border")
    flag_key = MISSING_VALUE if flag is None else ("1" if flag >= 0.5 else "0")
    if event.ip_country is None:
        relation = "none"
    elif event.ip_country == event.merchant.country:
        relation = "same"
    else:
        relation = "diff"
    return f"x{flag_key}-{relation}"


def _channel_value(event: TransactionEvent) -> str:
    return f"{event.channel.value}-{'cp' if event.card_present else 'cnp'}"


def _time_value(event: TransactionEvent) -> str:
    moment = event.event_time
    return f"{moment.hour:02d}{'we' if moment.weekday() >= 5 else 'wd'}"
