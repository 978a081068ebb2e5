"""Seeded synthetic card transactions with labelled fraud patterns.

The generator simulates a population of accounts (home country, currency, spending level, devices,
card) transacting at merchants across channels, and injects fraud at a configurable rate in six
patterns that fraud teams know well:

``card_testing``
    bursts of tiny card-not-present payments at digital-goods merchants, many failed authorisations.
``account_takeover``
    a new device, an IP in a foreign (often high-risk) country, an unusually high amount.
``high_risk_mcc_night``
    gambling, crypto or money-transfer merchants in the small hours, card not present.
``cross_border_cnp``
    card-not-present payments at a merchant abroad, keyed in manually.
``compromised_merchant``
    skimmed cards used in person: magnetic-stripe fallback at fuel stations and ATMs.
``velocity_burst``
    otherwise ordinary payments with upstream velocity features far above the account's norm.

The task is deliberately not separable: every pattern has noise (a taken-over account sometimes
keeps its device, card testers sometimes use a home IP), about 4% of legitimate events look like a
pattern (travellers, new phones, night-time gamblers, subscription retries, heavy shoppers,
magnetic-stripe fallback at a pump), and about 2.5% of fraud (pattern ``mimic``) is indistinguishable
from the victim's normal behaviour. That caps the achievable AUC at about 0.98.

What callers may rely on:

* The same ``(count, seed, fraud_rate, start, accounts, days)`` yields the same events, byte for byte.
* Every event passes ``schemas.decode(event.model_dump_json().encode())``: ids are letters only
  (never a 12-19 digit number that could look like a PAN), codes come from ``schemas.iso``.
* ``event_time`` falls on one of ``days`` local calendar days from ``start``'s date, in the account's
  UTC offset (so within 14 hours of ``[start, start + days)``), with a realistic hour-of-day
  profile; events are **not** in time order.
* Generation is fast (tens of thousands of events per second), lazy, and needs no network.
"""

from __future__ import annotations

import math
import random
from bisect import bisect
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Final, Generic, TypeVar

from pydantic import BaseModel, ConfigDict

from inference.reference import COUNTRY_CURRENCY, USD_PER_UNIT, ZERO_DECIMAL_CURRENCIES
from schemas import CardRef, Channel, EntryMode, Merchant, TransactionEvent

FRAUD_PATTERNS: Final = (
    "card_testing",
    "account_takeover",
    "high_risk_mcc_night",
    "cross_border_cnp",
    "compromised_merchant",
    "velocity_burst",
    "mimic",
)
#: Names of the upstream behavioural features every generated event carries (a few go missing).
FEATURE_NAMES: Final = (
    "velocity_1h",
    "velocity_24h",
    "amount_zscore",
    "account_age_days",
    "distinct_merchants_24h",
    "failed_auth_24h",
    "device_age_days",
    "cross_border",
)
DEFAULT_START: Final = datetime(2026, 1, 5, tzinfo=UTC)  # a Monday

T = TypeVar("T")


class _Choice(Generic[T]):
    """Weighted choice by one uniform draw and a bisection (``random.choices`` is slower per call)."""

    __slots__ = ("_cumulative", "_total", "_values")

    def __init__(self, weighted: Sequence[tuple[T, float]]) -> None:
        self._values = [value for value, _ in weighted]
        running = 0.0
        self._cumulative: list[float] = []
        for _, weight in weighted:
            running += weight
            self._cumulative.append(running)
        self._total = running

    def pick(self, rng: random.Random) -> T:
        return self._values[min(bisect(self._cumulative, rng.random() * self._total), len(self._values) - 1)]


# Home countries of accounts: (country, weight, UTC offset in minutes).
_HOMES: Final = (
    ("US", 0.34, -300),
    ("GB", 0.10, 0),
    ("DE", 0.09, 60),
    ("FR", 0.07, 60),
    ("ES", 0.05, 60),
    ("IT", 0.05, 60),
    ("NL", 0.04, 60),
    ("CA", 0.06, -300),
    ("AU", 0.04, 600),
    ("JP", 0.04, 540),
    ("BR", 0.03, -180),
    ("MX", 0.03, -360),
    ("IN", 0.03, 330),
    ("SE", 0.02, 60),
    ("CH", 0.01, 60),
)
_HOME_CHOICE: Final = _Choice([((country, offset), weight) for country, weight, offset in _HOMES])
_TRAVEL: Final = _Choice(
    [(c, 1.0) for c in ("US", "GB", "FR", "ES", "IT", "DE", "MX", "JP", "TH", "AE", "PT", "GR", "TR", "CA", "NL")]
)
_RISKY_IP: Final = _Choice([(c, 1.0) for c in ("NG", "RU", "RO", "VN", "ID", "UA", "PK", "BD", "CN", "BR", "PH", "KE")])
_ECOM_ABROAD: Final = _Choice([(c, 1.0) for c in ("US", "GB", "CN", "IE", "NL", "LU", "SG", "HK")])

