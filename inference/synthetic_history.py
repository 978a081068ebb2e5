"""A synthetic world where fraud is behaviour: time-ordered per-account histories.

:func:`generate_histories` simulates accounts with habits — a home country, a spending level, a
transaction rate, one or two devices, a set of regular merchants and subscriptions — over ``days``
days, and injects fraud as *episodes* in an account's timeline, most of which look ordinary one
event at a time:

``card_testing``
    a burst of 3-15 tiny card-not-present payments at digital-goods merchants within minutes, from
    a device the account never used (or none); sometimes a larger cash-out within hours.
``account_takeover``
    a fraudster with the credentials: 2-6 online purchases within hours from a new device, often a
    foreign IP, at merchants the account never used, several times the account's usual amounts,
    while the real customer keeps paying as usual.
``velocity_burst``
    a stolen or counterfeit card used rapidly: 4-12 ordinary-looking purchases within an hour or so,
    at merchants new to the account.
``slow_burn``
    compromised credentials used quietly over 3-9 days: one or two online purchases a day at new
    merchants, from one new device, at about twice the usual amounts.
``skimmed_clone``
    a cloned card used in person abroad (ATMs, shops) while the genuine card is still being used at
    home: impossible travel, visible only next to the account's other card-present payments.
``single_cnp``
    one-off fraud a single event shows: gambling, crypto or money transfer from a risky IP at night,
    or a keyed-in purchase abroad.
``mimic``
    fraud at one of the account's regular merchants, at a usual amount, from its own device:
    indistinguishable from the customer (the irreducible error).

Legitimate look-alikes keep history necessary rather than any one field sufficient: travellers (a
trip abroad: card-present payments in another country, online from a foreign IP, after a flight
purchase), a new phone (a new device from then on, often with a big first purchase), payday sprees
(several purchases within a few hours, half at new merchants), subscription sign-ups (two to four
small digital payments within half an hour), big-ticket purchases, night-time gamblers.

Upstream ``features`` (velocity counts, amount z-score, account age, distinct merchants, failed
authorisations, device age, cross-border) are computed from the true history only when
``upstream_features=True``; by default events carry none, and behaviour is visible only to a model
that keeps the account's history (:mod:`inference.history`).

What callers may rely on:

* The same arguments yield the same events, byte for byte; events come in event-time order (ties
  by account, then by each account's own order), exactly ``count`` of them (the latest are cut).
* Every event passes ``schemas.decode``; ids are letters and hex only (never a PAN-like digit run).
* The event-level fraud share is about ``fraud_rate`` (episodes are drawn per account to match it).
* Generation is fast (tens of thousands of events per second) and needs no network.
"""

from __future__ import annotations

import heapq
import math
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta, timezone
from typing import Final

from inference.reference import COUNTRY_CURRENCY
from inference.synthetic import (
    _CARD_PRESENT,
    _ECOM_ABROAD,
    _HOME_CHOICE,
    _LEGIT_CHANNEL,
    _LEGIT_ENTRY,
    _LEGIT_HOUR,
    _LEGIT_MCC,
    _MCC_AMOUNT,
    _NIGHT_HOUR,
    _RISKY_IP,
    _TRAVEL,
    DEFAULT_START,
    LabelledEvent,
    _amount,
    _Choice,
    _letters,
    _poisson,
    _World,
)
from schemas import CardRef, Channel, EntryMode, Merchant, TransactionEvent

HISTORY_FRAUD_PATTERNS: Final = (
    "card_testing",
    "account_takeover",
    "velocity_burst",
    "slow_burn",
    "skimmed_clone",
    "single_cnp",
    "mimic",
)
#: Legitimate behaviours that resemble a fraud pattern (counted in :class:`WorldSummary`).
LOOKALIKES: Final = ("traveller", "new_phone", "payday_spree", "subscriptions", "big_ticket", "night_gambler")
DEFAULT_DAYS: Final = 28
#: Average events per account when ``accounts`` is not given.
EVENTS_PER_ACCOUNT: Final = 40

