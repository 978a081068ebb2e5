"""Per-account behavioural state: what an account did before the transaction being scored.

An :class:`AccountHistory` is the state of one account (the Kafka key). The worker keeps one per
account of its partitions, featurizes each event *against* its account's history, and then applies
the event to it (:meth:`AccountHistory.observe`), in offset order. Pure Python: no torch, no numpy on
the hot path.

What it holds (all in event time, whole seconds since the epoch):

``ring``
    the account's last ``capacity`` transactions (default :data:`DEFAULT_CAPACITY` = 32), oldest
    first, as :class:`TransactionRecord`: time, amount in USD at riskstream's reference rates
    (:data:`inference.reference.USD_PER_UNIT`; unknown currencies at 1.0), MCC, merchant and IP
    country, channel/entry mode/card-present, and 32-bit digests of the device and merchant ids.
``windows``
    transaction counts and USD sums over sliding 10 min / 1 h / 24 h / 7 d windows, each kept as a
    ring of sub-buckets (:data:`WINDOWS`: 10 x 1 min, 6 x 10 min, 12 x 2 h, 7 x 1 day). A window at
    time ``t`` is the sum of the bucket holding ``t`` and the ones before it: it covers between
    ``window - bucket`` and ``window`` seconds of the past, so counts are exact to one bucket width.
``amounts``
    a running mean and variance (Welford) of ``ln(USD amount)`` over every observed transaction:
    amounts are log-normal, and a z-score on the log scale is what "unusually large for this
    account" means.
``seen sets``
    bounded LRU sets of the account's most recently used devices (8, with the time each was first
    and last used), merchants (16), merchant countries (8) and IP countries (8), each with the time
    it was last used. They answer "first seen" (not among the recently used values) and "distinct in
    the last 24 h". Why LRU sets and not sketches: an account uses a handful of devices and
    countries and a few dozen merchants, so a small exact set holds all that matters; a Bloom
    filter cannot forget (an account active for years saturates it) and cannot say *when* a value
    was last used, which the 24 h distinct counts and the device age need. What falls out of a set
    counts as new again: "first seen" means "not used recently", which is what fraud teams use.

What the caller may rely on:

* **Order.** ``observe`` applies one event; the caller applies an account's events in offset order
  and featurizes an event *before* observing it (:func:`replay` is that loop, the reference the
  worker's batch path must match). The state after a sequence of events depends only on the
  sequence, never on wall-clock time or on being serialized in between: every value is held in
  memory exactly as :meth:`to_bytes` writes it (times in whole seconds, amounts as float32).
* **Out-of-order events.** The stream is ordered by offset, not event time, so an event may be
  older than the newest one seen. It joins the ring at its place in time (if it is not older than
  a full ring's oldest entry), the window buckets still kept for its time, the amount statistics
  and the seen sets; the newest time never moves back. Read at an event's time: windows count the
  buckets up to the one holding that time (events of later buckets are not counted); ring rows and
  set entries later than the event are kept, with their delay clamped to zero — never a negative
  delta.
* **Time to live.** :meth:`expired` is true when the account has been idle (in event time) for
  longer than :data:`TTL_SECONDS` (30 days): the store may drop it (a tombstone). An event further
  than the TTL from the newest one, either way, starts the history afresh, and :meth:`summary`
  reads such a history as cold — so whether or not a store has swept an idle account, its next
  event sees the same thing. (A far-future timestamp therefore costs the account its history
  once, and the next normal event starts it again, rather than blinding it for years.)
* **Serialization.** :meth:`to_bytes` is compact (about 0.5-1 KB for an account with a full ring)
  and deterministic: equal states give equal bytes, and ``from_bytes(h.to_bytes()).to_bytes() ==
  h.to_bytes()``. The first byte is the format version (:data:`HISTORY_FORMAT_VERSION`);
  :meth:`from_bytes` rejects any other version, and any malformed input, with
  :class:`HistoryFormatError`.
* **No card data, no ids.** Device and merchant ids are kept only as 32-bit BLAKE2b digests of
  their PAN-masked form (:func:`schemas.redaction.mask_identifier`): a PAN-looking id is never kept,
  verbatim or hashed whole. The account id is the store's key and is not in the state; the card
  token, BIN and last four are not kept at all.

Format version 1 (little-endian; every time is u32 seconds after ``base``)::

    u8 version=1 | u8 capacity | i64 base | u32 newest | u32 first | u32 observed | f64 log-mean | f64 log-M2
    u8 n | n x ring entry, oldest first (23 bytes):
        u32 time | f32 amount_usd | u16 mcc | u16 merchant country | u16 IP country (0xFFFF: none)
        | u8 how (channel * 12 + entry mode * 2 + card present) | u32 device digest (0: none) | u32 merchant digest
    35 x u16 window bucket counts | 35 x f32 window bucket USD sums
        (the windows' buckets in WINDOWS order; bucket b of a window lives in slot b mod buckets)
    u8 n | n x u32 device digest | n x u32 first use | n x u32 last use          (least recently used first)
    u8 n | n x u32 merchant digest | n x u32 last use                            (least recently used first)
    u8 n | n x u16 merchant country | n x u32 last use                           (least recently used first)
    u8 n | n x u16 IP country | n x u32 last use                                 (least recently used first)

The in-memory layout is this layout (a ``bytearray`` ring and ``array`` columns), so serializing
is a few buffer copies and observing never re-encodes the ring.

Channel and entry-mode numbers are the positions in ``schemas.Channel`` and ``schemas.EntryMode``
(new members are appended, so numbers stay stable); countries are ``(A - 'A') * 26 + (B - 'A')``.
"""