# Typical amount per MCC in US dollars: (median, log-normal sigma).
_MCC_AMOUNT: Final = {
    "5411": (45.0, 0.7),
    "5812": (35.0, 0.6),
    "5814": (12.0, 0.5),
    "5541": (45.0, 0.5),
    "5542": (40.0, 0.5),
    "5912": (20.0, 0.7),
    "5311": (60.0, 0.8),
    "5651": (70.0, 0.8),
    "5732": (180.0, 1.0),
    "5734": (25.0, 0.8),
    "5815": (10.0, 0.5),
    "5816": (8.0, 0.8),
    "5817": (6.0, 0.7),
    "5818": (30.0, 0.8),
    "4121": (18.0, 0.6),
    "4511": (350.0, 0.7),
    "7011": (220.0, 0.7),
    "4814": (55.0, 0.3),
    "4900": (90.0, 0.4),
    "5944": (400.0, 0.9),
    "5947": (50.0, 0.7),
    "6011": (120.0, 0.6),
    "7995": (60.0, 0.9),
    "6051": (150.0, 1.0),
    "4829": (200.0, 0.9),
    "8398": (25.0, 0.8),
    "5999": (30.0, 0.9),
    "5200": (80.0, 0.8),
    "8011": (120.0, 0.7),
    "5968": (15.0, 0.3),
    "7832": (25.0, 0.4),
}
_MCC_NAME: Final = {
    "5411": "Grocery",
    "5812": "Bistro",
    "5814": "Quick Bites",
    "5541": "Fuel Stop",
    "5542": "Pump Point",
    "5912": "Pharmacy",
    "5311": "Department Store",
    "5651": "Outfitters",
    "5732": "Electronics",
    "5734": "Software Shop",
    "5815": "Streaming",
    "5816": "Game Store",
    "5817": "App Market",
    "5818": "Digital Goods",
    "4121": "Rides",
    "4511": "Airways",
    "7011": "Hotel",
    "4814": "Telecom",
    "4900": "Utilities",
    "5944": "Jewellers",
    "5947": "Gift Shop",
    "6011": "Cash Machine",
    "7995": "Casino",
    "6051": "Crypto Exchange",
    "4829": "Money Transfer",
    "8398": "Foundation",
    "5999": "Variety Store",
    "5200": "Home Supply",
    "8011": "Clinic",
    "5968": "Subscriptions",
    "7832": "Cinema",
}
_NAME_SUFFIX: Final = ("North", "Central", "Harbour", "Express", "Plaza", "Corner", "Park", "Online", "Hub", "Direct")