# (pattern, weight, expected fraud events per episode: used to draw episodes at the asked rate).
_EPISODES: Final = (
    ("card_testing", 0.20, 9.6),
    ("account_takeover", 0.20, 4.0),
    ("velocity_burst", 0.15, 8.0),
    ("slow_burn", 0.15, 9.0),
    ("skimmed_clone", 0.12, 3.5),
    ("single_cnp", 0.12, 1.0),
    ("mimic", 0.06, 1.0),
)
_EPISODE_CHOICE: Final = _Choice([(name, weight) for name, weight, _ in _EPISODES])
_EVENTS_PER_EPISODE: Final = sum(weight * events for _, weight, events in _EPISODES) / sum(w for _, w, _ in _EPISODES)
_LOOKALIKE_RATES: Final = {
    "traveller": 0.10,
    "new_phone": 0.08,
    "payday_spree": 0.12,
    "subscriptions": 0.10,
    "big_ticket": 0.08,
    "night_gambler": 0.03,
}
_DIGITAL_MCCS: Final = ("5815", "5816", "5817", "5818", "5734", "8398", "4814", "5999")
_TAKEOVER_MCCS: Final = ("5732", "5732", "5944", "5947", "4829", "6051", "5311", "5999")
_RETAIL_MCCS: Final = ("5411", "5311", "5651", "5732", "5999", "5912", "5541", "5200")
_ONLINE_MCCS: Final = ("5651", "5311", "5999", "5732", "5947", "4829", "5734", "7011")
_TRIP_MCCS: Final = _Choice(
    [("5812", 0.3), ("5411", 0.15), ("7011", 0.15), ("5999", 0.1), ("4121", 0.1), ("5814", 0.1), ("6011", 0.1)]
)
_SUBSCRIPTION_MCCS: Final = ("5815", "5968", "4814", "5817")
_HOUR_S: Final = 3_600.0
#: The device an account's customer uses at a moment (epoch seconds).
DeviceAt = Callable[[float], str]
_DAY_S: Final = 86_400.0


@dataclass(frozen=True)
class _Regular:
    """A merchant the account uses habitually, with how it pays there."""

    merchant: Merchant
    channel: Channel
    weight: float


@dataclass
class _Profile:
    index: int
    account_id: str
    home: str
    utc_offset: timezone
    spend: float
    rate: float  # legitimate transactions per day
    age_days: float
    devices: list[tuple[str, float]]  # (device id, age in days at the start)
    card: CardRef
    regulars: list[_Regular]
    regular_choice: _Choice[_Regular]


@dataclass(slots=True)
class _Txn:
    """One transaction of an account's timeline while it is being shaped."""

    time: float  # epoch seconds
    merchant: Merchant
    channel: Channel
    entry_mode: EntryMode
    amount_usd: float
    device: str | None
    ip_country: str | None
    pattern: str | None = None
    failed_auth: int = 0


@dataclass
class WorldSummary:
    """What a :func:`generate_histories` run produced (filled in as the events are yielded)."""

    events: int = 0
    fraud_events: int = 0
    accounts: int = 0
    by_pattern: dict[str, int] = field(default_factory=dict)
    lookalike_accounts: dict[str, int] = field(default_factory=dict)


def _device_id(rng: random.Random) -> str:
    return f"dev-{_letters(rng.getrandbits(40), 9)}"