from __future__ import annotations

import hashlib
import math
import struct
import sys
from array import array
from collections.abc import Callable, Iterable, MutableMapping
from datetime import datetime
from typing import Final, NamedTuple, TypeVar

from inference.reference import USD_PER_UNIT
from schemas import Channel, EntryMode, TransactionEvent
from schemas.redaction import mask_identifier

HISTORY_FORMAT_VERSION: Final = 1
#: Transactions kept in the ring (K).
DEFAULT_CAPACITY: Final = 32
MAX_CAPACITY: Final = 255
#: Idle time (event time) after which an account's history is dropped or restarted.
TTL_SECONDS: Final = 30 * 86_400
#: Sliding windows: (name, seconds, buckets). A bucket is ``seconds // buckets`` wide.
WINDOWS: Final = (("10m", 600, 10), ("1h", 3_600, 6), ("24h", 86_400, 12), ("7d", 604_800, 7))
DISTINCT_WINDOW_SECONDS: Final = 86_400
DEVICE_SLOTS: Final = 8
MERCHANT_SLOTS: Final = 16
COUNTRY_SLOTS: Final = 8
NO_COUNTRY: Final = 0xFFFF
NO_DEVICE: Final = 0
_MAX_TIME: Final = 0xFFFFFFFF  # stored times are u32 seconds after the base (136 years)
_MAX_COUNT: Final = 0xFFFF
_MAX_OBSERVED: Final = 0xFFFFFFFF
_CHANNELS: Final = {channel: index for index, channel in enumerate(Channel)}
_ENTRY_MODES: Final = {mode: index for index, mode in enumerate(EntryMode)}
_CHANNEL_LIST: Final = tuple(Channel)
_ENTRY_LIST: Final = tuple(EntryMode)
_DIGEST_PERSON: Final = b"riskstream-hist1"
# (first slot, bucket width in seconds, buckets) of each window in the shared bucket columns.
_LAYOUT: Final = tuple(
    (sum(buckets for _, _, buckets in WINDOWS[:index]), seconds // buckets, buckets)
    for index, (_, seconds, buckets) in enumerate(WINDOWS)
)
_BUCKETS: Final = sum(buckets for _, _, buckets in WINDOWS)

_HEADER = struct.Struct("<BBqIIIdd")
_RING_FORMAT: Final = "<IfHHHBII"
_RING_ENTRY = struct.Struct(_RING_FORMAT)
_ENTRY: Final = _RING_ENTRY.size
_TIME = struct.Struct("<I")
_FLOAT32 = struct.Struct("<f")
_LITTLE: Final = sys.byteorder == "little"

T = TypeVar("T")
#: A ring row as :meth:`AccountHistory.summary` hands it out: ``(seconds before the transaction read
#: at, clamped at 0, amount_usd, mcc, merchant_country, ip_country, how, device, merchant)``.
Row = tuple[int, float, int, int, int, int, int, int]


class HistoryFormatError(ValueError):
    """Bytes that are not an account history this version can read."""


class TransactionRecord(NamedTuple):
    """What the history keeps of one transaction (and what featurizing against it needs of the current one)."""

    time: int
    """Event time, whole seconds since the epoch (floored)."""
    amount_usd: float
    """USD at the reference rates, rounded to float32."""
    mcc: int
    merchant_country: int
    ip_country: int
    """``NO_COUNTRY`` when the event has none."""
    how: int
    """``channel * 12 + entry_mode * 2 + card_present``."""
    device: int
    """32-bit digest of the masked device id; ``NO_DEVICE`` (0) when the event has none."""
    merchant: int
    """32-bit digest of the masked merchant id."""

    @property
    def channel(self) -> Channel:
        return _CHANNEL_LIST[self.how // 12]

    @property
    def entry_mode(self) -> EntryMode:
        return _ENTRY_LIST[(self.how // 2) % 6]

    @property
    def card_present(self) -> bool:
        return bool(self.how & 1)


def float32(value: float) -> float:
    """``value`` rounded to the nearest float32 (what the history stores)."""
    result: float = _FLOAT32.unpack(_FLOAT32.pack(value))[0]
    return result


def country_code(country: str) -> int:
    """A two-letter country as a number below 676."""
    return (ord(country[0]) - 65) * 26 + (ord(country[1]) - 65)


def how_code(channel: Channel, entry_mode: EntryMode, card_present: bool) -> int:
    """``channel * 12 + entry_mode * 2 + card_present``: the ``how`` of a :class:`TransactionRecord`."""
    return _CHANNELS[channel] * 12 + _ENTRY_MODES[entry_mode] * 2 + (1 if card_present else 0)


def digest(identifier: str) -> int:
    """The 32-bit digest (never 0) the history keeps instead of a device or merchant id.

    The id is PAN-masked first, so the digest of an id carrying a card number depends only on its
    BIN and last four.
    """
    value = hashlib.blake2b(mask_identifier(identifier).encode(), digest_size=4, person=_DIGEST_PERSON).digest()
    return int.from_bytes(value, "little") or 1


def record_of(
    event: TransactionEvent, usd_per_unit: Callable[[str], float | None] = USD_PER_UNIT.get
) -> TransactionRecord:
    """What the history keeps of ``event``. Raises ``ValueError`` for an amount not finite in USD."""
    amount = float(event.amount) * (usd_per_unit(event.currency) or 1.0)
    if not math.isfinite(amount):
        raise ValueError("amount is not finite")
    merchant = event.merchant
    ip = event.ip_country
    device = event.device_id
    return TransactionRecord(
        math.floor(event.event_time.timestamp()),
        float32(amount),
        int(merchant.mcc),
        country_code(merchant.country),
        NO_COUNTRY if ip is None else country_code(ip),
        how_code(event.channel, event.entry_mode, event.card_present),
        NO_DEVICE if device is None else digest(device),
        digest(merchant.merchant_id),
    )


class HistorySummary(NamedTuple):
    """The history read at one transaction's time (see :meth:`AccountHistory.summary`)."""

    observed: int
    """Transactions observed (0: a cold account)."""
    tenure_s: int
    """Seconds since the first observed transaction (0 when cold)."""
    since_previous_s: int | None
    """Seconds since the newest observed transaction, clamped at 0; None when cold."""
    window_counts: tuple[int, ...]
    """Transactions in each of :data:`WINDOWS` before this one."""
    window_sums: tuple[float, ...]
    """Their USD sums."""
    amount_z: float | None
    """This amount's z-score on the log scale against the account's; None below 3 observed."""
    distinct_merchants_24h: int
    distinct_merchant_countries_24h: int
    distinct_devices_24h: int
    device_age_s: int | None
    """Seconds since this device was first used by the account; None for no device or a new one."""
    new_device: bool | None
    """None when the transaction has no device."""
    new_merchant: bool
    new_merchant_country: bool
    new_ip_country: bool | None
    """None when the transaction has no IP country."""
    rows: tuple[Row, ...]
    """The newest ring rows asked for, oldest first (see :data:`Row`)."""


def cold_summary(record: TransactionRecord) -> HistorySummary:
    """How a history that has seen nothing reads (before observing anything, or past its TTL)."""
    return HistorySummary(
        0,
        0,
        None,
        (0,) * len(WINDOWS),
        (0.0,) * len(WINDOWS),
        None,
        0,
        0,
        0,
        None,
        None if record.device == NO_DEVICE else True,
        True,
        True,
        None if record.ip_country == NO_COUNTRY else True,
        (),
    )


def _little(column: array[int] | array[float]) -> bytes:
    if _LITTLE:
        return column.tobytes()
    swapped = array(column.typecode, column)
    swapped.byteswap()
    return swapped.tobytes()


def _column(typecode: str, data: memoryview) -> array[int]:
    column = array(typecode)
    column.frombytes(data)
    if not _LITTLE:
        column.byteswap()
    return column


class AccountHistory:
    """The behavioural state of one account; see the module docstring for what it keeps and guarantees."""

    __slots__ = (
        "_base",
        "_capacity",
        "_counts",
        "_device_first",
        "_device_keys",
        "_device_last",
        "_first",
        "_ip_keys",
        "_ip_last",
        "_log_m2",
        "_log_mean",
        "_merchant_country_keys",
        "_merchant_country_last",
        "_merchant_keys",
        "_merchant_last",
        "_newest",
        "_observed",
        "_ring",
        "_sums",
    )

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        if not 1 <= capacity <= MAX_CAPACITY:
            raise ValueError(f"capacity must be within [1, {MAX_CAPACITY}]")
        self._capacity = capacity
        self._reset()

    def _reset(self) -> None:
        # Every stored time is seconds after ``_base`` (the earliest time the history holds).
        self._base = 0
        self._newest = 0
        self._first = 0
        self._observed = 0
        self._log_mean = 0.0
        self._log_m2 = 0.0
        self._ring = bytearray()
        self._counts = array("H", bytes(2 * _BUCKETS))
        self._sums = array("f", bytes(4 * _BUCKETS))
        # Seen sets: parallel columns in least-recently-used-first order.
        self._device_keys = array("I")
        self._device_first = array("I")
        self._device_last = array("I")
        self._merchant_keys = array("I")
        self._merchant_last = array("I")
        self._merchant_country_keys = array("H")
        self._merchant_country_last = array("I")
        self._ip_keys = array("H")
        self._ip_last = array("I")

    # -- reading -----------------------------------------------------------------------------------

    @property
    def capacity(self) -> int:
        return self._capacity

    @property
    def observed(self) -> int:
        """Transactions observed since the history (re)started."""
        return self._observed

    @property
    def newest(self) -> int | None:
        """Event time (epoch seconds) of the newest observed transaction; None when empty."""
        return self._base + self._newest if self._observed else None

    @property
    def ring(self) -> tuple[TransactionRecord, ...]:
        """The kept transactions, oldest first, with absolute times (featurizers read :meth:`summary`)."""
        base = self._base
        return tuple(TransactionRecord(base + row[0], *row[1:]) for row in struct.iter_unpack(_RING_FORMAT, self._ring))

    def expired(self, now: datetime, ttl_s: int = TTL_SECONDS) -> bool:
        """Whether the account has been idle (event time) for longer than ``ttl_s`` at ``now``.

        An empty history is expired: there is nothing to keep.
        """
        return self._observed == 0 or now.timestamp() - (self._base + self._newest) > ttl_s

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, AccountHistory):
            return NotImplemented
        return self.to_bytes() == other.to_bytes()

    __hash__ = None  # type: ignore[assignment]  # mutable: not hashable

    def __repr__(self) -> str:
        return f"AccountHistory(observed={self._observed}, ring={len(self._ring) // _ENTRY}/{self._capacity})"

    def summary(self, record: TransactionRecord, rows: int | None = None) -> HistorySummary:
        """The history as transaction ``record`` sees it (before it is observed), with the newest
        ``rows`` ring rows (all when None).

        A history whose newest transaction is further than the TTL from ``record`` reads as cold.
        """
        t = record.time
        newest = self._base + self._newest
        if self._observed == 0 or abs(t - newest) > TTL_SECONDS:
            return cold_summary(record)
        counts = self._counts
        sums = self._sums
        window_counts: list[int] = []
        window_sums: list[float] = []
        for first_slot, width, buckets in _LAYOUT:
            query, latest = t // width, newest // width
            low = max(query, latest) - buckets + 1
            high = min(query, latest)
            if high < low:
                window_counts.append(0)
                window_sums.append(0.0)
                continue
            start, stop = first_slot + low % buckets, first_slot + high % buckets + 1
            if start < stop:
                window_counts.append(sum(counts[start:stop]))
                window_sums.append(sum(sums[start:stop]))
            else:  # the range wraps around the window's ring of buckets
                end = first_slot + buckets
                window_counts.append(sum(counts[start:end]) + sum(counts[first_slot:stop]))
                window_sums.append(sum(sums[start:end]) + sum(sums[first_slot:stop]))
        relative = t - self._base
        horizon = relative - DISTINCT_WINDOW_SECONDS
        amount_z: float | None = None
        if self._observed >= 3:
            variance = self._log_m2 / self._observed
            amount_z = (math.log(max(record.amount_usd, 1e-4)) - self._log_mean) / math.sqrt(variance + 0.01)
        device_age: int | None = None
        new_device: bool | None = None
        if record.device != NO_DEVICE:
            new_device = record.device not in self._device_keys
            if not new_device:
                device_age = max(0, relative - self._device_first[self._device_keys.index(record.device)])
        ring = self._ring
        kept = len(ring) // _ENTRY if rows is None else min(rows, len(ring) // _ENTRY)
        tail = memoryview(ring)[len(ring) - kept * _ENTRY :]
        return HistorySummary(
            self._observed,
            max(0, relative - self._first),
            max(0, t - newest),
            tuple(window_counts),
            tuple(window_sums),
            amount_z,
            sum(map(horizon.__lt__, self._merchant_last)),
            sum(map(horizon.__lt__, self._merchant_country_last)),
            sum(map(horizon.__lt__, self._device_last)),
            device_age,
            new_device,
            record.merchant not in self._merchant_keys,
            record.merchant_country not in self._merchant_country_keys,
            None if record.ip_country == NO_COUNTRY else record.ip_country not in self._ip_keys,
            tuple(
                (relative - at if at <= relative else 0, amount, mcc, country, ip, how, device, merchant)
                for at, amount, mcc, country, ip, how, device, merchant in struct.iter_unpack(_RING_FORMAT, tail)
            ),
        )

    # -- updating ----------------------------------------------------------------------------------

    def observe(self, event: TransactionEvent) -> None:
        """Apply one event (after featurizing it). Raises ``ValueError`` for an amount that is not finite."""
        self.observe_record(record_of(event))

    def observe_record(self, record: TransactionRecord) -> None:
        """Apply one transaction as :func:`record_of` reduced it."""
        t = record.time
        if self._observed and (abs(t - (self._base + self._newest)) > TTL_SECONDS or t - self._base > _MAX_TIME):
            self._reset()
        if self._observed == 0:
            self._base = t
        elif t < self._base:
            self._rebase(t)
        relative = t - self._base
        if relative > self._newest:
            self._advance(relative)
        if relative < self._first:
            self._first = relative
        newest = self._base + self._newest
        amount = record.amount_usd
        counts = self._counts
        sums = self._sums
        for first_slot, width, buckets in _LAYOUT:
            bucket = t // width
            if newest // width - bucket < buckets:
                slot = first_slot + bucket % buckets
                if counts[slot] < _MAX_COUNT:
                    counts[slot] += 1
                sums[slot] += amount  # the float32 column rounds the sum as stored
        if self._observed < _MAX_OBSERVED:
            self._observed += 1
            value = math.log(max(amount, 1e-4))
            delta = value - self._log_mean
            self._log_mean += delta / self._observed
            self._log_m2 += delta * (value - self._log_mean)
        self._insert(relative, record)
        if record.device != NO_DEVICE:
            _touch_device(self, record.device, relative)
        _touch(self._merchant_keys, self._merchant_last, record.merchant, relative, MERCHANT_SLOTS)
        _touch(
            self._merchant_country_keys, self._merchant_country_last, record.merchant_country, relative, COUNTRY_SLOTS
        )
        if record.ip_country != NO_COUNTRY:
            _touch(self._ip_keys, self._ip_last, record.ip_country, relative, COUNTRY_SLOTS)

    def _insert(self, relative: int, record: TransactionRecord) -> None:
        """Put ``record`` into the ring at its place in time (after equal times); drop the oldest when full."""
        ring = self._ring
        entry = _RING_ENTRY.pack(relative, *record[1:])
        size = len(ring)
        if not size or _TIME.unpack_from(ring, size - _ENTRY)[0] <= relative:
            ring += entry
        else:
            position = size - _ENTRY
            while position > 0 and _TIME.unpack_from(ring, position - _ENTRY)[0] > relative:
                position -= _ENTRY
            if position == 0 and size >= self._capacity * _ENTRY:
                return  # older than everything in a full ring: it would be the one dropped
            ring[position:position] = entry
        if len(ring) > self._capacity * _ENTRY:
            del ring[:_ENTRY]

    def _advance(self, newest: int) -> None:
        """Move the newest time forward to ``newest`` (relative): clear the window buckets it rolls past."""
        base = self._base
        old = base + self._newest
        new = base + newest
        counts = self._counts
        sums = self._sums
        for first_slot, width, buckets in _LAYOUT:
            previous, latest = old // width, new // width
            for bucket in range(max(previous + 1, latest - buckets + 1), latest + 1):
                slot = first_slot + bucket % buckets
                counts[slot] = 0
                sums[slot] = 0.0
        self._newest = newest

    def _rebase(self, base: int) -> None:
        """Make ``base`` (earlier than the current one) the new base: every stored time moves up."""
        shift = self._base - base
        self._base = base
        self._newest += shift
        self._first += shift
        ring = self._ring
        for position in range(0, len(ring), _ENTRY):
            _TIME.pack_into(ring, position, _TIME.unpack_from(ring, position)[0] + shift)
        for column in (
            self._device_first,
            self._device_last,
            self._merchant_last,
            self._merchant_country_last,
            self._ip_last,
        ):
            for index in range(len(column)):
                column[index] += shift

    # -- serialization -----------------------------------------------------------------------------

    def to_bytes(self) -> bytes:
        """The compact, versioned, deterministic form (see the module docstring for the layout)."""
        ring = self._ring
        return b"".join(
            (
                _HEADER.pack(
                    HISTORY_FORMAT_VERSION,
                    self._capacity,
                    self._base,
                    self._newest,
                    self._first,
                    self._observed,
                    self._log_mean,
                    self._log_m2,
                ),
                bytes((len(ring) // _ENTRY,)),
                ring,
                _little(self._counts),
                _little(self._sums),
                bytes((len(self._device_keys),)),
                _little(self._device_keys),
                _little(self._device_first),
                _little(self._device_last),
                bytes((len(self._merchant_keys),)),
                _little(self._merchant_keys),
                _little(self._merchant_last),
                bytes((len(self._merchant_country_keys),)),
                _little(self._merchant_country_keys),
                _little(self._merchant_country_last),
                bytes((len(self._ip_keys),)),
                _little(self._ip_keys),
                _little(self._ip_last),
            )
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> AccountHistory:
        """Read :meth:`to_bytes` output; :class:`HistoryFormatError` for another version or malformed bytes."""
        if not data:
            raise HistoryFormatError("empty account history")
        if data[0] != HISTORY_FORMAT_VERSION:
            raise HistoryFormatError(
                f"unsupported account history format version {data[0]} (this riskstream reads {HISTORY_FORMAT_VERSION})"
            )
        try:
            history = cls._parse(memoryview(data))
        except (struct.error, ValueError, IndexError) as exc:
            raise HistoryFormatError(f"malformed account history ({exc})") from None
        return history

    @classmethod
    def _parse(cls, view: memoryview) -> AccountHistory:
        _, capacity, base, newest, first, observed, log_mean, log_m2 = _HEADER.unpack_from(view, 0)
        if not 1 <= capacity <= MAX_CAPACITY:
            raise ValueError("capacity out of range")
        history = cls.__new__(cls)  # every field is set below: skip building an empty state first
        history._capacity = capacity
        history._base, history._newest, history._first = base, newest, first
        history._observed, history._log_mean, history._log_m2 = observed, log_mean, log_m2
        offset = _HEADER.size

        def take(size: int) -> memoryview:
            nonlocal offset
            if offset + size > len(view):
                raise ValueError("truncated")
            part = view[offset : offset + size]
            offset += size
            return part

        entries = take(1)[0]
        if entries > capacity:
            raise ValueError("ring longer than its capacity")
        history._ring = bytearray(take(entries * _ENTRY))
        times = struct.unpack_from("<" + f"I{_ENTRY - 4}x" * entries, history._ring)
        if list(times) != sorted(times) or (times and (times[-1] != newest or times[0] < first)):
            raise ValueError("ring times out of order or outside the history")
        history._counts = _column("H", take(2 * _BUCKETS))
        history._sums = array("f")
        history._sums.frombytes(take(4 * _BUCKETS))
        if not _LITTLE:
            history._sums.byteswap()
        devices = take(1)[0]
        history._device_keys = _column("I", take(4 * devices))
        history._device_first = _column("I", take(4 * devices))
        history._device_last = _column("I", take(4 * devices))
        merchants = take(1)[0]
        history._merchant_keys = _column("I", take(4 * merchants))
        history._merchant_last = _column("I", take(4 * merchants))
        countries = take(1)[0]
        history._merchant_country_keys = _column("H", take(2 * countries))
        history._merchant_country_last = _column("I", take(4 * countries))
        ips = take(1)[0]
        history._ip_keys = _column("H", take(2 * ips))
        history._ip_last = _column("I", take(4 * ips))
        if offset != len(view):
            raise ValueError(f"{len(view) - offset} bytes after the end")
        for keys, slots in (
            (history._device_keys, DEVICE_SLOTS),
            (history._merchant_keys, MERCHANT_SLOTS),
            (history._merchant_country_keys, COUNTRY_SLOTS),
            (history._ip_keys, COUNTRY_SLOTS),
        ):
            if len(keys) > slots or len(set(keys)) != len(keys):
                raise ValueError("a seen set is too large or repeats a value")
        if first > newest or (observed == 0 and (entries or newest)):
            raise ValueError("inconsistent header")
        return history


def _touch(keys: array[int], lasts: array[int], key: int, relative: int, slots: int) -> None:
    """Mark ``key`` used at ``relative`` (moved to the most recently used end), evicting the least recent."""
    size = len(keys)
    if size and keys[size - 1] == key:
        if lasts[size - 1] < relative:
            lasts[size - 1] = relative
        return
    try:
        index = keys.index(key)
    except ValueError:
        last = relative
    else:
        last = max(lasts[index], relative)
        del keys[index]
        del lasts[index]
    keys.append(key)
    lasts.append(last)
    if len(keys) > slots:
        del keys[0]
        del lasts[0]


def _touch_device(history: AccountHistory, device: int, relative: int) -> None:
    keys, firsts, lasts = history._device_keys, history._device_first, history._device_last
    try:
        index = keys.index(device)
    except ValueError:
        first = last = relative
    else:
        first, last = min(firsts[index], relative), max(lasts[index], relative)
        del keys[index]
        del firsts[index]
        del lasts[index]
    keys.append(device)
    firsts.append(first)
    lasts.append(last)
    if len(keys) > DEVICE_SLOTS:
        del keys[0]
        del firsts[0]
        del lasts[0]


def replay(
    events: Iterable[TransactionEvent],
    featurize: Callable[[TransactionEvent, AccountHistory], T],
    histories: MutableMapping[str, AccountHistory] | None = None,
    *,
    capacity: int = DEFAULT_CAPACITY,
) -> list[T]:
    """Featurize events one at a time, in list order, each against its account's history, then observe it.

    The result for event ``i`` sees every earlier event of its account in the list and nothing
    later: the reference semantics for scoring a stream, whatever the batching. ``histories``
    (account id -> history, updated in place; a new dict when None) carries state across calls.
    """
    states: MutableMapping[str, AccountHistory] = {} if histories is None else histories
    results: list[T] = []
    for event in events:
        history = states.get(event.account_id)
        if history is None:
            history = states[event.account_id] = AccountHistory(capacity)
        results.append(featurize(event, history))
        history.observe(event)
    return results


def newest_time(data: bytes | memoryview) -> int | None:
    """The event time (epoch seconds) of the newest transaction in a serialized history, read from its
    header without decoding the rest (what a store sweeping for expired accounts needs); None when empty.

    :class:`HistoryFormatError` for another format version or bytes too short for the header.
    """
    if not data or data[0] != HISTORY_FORMAT_VERSION or len(data) < _HEADER.size:
        raise HistoryFormatError("not an account history of this format version")
    _, _, base, newest, _, observed, _, _ = _HEADER.unpack_from(data, 0)
    return int(base + newest) if observed else None