_LEGIT_CHANNEL: Final = _Choice(
    [
        (Channel.POS, 0.56),
        (Channel.ECOMMERCE, 0.22),
        (Channel.IN_APP, 0.09),
        (Channel.RECURRING, 0.07),
        (Channel.ATM, 0.04),
        (Channel.MOTO, 0.02),
    ]
)
_LEGIT_MCC: Final = {
    Channel.POS: _Choice(
        [
            ("5411", 0.30),
            ("5812", 0.13),
            ("5814", 0.13),
            ("5541", 0.08),
            ("5542", 0.05),
            ("5912", 0.07),
            ("5311", 0.05),
            ("5651", 0.05),
            ("5732", 0.02),
            ("5999", 0.04),
            ("5200", 0.03),
            ("8011", 0.02),
            ("7832", 0.02),
            ("5944", 0.005),
            ("7995", 0.005),
            ("4121", 0.01),
        ]
    ),
    Channel.ECOMMERCE: _Choice(
        [
            ("5815", 0.10),
            ("5816", 0.05),
            ("5817", 0.07),
            ("5818", 0.03),
            ("5734", 0.06),
            ("5732", 0.08),
            ("5651", 0.12),
            ("5311", 0.08),
            ("4511", 0.06),
            ("7011", 0.06),
            ("5999", 0.10),
            ("5947", 0.04),
            ("4829", 0.03),
            ("6051", 0.015),
            ("7995", 0.02),
            ("8398", 0.02),
            ("5968", 0.03),
            ("4814", 0.02),
        ]
    ),
    Channel.IN_APP: _Choice(
        [("4121", 0.35), ("5814", 0.2), ("5817", 0.15), ("5816", 0.1), ("5411", 0.1), ("4829", 0.1)]
    ),
    Channel.RECURRING: _Choice([("5968", 0.3), ("4814", 0.25), ("4900", 0.25), ("5815", 0.2)]),
    Channel.ATM: _Choice([("6011", 1.0)]),
    Channel.MOTO: _Choice([("4511", 0.3), ("7011", 0.3), ("5999", 0.4)]),
}
_LEGIT_ENTRY: Final = {
    Channel.POS: _Choice(
        [
            (EntryMode.CONTACTLESS, 0.45),
            (EntryMode.CHIP, 0.40),
            (EntryMode.WALLET, 0.13),
            (EntryMode.MAGSTRIPE, 0.015),
            (EntryMode.MANUAL, 0.005),
        ]
    ),
    Channel.ECOMMERCE: _Choice(
        [(EntryMode.CREDENTIAL_ON_FILE, 0.55), (EntryMode.MANUAL, 0.30), (EntryMode.WALLET, 0.15)]
    ),
    Channel.IN_APP: _Choice([(EntryMode.WALLET, 0.6), (EntryMode.CREDENTIAL_ON_FILE, 0.4)]),
    Channel.RECURRING: _Choice([(EntryMode.CREDENTIAL_ON_FILE, 1.0)]),
    Channel.ATM: _Choice([(EntryMode.CHIP, 0.95), (EntryMode.MAGSTRIPE, 0.05)]),
    Channel.MOTO: _Choice([(EntryMode.MANUAL, 1.0)]),
}
_CARD_PRESENT: Final = frozenset({Channel.POS, Channel.ATM})

# Hour-of-day profile of legitimate spending (local time).
_LEGIT_HOUR: Final = _Choice(
    list(
        enumerate(
            (
                0.5,
                0.3,
                0.2,
                0.15,
                0.15,
                0.3,
                0.8,
                1.5,
                2.5,
                3.0,
                3.2,
                3.5,
                4.0,
                3.8,
                3.3,
                3.3,
                3.5,
                4.0,
                4.2,
                4.0,
                3.5,
                2.8,
                1.8,
                1.0,
            )
        )
    )
)
_NIGHT_HOUR: Final = _Choice([(h, 1.0) for h in range(6)])

_PATTERN_CHOICE: Final = _Choice(
    [
        ("card_testing", 0.21),
        ("account_takeover", 0.22),
        ("high_risk_mcc_night", 0.155),
        ("cross_border_cnp", 0.155),
        ("compromised_merchant", 0.125),
        ("velocity_burst", 0.11),
        ("mimic", 0.025),
    ]
)
_LOOKALIKE_RATE: Final = 0.04
_MISSING_FEATURE_RATE: Final = 0.01
_ALPHABET: Final = "abcdefghijklmnopqrstuvwxyz"


def _letters(number: int, width: int) -> str:
    """``number`` in base 26 with letters only, left-padded with 'a' to ``width``.

    Letters-only ids can never contain a digit run that a PAN detector would flag.
    """
    chars = []
    while number:
        number, digit = divmod(number, 26)
        chars.append(_ALPHABET[digit])
    return "".join(reversed(chars)).rjust(width, "a")


@dataclass(frozen=True, slots=True)
class LabelledEvent:
    """A generated event, whether it is fraud, and which pattern produced it (None for legitimate)."""

    event: TransactionEvent
    is_fraud: bool
    pattern: str | None = None


@dataclass(frozen=True, slots=True)
class _Account:
    account_id: str
    home: str
    utc_offset: timezone
    spend: float  # multiplies every typical amount
    activity: float  # scales velocity features
    age_days: float
    devices: tuple[tuple[str, float], ...]  # (device id, age in days)
    card: CardRef