class _HistoryWorld:
    """Accounts, merchants and timelines of one seed."""

    def __init__(self, seed: int, start: datetime, days: int, fraud_rate: float) -> None:
        self.seed = seed
        self.start = start
        self.days = days
        self.fraud_rate = fraud_rate
        self.rate_scale = 1.0  # set by generate_histories once every profile's rate is known
        self.merchants = _World(seed, 1)

    def merchant(self, country: str, mcc: str, rng: random.Random, pool: str = "regular") -> Merchant:
        return self.merchants.merchant(country, mcc, pool, rng)

    def profile(self, index: int) -> _Profile:
        rng = random.Random(f"history-account/{self.seed}/{index}")
        home, offset_minutes = _HOME_CHOICE.pick(rng)
        spend = rng.lognormvariate(0.0, 0.7)
        rate = min(12.0, max(0.15, rng.lognormvariate(math.log(1.2), 0.6)))
        age = rng.uniform(5.0, 60.0) if rng.random() < 0.05 else max(30.0, rng.lognormvariate(math.log(900.0), 0.8))
        devices = [(_device_id(rng), rng.uniform(1.0, min(age, 900.0))) for _ in range(1 if rng.random() < 0.6 else 2)]
        card = CardRef(
            token="tok_" + _letters(rng.getrandbits(80), 17),
            bin=str(rng.choice((4, 5))) + f"{rng.randrange(100000):05d}",
            last4=f"{rng.randrange(10000):04d}",
        )
        regulars: list[_Regular] = []
        for rank in range(rng.randint(5, 14)):
            channel = _LEGIT_CHANNEL.pick(rng)
            mcc = _LEGIT_MCC[channel].pick(rng)
            country = home
            if channel is Channel.ECOMMERCE and rng.random() < 0.1:
                country = _ECOM_ABROAD.pick(rng)
            regulars.append(_Regular(self.merchant(country, mcc, rng), channel, 1.0 / (rank + 1)))
        return _Profile(
            index=index,
            account_id=f"acct-{_letters(index, 6)}",
            home=home,
            utc_offset=timezone(timedelta(minutes=offset_minutes)),
            spend=spend,
            rate=rate,
            age_days=age,
            devices=devices,
            card=card,
            regulars=regulars,
            regular_choice=_Choice([(regular, regular.weight) for regular in regulars]),
        )

    # -- legitimate behaviour ----------------------------------------------------------------------

    def _local_time(self, profile: _Profile, rng: random.Random, day: int, hour: int | None = None) -> float:
        midnight = datetime.combine(self.start.date(), time(), tzinfo=profile.utc_offset)
        hour = _LEGIT_HOUR.pick(rng) if hour is None else hour
        return midnight.timestamp() + day * _DAY_S + hour * _HOUR_S + rng.random() * _HOUR_S

    def _pays(
        self, profile: _Profile, rng: random.Random, channel: Channel, device: str | None
    ) -> tuple[EntryMode, str | None, str | None]:
        """Entry mode, device and IP country of a legitimate payment on ``channel``."""
        entry = _LEGIT_ENTRY[channel].pick(rng)
        ip: str | None = None
        used: str | None = None
        if channel in (Channel.ECOMMERCE, Channel.IN_APP):
            used = device
            ip = profile.home if rng.random() < 0.97 else _TRAVEL.pick(rng)
        elif entry is EntryMode.WALLET:
            used = device
        return entry, used, ip

    def _legit(self, profile: _Profile, rng: random.Random, when: float, device: str | None) -> _Txn:
        if rng.random() < 0.72:
            regular = profile.regular_choice.pick(rng)
            merchant, channel = regular.merchant, regular.channel
        else:
            channel = _LEGIT_CHANNEL.pick(rng)
            mcc = _LEGIT_MCC[channel].pick(rng)
            country = profile.home
            if channel is Channel.ECOMMERCE and rng.random() < 0.06:
                country = _ECOM_ABROAD.pick(rng)
            merchant = self.merchant(country, mcc, rng)
        entry, used, ip = self._pays(profile, rng, channel, device)
        amount = _typical(rng, merchant.mcc, profile.spend)
        if channel is Channel.ATM:
            amount = max(20.0, round(amount / 20.0) * 20.0)
        return _Txn(when, merchant, channel, entry, amount, used, ip)

    def timeline(self, profile: _Profile, summary: WorldSummary) -> list[_Txn]:
        """The account's transactions over the period, legitimate and fraud, in time order."""
        rng = random.Random(f"history-timeline/{self.seed}/{profile.index}")
        days = self.days
        device_switch: tuple[float, str] | None = None
        kinds = [kind for kind in LOOKALIKES if rng.random() < _LOOKALIKE_RATES[kind]]
        if "new_phone" in kinds:
            device_switch = (self._local_time(profile, rng, rng.randrange(days)), _device_id(rng))
        primary = profile.devices[0][0]

        def device_at(moment: float) -> str:
            if device_switch is not None and moment >= device_switch[0]:
                return device_switch[1]
            if len(profile.devices) > 1 and rng.random() < 0.3:
                return profile.devices[1][0]
            return primary

        txns: list[_Txn] = []
        for day in range(days):
            weekend = (self.start.date() + timedelta(days=day)).weekday() >= 5
            for _ in range(int(_poisson(rng, profile.rate * self.rate_scale * (1.15 if weekend else 0.95)))):
                moment = self._local_time(profile, rng, day)
                txns.append(self._legit(profile, rng, moment, device_at(moment)))
        if device_switch is not None and rng.random() < 0.6:
            moment, device = device_switch
            merchant = self.merchant(profile.home, rng.choice(("5732", "5944", "5311")), rng)
            amount = rng.lognormvariate(math.log(450.0 * profile.spend), 0.5)
            txns.append(
                _Txn(
                    moment + 60.0,
                    merchant,
                    Channel.ECOMMERCE,
                    EntryMode.CREDENTIAL_ON_FILE,
                    amount,
                    device,
                    profile.home,
                )
            )
        for kind in kinds:
            summary.lookalike_accounts[kind] = summary.lookalike_accounts.get(kind, 0) + 1
            if kind != "new_phone":
                txns = self._lookalike(kind, profile, rng, txns, device_at)
        episodes = (
            _poisson(rng, self.fraud_rate / max(1e-9, 1.0 - self.fraud_rate) * len(txns) / _EVENTS_PER_EPISODE)
            if self.fraud_rate > 0
            else 0.0
        )
        for _ in range(int(episodes)):
            txns.extend(self._episode(_EPISODE_CHOICE.pick(rng), profile, rng, device_at))
        period_start = datetime.combine(self.start.date(), time(), tzinfo=profile.utc_offset).timestamp()
        period_end = period_start + days * _DAY_S
        txns = [txn for txn in txns if period_start <= txn.time < period_end]
        txns.sort(key=lambda txn: txn.time)
        return txns

    def _lookalike(
        self, kind: str, profile: _Profile, rng: random.Random, txns: list[_Txn], device_at: DeviceAt
    ) -> list[_Txn]:
        days = self.days
        if kind == "traveller":
            length = rng.randint(2, 8)
            first_day = rng.randrange(1, max(2, days - length))
            leave = self._local_time(profile, rng, first_day, hour=rng.choice((7, 9, 12, 16)))
            back = leave + length * _DAY_S
            destination = _TRAVEL.pick(rng)
            if destination == profile.home:
                destination = "PT" if profile.home != "PT" else "GR"
            flight = self.merchant(profile.home, "4511", rng)
            booked = leave - rng.uniform(2.0, 20.0) * _DAY_S
            trip: list[_Txn] = [
                _Txn(
                    booked,
                    flight,
                    Channel.ECOMMERCE,
                    EntryMode.CREDENTIAL_ON_FILE,
                    rng.lognormvariate(math.log(350.0 * profile.spend), 0.5),
                    device_at(booked),
                    profile.home,
                )
            ]
            for txn in txns:
                if leave - 6 * _HOUR_S <= txn.time <= back + 3 * _HOUR_S and txn.channel in _CARD_PRESENT:
                    continue  # away from home: no in-person payments there
                if leave <= txn.time <= back and txn.ip_country is not None:
                    txn.ip_country = destination
                trip.append(txn)
            moment = leave + rng.uniform(3.0, 8.0) * _HOUR_S
            while moment < back:
                mcc = _TRIP_MCCS.pick(rng)
                channel = Channel.ATM if mcc == "6011" else Channel.POS
                entry = (
                    EntryMode.CHIP if channel is Channel.ATM else rng.choice((EntryMode.CHIP, EntryMode.CONTACTLESS))
                )
                amount = _typical(rng, mcc, profile.spend) * 1.3
                if channel is Channel.ATM:
                    amount = max(20.0, round(amount / 20.0) * 20.0)
                trip.append(_Txn(moment, self.merchant(destination, mcc, rng), channel, entry, amount, None, None))
                moment += rng.expovariate(max(1.0, profile.rate * 1.5) / _DAY_S) + 0.5 * _HOUR_S
            return trip
        day = rng.randrange(days)
        if kind == "payday_spree":
            moment = self._local_time(profile, rng, day, hour=rng.choice((10, 11, 13, 15, 17)))
            for _ in range(rng.randint(4, 10)):
                txn = self._legit(profile, rng, moment, device_at(moment))
                txn.amount_usd *= 1.5
                txns.append(txn)
                moment += rng.uniform(5.0, 40.0) * 60.0
        elif kind == "subscriptions":
            moment = self._local_time(profile, rng, day)
            for _ in range(rng.randint(2, 4)):
                mcc = rng.choice(_SUBSCRIPTION_MCCS)
                entry = EntryMode.CREDENTIAL_ON_FILE if rng.random() < 0.7 else EntryMode.MANUAL
                txns.append(
                    _Txn(
                        moment,
                        self.merchant(profile.home, mcc, rng),
                        Channel.ECOMMERCE,
                        entry,
                        rng.uniform(1.0, 12.0),
                        device_at(moment),
                        profile.home,
                    )
                )
                moment += rng.uniform(1.0, 10.0) * 60.0
        elif kind == "big_ticket":
            moment = self._local_time(profile, rng, day)
            mcc = rng.choice(("5200", "5944", "5732"))
            channel = Channel.POS if rng.random() < 0.6 else Channel.ECOMMERCE
            entry, used, ip = self._pays(profile, rng, channel, device_at(moment))
            amount = _typical(rng, mcc, profile.spend) * rng.uniform(4.0, 10.0)
            txns.append(_Txn(moment, self.merchant(profile.home, mcc, rng), channel, entry, amount, used, ip))
        elif kind == "night_gambler":
            for night in sorted(rng.sample(range(days), k=min(days, rng.randint(3, 8)))):
                moment = self._local_time(profile, rng, night, hour=_NIGHT_HOUR.pick(rng))
                mcc = rng.choice(("7995", "7995", "6051", "4829"))
                txns.append(
                    _Txn(
                        moment,
                        self.merchant(profile.home, mcc, rng),
                        Channel.ECOMMERCE,
                        EntryMode.CREDENTIAL_ON_FILE,
                        rng.lognormvariate(math.log(100.0), 0.7),
                        device_at(moment),
                        profile.home,
                    )
                )
        return txns

    # -- fraud -------------------------------------------------------------------------------------

    def _episode(self, pattern: str, profile: _Profile, rng: random.Random, device_at: DeviceAt) -> list[_Txn]:
        """The fraud transactions of one episode (labelled with ``pattern``)."""
        start = self._local_time(profile, rng, rng.randrange(self.days), hour=rng.randrange(24))
        home = profile.home
        fraud_device = _device_id(rng)
        out: list[_Txn] = []
        if pattern == "card_testing":
            device = fraud_device if rng.random() < 0.6 else None
            roll = rng.random()
            ip = _RISKY_IP.pick(rng) if roll < 0.45 else _TRAVEL.pick(rng) if roll < 0.65 else home
            moment = start
            for _ in range(rng.randint(3, 15)):
                channel = Channel.ECOMMERCE if rng.random() < 0.85 else Channel.MOTO
                entry = (
                    EntryMode.MANUAL if channel is Channel.MOTO or rng.random() < 0.65 else EntryMode.CREDENTIAL_ON_FILE
                )
                country = home if rng.random() < 0.5 else _ECOM_ABROAD.pick(rng)
                amount = rng.uniform(0.5, 5.0) if rng.random() < 0.8 else rng.uniform(5.0, 15.0)
                cnp_device, cnp_ip = (None, None) if channel is Channel.MOTO else (device, ip)
                out.append(
                    _Txn(
                        moment,
                        self.merchant(country, rng.choice(_DIGITAL_MCCS), rng),
                        channel,
                        entry,
                        amount,
                        cnp_device,
                        cnp_ip,
                        pattern,
                        failed_auth=1 if rng.random() < 0.5 else 0,
                    )
                )
                moment += max(2.0, rng.lognormvariate(math.log(40.0), 0.9))
            if rng.random() < 0.4:
                for _ in range(rng.randint(1, 2)):
                    moment += rng.uniform(0.3, 6.0) * _HOUR_S
                    mcc = rng.choice(("5732", "5947", "5944"))
                    out.append(
                        _Txn(
                            moment,
                            self.merchant(home, mcc, rng),
                            Channel.ECOMMERCE,
                            EntryMode.MANUAL,
                            rng.uniform(150.0, 800.0),
                            device,
                            ip,
                            pattern,
                        )
                    )
        elif pattern == "account_takeover":
            device = fraud_device if rng.random() < 0.9 else device_at(start)
            roll = rng.random()
            ip = _RISKY_IP.pick(rng) if roll < 0.45 else _TRAVEL.pick(rng) if roll < 0.65 else home
            moment = start
            for _ in range(rng.randint(2, 6)):
                channel = Channel.ECOMMERCE if rng.random() < 0.7 else Channel.IN_APP
                entry = (
                    rng.choice((EntryMode.WALLET, EntryMode.CREDENTIAL_ON_FILE))
                    if channel is Channel.IN_APP
                    else (EntryMode.CREDENTIAL_ON_FILE if rng.random() < 0.6 else EntryMode.MANUAL)
                )
                mcc = rng.choice(_TAKEOVER_MCCS)
                country = home if rng.random() < 0.65 else _ECOM_ABROAD.pick(rng)
                amount = _typical(rng, mcc, profile.spend) * rng.lognormvariate(math.log(3.0), 0.5)
                out.append(_Txn(moment, self.merchant(country, mcc, rng), channel, entry, amount, device, ip, pattern))
                moment += rng.uniform(0.1, 3.0) * _HOUR_S
        elif pattern == "velocity_burst":
            in_person = rng.random() < 0.6
            device = fraud_device if rng.random() < 0.6 else None
            moment = start
            for _ in range(rng.randint(4, 12)):
                mcc = rng.choice(_RETAIL_MCCS)
                if in_person:
                    channel = Channel.POS
                    entry = rng.choice((EntryMode.MAGSTRIPE, EntryMode.CHIP, EntryMode.CHIP, EntryMode.CONTACTLESS))
                    used, ip = None, None
                else:
                    channel = Channel.ECOMMERCE
                    entry = EntryMode.MANUAL if rng.random() < 0.5 else EntryMode.CREDENTIAL_ON_FILE
                    used, ip = device, home if rng.random() < 0.7 else _RISKY_IP.pick(rng)
                amount = _typical(rng, mcc, profile.spend) * rng.lognormvariate(math.log(1.8), 0.4)
                out.append(_Txn(moment, self.merchant(home, mcc, rng), channel, entry, amount, used, ip, pattern))
                moment += rng.uniform(2.0, 12.0) * 60.0
        elif pattern == "slow_burn":
            device = fraud_device if rng.random() < 0.7 else None
            roll = rng.random()
            ip = _RISKY_IP.pick(rng) if roll < 0.3 else _TRAVEL.pick(rng) if roll < 0.5 else home
            first_day = rng.randrange(self.days)
            for day in range(first_day, first_day + rng.randint(3, 9)):
                for _ in range(rng.randint(1, 2)):
                    moment = self._local_time(profile, rng, day)
                    mcc = rng.choice(_ONLINE_MCCS)
                    country = home if rng.random() < 0.6 else _ECOM_ABROAD.pick(rng)
                    entry = EntryMode.MANUAL if rng.random() < 0.4 else EntryMode.CREDENTIAL_ON_FILE
                    amount = _typical(rng, mcc, profile.spend) * rng.lognormvariate(math.log(2.0), 0.4)
                    out.append(
                        _Txn(
                            moment,
                            self.merchant(country, mcc, rng),
                            Channel.ECOMMERCE,
                            entry,
                            amount,
                            device,
                            ip,
                            pattern,
                        )
                    )
        elif pattern == "skimmed_clone":
            abroad = _TRAVEL.pick(rng)
            if abroad == home:
                abroad = "TR" if home != "TR" else "TH"
            moment = start
            for _ in range(rng.randint(2, 5)):
                if rng.random() < 0.5:
                    channel, mcc = Channel.ATM, "6011"
                    entry = EntryMode.MAGSTRIPE if rng.random() < 0.6 else EntryMode.CHIP
                    amount = float(rng.randrange(5, 21) * 20)
                else:
                    channel, mcc = Channel.POS, rng.choice(("5411", "5999", "5732", "5944", "5541"))
                    entry = EntryMode.MAGSTRIPE if rng.random() < 0.6 else EntryMode.CHIP
                    amount = _typical(rng, mcc, profile.spend) * rng.uniform(1.0, 3.0)
                out.append(
                    _Txn(
                        moment,
                        self.merchant(abroad, mcc, rng, "compromised"),
                        channel,
                        entry,
                        amount,
                        None,
                        None,
                        pattern,
                    )
                )
                moment += rng.uniform(0.2, 8.0) * _HOUR_S
        elif pattern == "single_cnp":
            if rng.random() < 0.6:
                moment = self._local_time(profile, rng, rng.randrange(self.days), hour=_NIGHT_HOUR.pick(rng))
                mcc = rng.choice(("7995", "7995", "6051", "6051", "4829"))
                country = home
                amount = rng.lognormvariate(math.log(250.0), 0.7)
            else:
                moment = start
                mcc = rng.choice(("5732", "5651", "5311", "5999", "4511", "7011"))
                country = _ECOM_ABROAD.pick(rng)
                country = country if country != home else "SG"
                amount = rng.lognormvariate(math.log(300.0), 0.8)
            ip = _RISKY_IP.pick(rng) if rng.random() < 0.6 else home
            device = fraud_device if rng.random() < 0.6 else None
            out.append(
                _Txn(
                    moment,
                    self.merchant(country, mcc, rng),
                    Channel.ECOMMERCE,
                    EntryMode.MANUAL,
                    amount,
                    device,
                    ip,
                    pattern,
                )
            )
        else:  # mimic: the customer's own regular merchant, device and amount
            txn = self._legit(profile, rng, start, device_at(start))
            txn.pattern = pattern
            out.append(txn)
        return out