@dataclass(slots=True)
class _Draft:
    """The mutable fields of an event while a pattern shapes it."""

    account: _Account
    channel: Channel
    entry_mode: EntryMode
    mcc: str
    merchant_country: str
    amount_usd: float
    hour: int
    device: tuple[str, float] | None
    ip_country: str | None
    velocity_1h: float
    velocity_24h: float
    distinct_merchants_24h: float
    failed_auth_24h: float
    merchant_pool: str = "regular"


class _World:
    """Accounts and merchants of one seed; accounts are built lazily and cached."""

    def __init__(self, seed: int, accounts: int) -> None:
        self.seed = seed
        self.account_count = accounts
        self._accounts: dict[int, _Account] = {}
        self._merchants: dict[tuple[str, str, str, int], Merchant] = {}

    def account(self, index: int) -> _Account:
        account = self._accounts.get(index)
        if account is None:
            account = self._make_account(index)
            self._accounts[index] = account
        return account

    def _make_account(self, index: int) -> _Account:
        rng = random.Random(f"account/{self.seed}/{index}")
        home, offset_minutes = _HOME_CHOICE.pick(rng)
        age = rng.uniform(1.0, 30.0) if rng.random() < 0.03 else max(1.0, rng.lognormvariate(math.log(700.0), 0.8))
        devices = tuple(
            (f"dev-{_letters(rng.getrandbits(40), 9)}", rng.uniform(0.0, age)) for _ in range(rng.randint(1, 3))
        )
        card = CardRef(
            token="tok_" + _letters(rng.getrandbits(80), 17),
            bin=str(rng.choice((4, 5))) + f"{rng.randrange(100000):05d}",
            last4=f"{rng.randrange(10000):04d}",
        )
        return _Account(
            account_id=f"acct-{_letters(index, 6)}",
            home=home,
            utc_offset=timezone(timedelta(minutes=offset_minutes)),
            spend=rng.lognormvariate(0.0, 0.4),
            activity=rng.lognormvariate(0.0, 0.5),
            age_days=age,
            devices=devices,
            card=card,
        )

    def merchant(self, country: str, mcc: str, pool: str, rng: random.Random) -> Merchant:
        # Compromised merchants are a small fixed set per (country, MCC); regular pools are larger.
        slot = int(rng.random() * (3 if pool == "compromised" else 40))
        key = (country, mcc, pool, slot)
        merchant = self._merchants.get(key)
        if merchant is None:
            tag = "x" if pool == "compromised" else "m"
            name_rng = random.Random(f"merchant/{self.seed}/{country}/{mcc}/{pool}/{slot}")
            name = f"{_MCC_NAME[mcc]} {name_rng.choice(_NAME_SUFFIX)}" if name_rng.random() < 0.9 else None
            merchant = Merchant(
                merchant_id=f"mer-{country.lower()}{mcc}-{tag}{_letters(slot, 3)}",
                mcc=mcc,
                country=country,
                name=name,
            )
            self._merchants[key] = merchant
        return merchant


def _typical_amount(rng: random.Random, mcc: str, spend: float) -> float:
    median, sigma = _MCC_AMOUNT[mcc]
    return rng.lognormvariate(math.log(median * spend), sigma)


def _legit_draft(rng: random.Random, account: _Account) -> _Draft:
    channel = _LEGIT_CHANNEL.pick(rng)
    mcc = _LEGIT_MCC[channel].pick(rng)
    entry = _LEGIT_ENTRY[channel].pick(rng)
    merchant_country = account.home
    ip_country: str | None = None
    device: tuple[str, float] | None = None
    if channel in (Channel.ECOMMERCE, Channel.IN_APP):
        device = rng.choice(account.devices)
        ip_country = account.home if rng.random() < 0.97 else _TRAVEL.pick(rng)
        if channel is Channel.ECOMMERCE and rng.random() < 0.06:
            merchant_country = _ECOM_ABROAD.pick(rng)
    elif entry is EntryMode.WALLET:
        device = account.devices[0]
    if rng.random() < 0.02:  # legitimate new device
        device = (f"dev-{_letters(rng.getrandbits(40), 9)}", rng.uniform(0.0, 1.0))
    amount = _typical_amount(rng, mcc, account.spend)
    if channel is Channel.ATM:
        amount = max(20.0, round(amount / 20.0) * 20.0)
    velocity_1h = 1.0 + _poisson(rng, 0.25 * account.activity)
    velocity_24h = velocity_1h + _poisson(rng, 2.5 * account.activity)
    return _Draft(
        account=account,
        channel=channel,
        entry_mode=entry,
        mcc=mcc,
        merchant_country=merchant_country,
        amount_usd=amount,
        hour=_LEGIT_HOUR.pick(rng),
        device=device,
        ip_country=ip_country,
        velocity_1h=velocity_1h,
        velocity_24h=velocity_24h,
        distinct_merchants_24h=min(velocity_24h, 1.0 + _poisson(rng, 1.2 * account.activity)),
        failed_auth_24h=float(_poisson(rng, 0.05)),
    )


def _poisson(rng: random.Random, lam: float) -> float:
    """Knuth's method: fine for the small rates used here."""
    limit = math.exp(-lam)
    count = 0
    product = rng.random()
    while product > limit:
        count += 1
        product *= rng.random()
    return float(count)


def _new_device(rng: random.Random) -> tuple[str, float]:
    return (f"dev-{_letters(rng.getrandbits(40), 9)}", rng.uniform(0.0, 1.0))


def _cnp(draft: _Draft, rng: random.Random, channel: Channel, manual_share: float) -> None:
    draft.channel = channel
    if channel is Channel.MOTO:
        draft.entry_mode = EntryMode.MANUAL
    elif channel is Channel.IN_APP:
        draft.entry_mode = EntryMode.WALLET if rng.random() < 0.5 else EntryMode.CREDENTIAL_ON_FILE
    else:
        draft.entry_mode = EntryMode.MANUAL if rng.random() < manual_share else EntryMode.CREDENTIAL_ON_FILE


def _apply_pattern(draft: _Draft, pattern: str, rng: random.Random) -> None:
    """Reshape a legitimate draft into one fraud pattern, with per-attribute noise."""
    account = draft.account
    if pattern == "card_testing":
        _cnp(draft, rng, Channel.ECOMMERCE if rng.random() < 0.8 else Channel.MOTO, 0.7)
        draft.mcc = rng.choice(("5815", "5816", "5817", "5818", "5734", "8398", "4814", "5999"))
        draft.amount_usd = rng.uniform(0.5, 5.0) if rng.random() < 0.8 else rng.uniform(5.0, 15.0)
        draft.merchant_country = account.home if rng.random() < 0.5 else _ECOM_ABROAD.pick(rng)
        roll = rng.random()
        draft.ip_country = _RISKY_IP.pick(rng) if roll < 0.5 else _TRAVEL.pick(rng) if roll < 0.7 else account.home
        roll = rng.random()
        draft.device = _new_device(rng) if roll < 0.6 else None if roll < 0.8 else rng.choice(account.devices)
        if draft.channel is Channel.MOTO:
            draft.device, draft.ip_country = None, None
        draft.velocity_1h = max(draft.velocity_1h, round(rng.lognormvariate(math.log(10.0), 0.6)))
        draft.velocity_24h = draft.velocity_1h + round(rng.lognormvariate(math.log(8.0), 0.7))
        draft.distinct_merchants_24h = max(1.0, round(draft.velocity_24h * rng.uniform(0.4, 0.95)))
        draft.failed_auth_24h = float(rng.randint(2, 15)) if rng.random() < 0.7 else float(rng.randint(0, 1))
        draft.hour = rng.randrange(24)
    elif pattern == "account_takeover":
        _cnp(draft, rng, Channel.ECOMMERCE if rng.random() < 0.7 else Channel.IN_APP, 0.2)
        if draft.channel is Channel.ECOMMERCE and rng.random() < 0.2:
            draft.entry_mode = EntryMode.WALLET
        draft.mcc = rng.choice(("5732", "5732", "5944", "5947", "4829", "4829", "6051", "5311"))
        draft.amount_usd = rng.lognormvariate(math.log(600.0 * account.spend), 0.6)
        draft.device = _new_device(rng) if rng.random() < 0.85 else rng.choice(account.devices)
        roll = rng.random()
        draft.ip_country = _RISKY_IP.pick(rng) if roll < 0.55 else _TRAVEL.pick(rng) if roll < 0.8 else account.home
        draft.merchant_country = account.home if rng.random() < 0.6 else _ECOM_ABROAD.pick(rng)
        draft.velocity_1h += rng.randint(0, 3)
        draft.velocity_24h += draft.velocity_1h
        draft.failed_auth_24h = float(rng.randint(0, 3))
        draft.hour = _NIGHT_HOUR.pick(rng) if rng.random() < 0.3 else _LEGIT_HOUR.pick(rng)
    elif pattern == "high_risk_mcc_night":
        _cnp(draft, rng, Channel.ECOMMERCE if rng.random() < 0.8 else Channel.IN_APP, 0.5)
        draft.mcc = rng.choice(("7995", "7995", "6051", "6051", "4829"))
        draft.amount_usd = rng.lognormvariate(math.log(250.0), 0.7)
        draft.hour = _NIGHT_HOUR.pick(rng) if rng.random() < 0.9 else rng.randrange(24)
        draft.device = _new_device(rng) if rng.random() < 0.5 else rng.choice(account.devices)
        draft.ip_country = _RISKY_IP.pick(rng) if rng.random() < 0.4 else account.home
    elif pattern == "cross_border_cnp":
        _cnp(draft, rng, Channel.ECOMMERCE if rng.random() < 0.85 else Channel.MOTO, 0.75)
        draft.mcc = rng.choice(("5732", "5651", "5311", "5999", "4511", "7011", "5947"))
        draft.amount_usd = rng.lognormvariate(math.log(300.0), 0.8)
        abroad = _TRAVEL.pick(rng) if rng.random() < 0.5 else _ECOM_ABROAD.pick(rng)
        draft.merchant_country = abroad if abroad != account.home else "SG"
        roll = rng.random()
        draft.ip_country = draft.merchant_country if roll < 0.4 else _RISKY_IP.pick(rng) if roll < 0.8 else account.home
        roll = rng.random()
        draft.device = None if roll < 0.3 else _new_device(rng) if roll < 0.8 else rng.choice(account.devices)
        if draft.channel is Channel.MOTO:
            draft.device, draft.ip_country = None, None
        draft.hour = _LEGIT_HOUR.pick(rng) if rng.random() < 0.6 else rng.randrange(24)
    elif pattern == "compromised_merchant":
        atm = rng.random() < 0.4
        draft.channel = Channel.ATM if atm else Channel.POS
        roll = rng.random()
        draft.entry_mode = EntryMode.MAGSTRIPE if roll < 0.65 else EntryMode.CHIP if roll < 0.9 else EntryMode.MANUAL
        draft.mcc = "6011" if atm else rng.choice(("5541", "5542", "5999", "5411", "5311"))
        draft.merchant_country = account.home if rng.random() < 0.5 else _TRAVEL.pick(rng)
        draft.merchant_pool = "compromised"
        draft.amount_usd = float(rng.randrange(10, 41) * 20) if atm else rng.lognormvariate(math.log(150.0), 0.7)
        draft.device, draft.ip_country = None, None
        draft.hour = _NIGHT_HOUR.pick(rng) if rng.random() < 0.5 else _LEGIT_HOUR.pick(rng)
        draft.velocity_24h += rng.randint(2, 8)
    elif pattern == "velocity_burst":
        draft.velocity_1h = float(rng.randint(6, 25))
        draft.velocity_24h = draft.velocity_1h + rng.randint(8, 40)
        draft.distinct_merchants_24h = float(rng.randint(8, 30))
        draft.failed_auth_24h = float(rng.randint(0, 4))
        draft.amount_usd *= rng.uniform(1.0, 3.0)
        if rng.random() < 0.5:
            draft.device = _new_device(rng) if draft.device is not None else None
    # "mimic": fraud that looks exactly like the victim's normal behaviour (irreducible error).