def _typical(rng: random.Random, mcc: str, spend: float) -> float:
    median, sigma = _MCC_AMOUNT[mcc]
    return rng.lognormvariate(math.log(median * spend), sigma)


def _with_features(profile: _Profile, txns: list[_Txn], start: float) -> list[dict[str, float]]:
    """Upstream behavioural features of each transaction, computed from the account's true history."""
    features: list[dict[str, float]] = []
    device_first = {device: start - age * _DAY_S for device, age in profile.devices}
    rng = random.Random(f"history-features/{profile.index}")
    for position, txn in enumerate(txns):
        hour_ago, day_ago = txn.time - _HOUR_S, txn.time - _DAY_S
        low = position
        while low > 0 and txns[low - 1].time > day_ago:
            low -= 1
        recent = txns[low : position + 1]
        median, sigma = _MCC_AMOUNT[txn.merchant.mcc]
        values = {
            "velocity_1h": float(sum(1 for other in recent if other.time > hour_ago)),
            "velocity_24h": float(len(recent)),
            "amount_zscore": round(
                math.log(txn.amount_usd / (median * profile.spend)) / sigma + rng.gauss(0.0, 0.25), 3
            ),
            "account_age_days": round(profile.age_days + (txn.time - start) / _DAY_S, 1),
            "distinct_merchants_24h": float(len({other.merchant.merchant_id for other in recent})),
            "failed_auth_24h": float(sum(other.failed_auth for other in recent)),
            "cross_border": 1.0 if txn.merchant.country != profile.home else 0.0,
        }
        if txn.device is not None:
            first = device_first.setdefault(txn.device, txn.time)
            values["device_age_days"] = round(max(0.0, txn.time - first) / _DAY_S, 2)
        features.append(values)
    return features