def _apply_lookalike(draft: _Draft, rng: random.Random) -> None:
    """Make a legitimate draft resemble a fraud pattern: the overlap that keeps the task honest."""
    account = draft.account
    kind = rng.randrange(6)
    if kind == 0:  # traveller paying in person abroad, phone on a foreign network
        draft.channel, draft.entry_mode = Channel.POS, rng.choice((EntryMode.CHIP, EntryMode.CONTACTLESS))
        draft.mcc = rng.choice(("5812", "5411", "7011", "5999", "5541"))
        draft.merchant_country = _TRAVEL.pick(rng)
        draft.ip_country = None
        draft.amount_usd = _typical_amount(rng, draft.mcc, account.spend) * 1.5
    elif kind == 1:  # new phone, big purchase at home
        _cnp(draft, rng, Channel.ECOMMERCE, 0.3)
        draft.mcc = rng.choice(("5732", "5944", "5311"))
        draft.device = _new_device(rng)
        draft.ip_country = account.home if rng.random() < 0.8 else _TRAVEL.pick(rng)
        draft.amount_usd = rng.lognormvariate(math.log(450.0 * account.spend), 0.6)
    elif kind == 2:  # night-time gambler or crypto buyer on a known device
        _cnp(draft, rng, Channel.ECOMMERCE, 0.3)
        draft.mcc = rng.choice(("7995", "6051", "4829"))
        draft.hour = _NIGHT_HOUR.pick(rng)
        draft.device = rng.choice(account.devices)
        draft.ip_country = account.home
        draft.amount_usd = rng.lognormvariate(math.log(120.0), 0.8)
    elif kind == 3:  # subscription retries: small amounts, a few failed authorisations
        _cnp(draft, rng, Channel.ECOMMERCE, 0.2)
        draft.mcc = rng.choice(("5815", "5817", "5968", "4814"))
        draft.amount_usd = rng.uniform(1.0, 9.0)
        draft.failed_auth_24h = float(rng.randint(1, 4))
        draft.velocity_1h = float(rng.randint(2, 5))
        draft.velocity_24h = draft.velocity_1h + rng.randint(1, 6)
    elif kind == 4:  # heavy shopping day
        draft.velocity_1h = float(rng.randint(3, 9))
        draft.velocity_24h = draft.velocity_1h + rng.randint(5, 20)
        draft.distinct_merchants_24h = float(rng.randint(5, 15))
    else:  # worn chip: magnetic-stripe fallback at a pump or ATM
        draft.channel, draft.entry_mode = rng.choice((Channel.POS, Channel.ATM)), EntryMode.MAGSTRIPE
        draft.mcc = "6011" if draft.channel is Channel.ATM else rng.choice(("5541", "5542"))
        draft.merchant_country = account.home
        draft.device, draft.ip_country = None, None
        draft.amount_usd = _typical_amount(rng, draft.mcc, account.spend)


def _amount(amount_usd: float, currency: str) -> Decimal:
    local = amount_usd / USD_PER_UNIT.get(currency, 1.0)
    if currency in ZERO_DECIMAL_CURRENCIES:
        return Decimal(max(1, round(local)))
    return Decimal(f"{max(0.01, local):.2f}")


def _features(draft: _Draft, amount_usd: float, rng: random.Random) -> dict[str, float]:
    account = draft.account
    median, sigma = _MCC_AMOUNT[draft.mcc]
    zscore = math.log(amount_usd / (median * account.spend)) / sigma + rng.gauss(0.0, 0.25)
    values = {
        "velocity_1h": draft.velocity_1h,
        "velocity_24h": draft.velocity_24h,
        "amount_zscore": round(zscore, 3),
        "account_age_days": round(account.age_days, 1),
        "distinct_merchants_24h": draft.distinct_merchants_24h,
        "failed_auth_24h": draft.failed_auth_24h,
        "cross_border": 1.0 if draft.merchant_country != account.home else 0.0,
    }
    if draft.device is not None:
        values["device_age_days"] = round(draft.device[1], 2)
    # Upstream systems occasionally fail to deliver a signal; the featurizer has a token for that.
    for name in ("velocity_1h", "velocity_24h", "amount_zscore", "account_age_days", "distinct_merchants_24h"):
        if rng.random() < _MISSING_FEATURE_RATE:
            del values[name]
    return values