def generate_histories(
    count: int,
    *,
    seed: int = 0,
    fraud_rate: float = 0.01,
    start: datetime | None = None,
    accounts: int | None = None,
    days: int = DEFAULT_DAYS,
    upstream_features: bool = False,
    summary: WorldSummary | None = None,
) -> Iterator[LabelledEvent]:
    """Yield ``count`` labelled events of the history world in event-time order (see the module docstring).

    ``accounts`` defaults to one per :data:`EVENTS_PER_ACCOUNT` events (at least 20); transaction
    rates are scaled so that the accounts produce about ``count`` events over ``days`` days from
    ``start`` (timezone-aware; default 2026-01-05T00:00Z), and the latest are cut to give exactly
    ``count`` (fewer only if the draws fall short). ``summary``, when given, is filled in as events
    are yielded.
    """
    if count < 0:
        raise ValueError("count must be >= 0")
    if not 0.0 <= fraud_rate < 1.0:
        raise ValueError("fraud_rate must be within [0, 1)")
    if days < 2:
        raise ValueError("days must be >= 2")
    if start is None:
        start = DEFAULT_START
    elif start.tzinfo is None:
        raise ValueError("start must be timezone-aware")
    if accounts is None:
        accounts = max(20, math.ceil(count / EVENTS_PER_ACCOUNT))
    if accounts < 1:
        raise ValueError("accounts must be >= 1")
    report = summary if summary is not None else WorldSummary()
    world = _HistoryWorld(seed, start, days, fraud_rate)
    profiles = [world.profile(index) for index in range(accounts)]
    # Legitimate events are most of the total; 8% more than asked leaves room for the cut.
    expected = sum(profile.rate for profile in profiles) * days
    world.rate_scale = 1.08 * count * (1.0 - fraud_rate) / max(expected, 1e-9)
    begin = start.timestamp()
    run_tag = _letters(seed & 0xFFFFFFFF, 7)
    streams = []
    for profile in profiles:
        txns = world.timeline(profile, report)
        features = _with_features(profile, txns, begin) if upstream_features else None
        streams.append(
            [
                (txn.time, profile.index, position, txn, features[position] if features else {})
                for position, txn in enumerate(txns)
            ]
        )
    report.accounts = accounts
    merged = heapq.merge(*streams, key=lambda item: (item[0], item[1], item[2]))
    for produced, (moment, index, position, txn, values) in enumerate(merged):
        if produced >= count:
            break
        profile = profiles[index]
        currency = COUNTRY_CURRENCY.get(txn.merchant.country, "USD")
        amount = _amount(txn.amount_usd, currency)
        event = TransactionEvent(
            transaction_id=f"txn-{run_tag}-{index:x}-{position:x}",
            event_time=datetime.fromtimestamp(moment, tz=profile.utc_offset),
            account_id=profile.account_id,
            amount=amount,
            currency=currency,
            merchant=txn.merchant,
            channel=txn.channel,
            entry_mode=txn.entry_mode,
            card_present=txn.channel in _CARD_PRESENT,
            card=profile.card,
            device_id=txn.device,
            ip_country=txn.ip_country,
            features=values,
        )
        fraud = txn.pattern is not None
        report.events += 1
        if fraud:
            report.fraud_events += 1
            report.by_pattern[txn.pattern or ""] = report.by_pattern.get(txn.pattern or "", 0) + 1
        yield LabelledEvent(event=event, is_fraud=fraud, pattern=txn.pattern)