def generate(
    count: int,
    *,
    seed: int = 0,
    fraud_rate: float = 0.01,
    start: datetime | None = None,
    accounts: int | None = None,
    days: int = 7,
) -> Iterator[LabelledEvent]:
    """Yield ``count`` labelled events, deterministically for the arguments.

    ``fraud_rate`` is the probability that an event is fraud (0..1). ``start`` (timezone-aware,
    default 2026-01-05T00:00Z) and ``days`` bound the event times. ``accounts`` is the number of
    distinct accounts (default: about one per eight events, between 100 and 100,000).
    """
    if count < 0:
        raise ValueError("count must be >= 0")
    if not 0.0 <= fraud_rate <= 1.0:
        raise ValueError("fraud_rate must be within [0, 1]")
    if days < 1:
        raise ValueError("days must be >= 1")
    if start is None:
        start = DEFAULT_START
    elif start.tzinfo is None:
        raise ValueError("start must be timezone-aware")
    if accounts is None:
        accounts = max(100, min(100_000, count // 8))
    if accounts < 1:
        raise ValueError("accounts must be >= 1")
    world = _World(seed, accounts)
    rng = random.Random(f"events/{seed}")
    run_tag = _letters(seed & 0xFFFFFFFF, 7)
    local_midnights: dict[timezone, datetime] = {}
    for index in range(count):
        account = world.account(int(rng.random() * accounts))
        draft = _legit_draft(rng, account)
        pattern: str | None = None
        is_fraud = rng.random() < fraud_rate
        if is_fraud:
            pattern = _PATTERN_CHOICE.pick(rng)
            _apply_pattern(draft, pattern, rng)
        elif rng.random() < _LOOKALIKE_RATE:
            _apply_lookalike(draft, rng)
        local_day = local_midnights.get(account.utc_offset)
        if local_day is None:
            local_day = datetime.combine(start.date(), time(), tzinfo=account.utc_offset)
            local_midnights[account.utc_offset] = local_day
        event_time = local_day + timedelta(
            days=int(rng.random() * days), hours=draft.hour, microseconds=int(rng.random() * 3_600_000_000)
        )
        currency = COUNTRY_CURRENCY.get(draft.merchant_country, "USD")
        amount = _amount(draft.amount_usd, currency)
        event = TransactionEvent(
            # Hex digit runs stay far below the 13 digits a PAN detector looks at.
            transaction_id=f"txn-{run_tag}-{index:010x}",
            event_time=event_time,
            account_id=account.account_id,
            amount=amount,
            currency=currency,
            merchant=world.merchant(draft.merchant_country, draft.mcc, draft.merchant_pool, rng),
            channel=draft.channel,
            entry_mode=draft.entry_mode,
            card_present=draft.channel in _CARD_PRESENT,
            card=account.card,
            device_id=draft.device[0] if draft.device is not None else None,
            ip_country=draft.ip_country,
            features=_features(draft, float(amount) * USD_PER_UNIT.get(currency, 1.0), rng),
        )
        yield LabelledEvent(event=event, is_fraud=is_fraud, pattern=pattern)


class _LabelledRecord(BaseModel):
    """One JSONL line: the event as on the wire plus its label."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    event: TransactionEvent
    is_fraud: bool
    pattern: str | None = None


def write_jsonl(path: Path, items: Iterable[LabelledEvent]) -> int:
    """Write labelled events as JSON lines (``{"event": ..., "is_fraud": ..., "pattern": ...}``).

    Returns the number of lines written. The file is replaced, not appended to.
    """
    written = 0
    with Path(path).open("w", encoding="utf-8") as out:
        for item in items:
            record = _LabelledRecord(event=item.event, is_fraud=item.is_fraud, pattern=item.pattern)
            out.write(record.model_dump_json())
            out.write("\n")
            written += 1
    return written


def read_jsonl(path: Path) -> Iterator[LabelledEvent]:
    """Read labelled events written by :func:`write_jsonl`; blank lines are skipped.

    Raises ``ValueError`` naming the line number for a line that is not a valid labelled event.
    """
    with Path(path).open(encoding="utf-8") as source:
        for number, line in enumerate(source, start=1):
            if not line.strip():
                continue
            try:
                record = _LabelledRecord.model_validate_json(line)
            except ValueError as exc:
                problem = exc.__class__.__name__
                raise ValueError(f"{path}:{number}: not a labelled transaction event ({problem})") from exc
            yield LabelledEvent(event=record.event, is_fraud=record.is_fraud, pattern=record.pattern)


def labels(items: Iterable[LabelledEvent]) -> list[int]:
    """1 for fraud, 0 for legitimate, in order: a convenience for metrics."""
    return [1 if item.is_fraud else 0 for item in items]
