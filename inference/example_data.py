"""A foreign-format example data set: a fictional bank's labelled card-transaction export.

It is what ``riskstream data example`` writes and what the tests train on: nothing like the wire
schema, and with personal data the mapping must drop. The transactions come from the synthetic
generator (:func:`inference.synthetic.generate`), so the fraud labels mean something, but the bank
encodes and measures them its own way:

* different names and layout: pipe-separated CSV (or nested JSON Lines, or Parquet);
* ``booked_at`` in epoch seconds (so the account's local hour is gone: times are UTC);
* ``amt_minor`` in the currency's minor units (JPY has none, EUR cents);
* merchant category *names* instead of MCCs, one-letter channel codes, ISO 8583-style entry codes,
  ``Y``/``N`` flags, lower-case country codes, a masked card number instead of BIN and last four;
* its own behavioural signals: transaction counts that exclude the current one, account tenure in
  months rather than days, device age in hours, and no amount z-score at all;
* fraud of its own that the synthetic world does not have: first-party "bust-out" fraud, where a
  long-standing customer runs up big-ticket purchases (electronics, jewellery, gift cards,
  department stores) in person with their own chip card, across several merchants in a day, and
  never pays — next to legitimate big-ticket shopping that looks much the same;
* labels from two sources: a chargeback flag (empty when never disputed; a few legitimate
  payments are disputed too, "friendly fraud") and a confirmed-fraud flag;
* fake personal data per customer — name, street address, e-mail, phone, a national-id-like number
  (``9xx-xx-xxxx``, a range never issued as a US SSN) — which the mapping lists under ``drop``.

The shipped model never saw bust-out fraud and reads the bank's signals in the synthetic world's
units; a model trained on the bank's own history, with featurization fitted to it, learns both.
"""

from __future__ import annotations

import csv
import hashlib
import json
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, Final, Literal

from inference.reference import USD_PER_UNIT, ZERO_DECIMAL_CURRENCIES
from inference.synthetic import LabelledEvent, generate
from schemas import Channel, EntryMode, Merchant
from schemas.mapping import CURRENCY_EXPONENTS

ExampleFormat = Literal["csv", "jsonl", "parquet"]
EXAMPLE_FORMATS: Final = ("csv", "jsonl", "parquet")
EXAMPLE_START: Final = datetime(2026, 1, 5, tzinfo=UTC)
EXAMPLE_DAYS: Final = 28
DATA_FILES: Final = {"csv": "transactions.csv", "jsonl": "transactions.jsonl", "parquet": "transactions.parquet"}
MAPPING_FILE: Final = "mapping.toml"
#: The personal-data columns of the flat (CSV/Parquet) layout, all dropped by the mapping.
PERSONAL_COLUMNS: Final = ("customer_name", "street_address", "email", "phone", "national_id")

#: The bank's category names (ISO 18245 descriptions) for the MCCs the generator uses.
CATEGORY_NAMES: Final = {
    "5411": "Grocery Stores, Supermarkets",
    "5812": "Eating Places, Restaurants",
    "5814": "Fast Food Restaurants",
    "5541": "Service Stations",
    "5542": "Automated Fuel Dispensers",
    "5912": "Drug Stores, Pharmacies",
    "5311": "Department Stores",
    "5651": "Family Clothing Stores",
    "5732": "Electronics Stores",
    "5734": "Computer Software Stores",
    "5815": "Digital Media",
    "5816": "Digital Games",
    "5817": "Digital Applications",
    "5818": "Digital Goods - Large Merchant",
    "4121": "Taxicabs and Limousines",
    "4511": "Airlines",
    "7011": "Hotels and Motels",
    "4814": "Telecommunication Services",
    "4900": "Utilities",
    "5944": "Jewelry and Watch Stores",
    "5947": "Gift and Novelty Shops",
    "6011": "ATM Cash Disbursement",
    "7995": "Betting and Casino Gambling",
    "6051": "Quasi Cash - Crypto",
    "4829": "Money Transfer",
    "8398": "Charitable Organizations",
    "5999": "Miscellaneous Retail",
    "5200": "Home Supply Warehouse",
    "8011": "Doctors",
    "5968": "Subscription Merchants",
    "7832": "Motion Picture Theaters",
}
CHANNEL_CODES: Final = {
    Channel.POS: "P",
    Channel.ECOMMERCE: "E",
    Channel.ATM: "A",
    Channel.MOTO: "M",
    Channel.RECURRING: "R",
    Channel.IN_APP: "I",
}
ENTRY_CODES: Final = {
    EntryMode.CHIP: "05",
    EntryMode.CONTACTLESS: "07",
    EntryMode.MAGSTRIPE: "90",
    EntryMode.MANUAL: "01",
    EntryMode.CREDENTIAL_ON_FILE: "10",
    EntryMode.WALLET: "81",
}
FLAT_COLUMNS: Final = (
    "txn_ref",
    "booked_at",
    "cust_no",
    "amt_minor",
    "ccy",
    "merchant_ref",
    "merchant_category",
    "merchant_ctry",
    "merchant_label",
    "channel_cd",
    "entry_cd",
    "card_present_yn",
    "card_token",
    "card_masked",
    "device_ref",
    "ip_ctry",
    "n_txn_1h",
    "n_txn_24h",
    "n_merch_24h",
    "failed_auth_24h",
    "acct_tenure_months",
    "device_age_h",
    "xborder",
    "customer_name",
    "street_address",
    "email",
    "phone",
    "national_id",
    "chargeback",
    "confirmed_fraud",
)

_FIRST: Final = (
    "Amelia",
    "Noah",
    "Olivia",
    "Liam",
    "Emma",
    "Lucas",
    "Mia",
    "Elias",
    "Sofia",
    "Mateo",
    "Hannah",
    "Jonas",
    "Chloe",
    "Leon",
    "Yuki",
    "Arjun",
    "Ingrid",
    "Pedro",
    "Fatima",
    "Tomasz",
    "Aiko",
    "Marta",
    "Kwame",
    "Elena",
    "Oskar",
    "Priya",
    "Luca",
    "Nora",
    "Diego",
    "Freya",
)
_LAST: Final = (
    "Fernsby",
    "Okonkwo",
    "Lindqvist",
    "Marchetti",
    "Haddad",
    "Novak",
    "Tanaka",
    "Moreau",
    "Castillo",
    "Brennan",
    "Kowalski",
    "Iversen",
    "Duarte",
    "Achterberg",
    "Szabo",
    "Ramanathan",
    "Oyelaran",
    "Vasquez",
    "Holmgren",
    "Petrakis",
    "Whitcombe",
    "Abernathy",
    "Quintero",
    "Nakamura",
    "Delacroix",
    "Stavros",
    "Ebdon",
    "Kirkland",
    "Farrow",
    "Umbridge",
)
_STREETS: Final = (
    "Juniper Lane",
    "Harbour Road",
    "Mill Street",
    "Kestrel Avenue",
    "Old Orchard Way",
    "Quay Street",
    "Linden Allee",
    "Rue des Peupliers",
    "Calle Mayor",
    "Birch Close",
    "Station Road",
    "Maple Crescent",
)
_CITIES: Final = (
    "Northbridge",
    "Eastwick",
    "Port Avalon",
    "Millbrook",
    "Fairhaven",
    "Lakemont",
    "Stonebury",
    "Westerly",
    "Glenrock",
    "Ashford Vale",
)
# A few legitimate payments end in a chargeback anyway ("friendly fraud"): label noise real data has.
_FRIENDLY_FRAUD_RATE: Final = 0.0003
# Share of in-person payments turned into the bank's own fraud (bust-out), and into legitimate
# big-ticket shopping that resembles it. In-person payments are about 56% of the generator's traffic.
_BUST_OUT_RATE: Final = 0.009
_BIG_TICKET_RATE: Final = 0.012
_BIG_TICKET_MCCS: Final = ("5732", "5944", "5947", "5311", "5999")


@dataclass(frozen=True)
class ExampleFiles:
    """What :func:`write_example` wrote."""

    data: Path
    mapping: Path
    rows: int
    fraud_rows: int


def _person(account_id: str, seed: int) -> dict[str, str]:
    """Fake personal data of one customer, the same on every row of that customer."""
    digest = hashlib.blake2b(f"{seed}/{account_id}".encode(), digest_size=16).digest()
    rng = random.Random(digest)
    first, last = rng.choice(_FIRST), rng.choice(_LAST)
    return {
        "customer_name": f"{first} {last}",
        "street_address": f"{rng.randint(1, 240)} {rng.choice(_STREETS)}, {rng.randint(10000, 99999)} "
        f"{rng.choice(_CITIES)}",
        "email": f"{first}.{last}{rng.randint(1, 99)}@example.com".lower(),
        "phone": f"+1-202-555-01{rng.randint(0, 99):02d}",
        "national_id": f"9{rng.randint(0, 99):02d}-{rng.randint(1, 99):02d}-{rng.randint(1, 9999):04d}",
        "cust_no": f"{int.from_bytes(digest[:4], 'big') % 90_000_000 + 10_000_000}",
    }


def _big_ticket(item: LabelledEvent, rng: random.Random, *, fraud: bool) -> LabelledEvent:
    """An in-person chip/contactless purchase at a big-ticket merchant at home.

    Bust-out fraud (``fraud=True``): high amounts, and more payments at more merchants than usual
    that day. Legitimate big-ticket shopping: high amounts too, on an ordinary day.
    """
    event = item.event
    currency = event.currency
    mcc = rng.choice(_BIG_TICKET_MCCS)
    usd = rng.lognormvariate(6.6, 0.45) if fraud else rng.lognormvariate(6.2, 0.6)
    local = usd / USD_PER_UNIT.get(currency, 1.0)
    amount = Decimal(max(1, round(local))) if currency in ZERO_DECIMAL_CURRENCIES else Decimal(f"{local:.2f}")
    country = event.merchant.country
    slot = rng.randrange(12)
    merchant = Merchant(
        merchant_id=f"mer-{country.lower()}{mcc}-b{'abcdefghijkl'[slot]}",
        mcc=mcc,
        country=country,
        name=f"{CATEGORY_NAMES[mcc].split(',')[0]} {'ABCDEFGHIJKL'[slot]}",
    )
    features = dict(event.features)
    if fraud:
        extra = rng.randint(3, 9)
        features["velocity_24h"] = features.get("velocity_24h", 2.0) + extra
        features["velocity_1h"] = features.get("velocity_1h", 1.0) + rng.randint(0, 2)
        features["distinct_merchants_24h"] = features.get("distinct_merchants_24h", 1.0) + rng.randint(2, extra)
    entry = EntryMode.CHIP if rng.random() < 0.6 else EntryMode.CONTACTLESS
    changed = event.model_copy(
        update={"amount": amount, "merchant": merchant, "entry_mode": entry, "features": features}
    )
    return LabelledEvent(event=changed, is_fraud=fraud, pattern="bust_out" if fraud else None)


def _bank_world(items: Iterator[LabelledEvent], seed: int) -> Iterator[LabelledEvent]:
    """The generator's events with the bank's own fraud (and its legitimate look-alikes) mixed in."""
    rng = random.Random(f"example-bust-out/{seed}")
    for item in items:
        if not item.is_fraud and item.event.channel is Channel.POS:
            roll = rng.random()
            if roll < _BUST_OUT_RATE:
                item = _big_ticket(item, rng, fraud=True)
            elif roll < _BUST_OUT_RATE + _BIG_TICKET_RATE:
                item = _big_ticket(item, rng, fraud=False)
        yield item


def _count(value: float | None) -> str:
    """The bank counts earlier transactions only: the wire's velocity includes the current one."""
    return "" if value is None else str(max(0, int(value) - 1))


def _flat(
    item: LabelledEvent, seed: int, rng: random.Random, *, friendly_fraud: float = _FRIENDLY_FRAUD_RATE
) -> dict[str, str]:
    event = item.event
    signals = event.features
    person = _person(event.account_id, seed)
    exponent = CURRENCY_EXPONENTS[event.currency]
    minor = Decimal(event.amount).scaleb(exponent)
    if minor != minor.to_integral_value():
        raise AssertionError("generated amounts have at most the currency's minor-unit digits")
    tenure = signals.get("account_age_days")
    device_age = signals.get("device_age_days")
    if item.is_fraud:
        confirmed = rng.random() < 0.8
        chargeback = "Y" if not confirmed or rng.random() < 0.7 else ""
    else:
        confirmed = False
        chargeback = "Y" if rng.random() < friendly_fraud else ""
    velocity_1h, velocity_24h = signals.get("velocity_1h"), signals.get("velocity_24h")
    distinct, failed = signals.get("distinct_merchants_24h"), signals.get("failed_auth_24h")
    return {
        "txn_ref": event.transaction_id.replace("txn-", "TRX").replace("-", ""),
        "booked_at": str(int(event.event_time.timestamp())),
        "cust_no": person["cust_no"],
        "amt_minor": str(int(minor)),
        "ccy": event.currency,
        "merchant_ref": event.merchant.merchant_id.replace("mer-", "M").replace("-", "_"),
        "merchant_category": CATEGORY_NAMES[event.merchant.mcc],
        "merchant_ctry": event.merchant.country.lower(),
        "merchant_label": event.merchant.name or "",
        "channel_cd": CHANNEL_CODES[event.channel],
        "entry_cd": ENTRY_CODES[event.entry_mode],
        "card_present_yn": "Y" if event.card_present else "N",
        "card_token": event.card.token.replace("tok_", "ctk"),
        "card_masked": f"{event.card.bin}******{event.card.last4}",
        "device_ref": event.device_id or "",
        "ip_ctry": (event.ip_country or "").lower(),
        "n_txn_1h": _count(velocity_1h),
        "n_txn_24h": _count(velocity_24h),
        "n_merch_24h": "" if distinct is None else str(int(distinct)),
        "failed_auth_24h": "" if failed is None else str(int(failed)),
        "acct_tenure_months": "" if tenure is None else str(round(tenure / 30.44)),
        "device_age_h": "" if device_age is None or event.device_id is None else f"{device_age * 24:.1f}",
        "xborder": "Y" if signals.get("cross_border", 0.0) >= 0.5 else "N",
        **{name: person[name] for name in PERSONAL_COLUMNS},
        "chargeback": chargeback,
        "confirmed_fraud": "1" if confirmed else "0",
    }


def example_rows(
    rows: int, *, seed: int = 0, fraud_rate: float = 0.01, days: int = EXAMPLE_DAYS
) -> Iterator[dict[str, str]]:
    """``rows`` flat records of the bank's export (CSV layout: every value a string), lazily.

    ``fraud_rate`` is the generator's; the bank's own bust-out fraud adds about 0.5% of rows (none
    when ``fraud_rate`` is 0).
    """
    rng = random.Random(f"example-labels/{seed}")
    items = generate(rows, seed=seed, fraud_rate=fraud_rate, start=EXAMPLE_START, days=days)
    if fraud_rate == 0:  # no fraud at all: no bust-out and no friendly fraud either
        for item in items:
            yield _flat(item, seed, rng, friendly_fraud=0.0)
        return
    for item in _bank_world(items, seed):
        yield _flat(item, seed, rng)


def nested_record(flat: dict[str, str]) -> dict[str, Any]:
    """The JSON layout of one flat record: nested objects, typed numbers, booleans and nulls."""

    def number(text: str) -> float | None:
        return None if text == "" else float(text)

    device = None if not flat["device_ref"] else {"ref": flat["device_ref"], "age_h": number(flat["device_age_h"])}
    return {
        "ref": flat["txn_ref"],
        "booked_at": int(flat["booked_at"]),
        "customer": {
            "no": flat["cust_no"],
            "name": flat["customer_name"],
            "address": {"line": flat["street_address"]},
            "email": flat["email"],
            "phone": flat["phone"],
            "national_id": flat["national_id"],
        },
        "amount": {"minor": int(flat["amt_minor"]), "ccy": flat["ccy"]},
        "merchant": {
            "ref": flat["merchant_ref"],
            "category": flat["merchant_category"],
            "country": flat["merchant_ctry"],
            "label": flat["merchant_label"] or None,
        },
        "channel": {
            "code": flat["channel_cd"],
            "entry": flat["entry_cd"],
            "card_present": flat["card_present_yn"] == "Y",
        },
        "card": {"token": flat["card_token"], "masked": flat["card_masked"]},
        "device": device,
        "ip_ctry": flat["ip_ctry"] or None,
        "signals": {
            "n_txn_1h": number(flat["n_txn_1h"]),
            "n_txn_24h": number(flat["n_txn_24h"]),
            "n_merch_24h": number(flat["n_merch_24h"]),
            "failed_auth_24h": number(flat["failed_auth_24h"]),
            "acct_tenure_months": number(flat["acct_tenure_months"]),
            "xborder": flat["xborder"] == "Y",
        },
        "outcome": {"chargeback": flat["chargeback"] == "Y", "confirmed_fraud": int(flat["confirmed_fraud"])},
    }


def _category_map() -> str:
    lines = [f'"{name}" = "{mcc}"' for mcc, name in sorted(CATEGORY_NAMES.items(), key=lambda item: item[1])]
    return "\n".join(lines)


def example_mapping(fmt: ExampleFormat = "csv") -> str:
    """The mapping file (TOML) for the example in layout ``fmt``."""
    channels = ", ".join(f'{code} = "{channel.value}"' for channel, code in CHANNEL_CODES.items())
    entries = ", ".join(f'"{code}" = "{mode.value}"' for mode, code in ENTRY_CODES.items())
    if fmt == "jsonl":
        return _JSON_MAPPING.format(categories=_category_map(), channels=channels, entries=entries)
    header = 'format = "csv"\ndelimiter = "|"' if fmt == "csv" else 'format = "parquet"'
    return _FLAT_MAPPING.format(header=header, categories=_category_map(), channels=channels, entries=entries)


_FLAT_MAPPING: Final = """\
# How the example bank's export becomes TransactionEvent v1 (see docs/own-data.md).
version = 1
{header}
timezone = "UTC"          # booked_at is epoch seconds; times are expressed in UTC
null_values = [""]
unmapped = "error"        # a column that is neither mapped nor dropped stops the run
# Personal data: never read, never copied anywhere.
drop = ["customer_name", "street_address", "email", "phone", "national_id"]

[label]                   # fraud when either source says so
any = ["chargeback", "confirmed_fraud"]
true_values = ["Y", "1"]
false_values = ["N", "0"]
missing = "legit"         # never disputed = not fraud

[maps.categories]         # the bank's category names -> ISO 18245 MCC
{categories}

[fields]
transaction_id = "txn_ref"
event_time = {{ path = "booked_at", convert = "epoch_seconds" }}
account_id = {{ path = "cust_no", template = "cust-{{}}" }}
amount = {{ path = "amt_minor", convert = "minor_units" }}     # exponent from the currency: JPY 0, EUR 2
currency = {{ path = "ccy", case = "upper" }}
channel = {{ path = "channel_cd", map = {{ {channels} }} }}
entry_mode = {{ path = "entry_cd", map = {{ {entries} }} }}
card_present = {{ path = "card_present_yn", true_values = ["Y"], false_values = ["N"] }}
device_id = {{ path = "device_ref", optional = true }}
ip_country = {{ path = "ip_ctry", case = "upper", optional = true }}

[fields.merchant]
merchant_id = "merchant_ref"
mcc = {{ path = "merchant_category", map = "categories", fallback = "5999" }}
country = {{ path = "merchant_ctry", case = "upper" }}
name = {{ path = "merchant_label", optional = true }}

[fields.card]
token = "card_token"
bin = {{ path = "card_masked", slice = [0, 6] }}
last4 = {{ path = "card_masked", slice = [-4] }}

[fields.features]         # the bank's own signals, in its own units: fitted featurization adapts
velocity_1h = "n_txn_1h"
velocity_24h = "n_txn_24h"
distinct_merchants_24h = "n_merch_24h"
failed_auth_24h = "failed_auth_24h"
account_age_days = "acct_tenure_months"
device_age_days = "device_age_h"
cross_border = {{ path = "xborder", convert = "bool", true_values = ["Y"], false_values = ["N"] }}
"""

_JSON_MAPPING: Final = """\
# How the example bank's JSON records become TransactionEvent v1 (see docs/own-data.md).
version = 1
format = "json"
timezone = "UTC"
unmapped = "error"        # a field that is neither mapped nor dropped makes the record fail
drop = ["customer.name", "customer.address", "customer.email", "customer.phone", "customer.national_id"]

[label]
any = ["outcome.chargeback", "outcome.confirmed_fraud"]
missing = "legit"

[maps.categories]
{categories}

[fields]
transaction_id = "ref"
event_time = {{ path = "booked_at", convert = "epoch_seconds" }}
account_id = {{ path = "customer.no", template = "cust-{{}}" }}
amount = {{ path = "amount.minor", convert = "minor_units" }}
currency = {{ path = "amount.ccy", case = "upper" }}
channel = {{ path = "channel.code", map = {{ {channels} }} }}
entry_mode = {{ path = "channel.entry", map = {{ {entries} }} }}
card_present = "channel.card_present"
device_id = {{ path = "device.ref", optional = true }}
ip_country = {{ path = "ip_ctry", case = "upper", optional = true }}

[fields.merchant]
merchant_id = "merchant.ref"
mcc = {{ path = "merchant.category", map = "categories", fallback = "5999" }}
country = {{ path = "merchant.country", case = "upper" }}
name = {{ path = "merchant.label", optional = true }}

[fields.card]
token = "card.token"
bin = {{ path = "card.masked", slice = [0, 6] }}
last4 = {{ path = "card.masked", slice = [-4] }}

[fields.features]
velocity_1h = "signals.n_txn_1h"
velocity_24h = "signals.n_txn_24h"
distinct_merchants_24h = "signals.n_merch_24h"
failed_auth_24h = "signals.failed_auth_24h"
account_age_days = "signals.acct_tenure_months"
device_age_days = "device.age_h"
cross_border = {{ path = "signals.xborder", convert = "bool" }}
"""


def _parquet_schema() -> Any:
    import pyarrow as pa

    numbers = {
        "booked_at": pa.int64(),
        "amt_minor": pa.int64(),
        "n_txn_1h": pa.float64(),
        "n_txn_24h": pa.float64(),
        "n_merch_24h": pa.float64(),
        "failed_auth_24h": pa.float64(),
        "acct_tenure_months": pa.float64(),
        "device_age_h": pa.float64(),
        "confirmed_fraud": pa.int64(),
    }
    return pa.schema([(name, numbers.get(name, pa.string())) for name in FLAT_COLUMNS])


def _typed(flat: dict[str, str]) -> dict[str, Any]:
    """A flat record with Parquet types: numbers as numbers, empty values as nulls."""
    typed: dict[str, Any] = {}
    for name, text in flat.items():
        if text == "":
            typed[name] = None
        elif name in ("booked_at", "amt_minor", "confirmed_fraud"):
            typed[name] = int(text)
        elif name in ("n_txn_1h", "n_txn_24h", "n_merch_24h", "failed_auth_24h", "acct_tenure_months", "device_age_h"):
            typed[name] = float(text)
        else:
            typed[name] = text
    return typed


def write_example(
    out_dir: Path,
    *,
    rows: int = 20_000,
    seed: int = 0,
    fmt: ExampleFormat = "csv",
    fraud_rate: float = 0.01,
    days: int = EXAMPLE_DAYS,
) -> ExampleFiles:
    """Write the example export (``transactions.csv|jsonl|parquet``) and its ``mapping.toml``.

    Streams: memory does not grow with ``rows`` (Parquet is written in row groups of 50,000).
    """
    if rows < 1:
        raise ValueError("rows must be >= 1")
    if fmt not in EXAMPLE_FORMATS:
        raise ValueError(f"format must be one of {', '.join(EXAMPLE_FORMATS)}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    data_path = out_dir / DATA_FILES[fmt]
    mapping_path = out_dir / MAPPING_FILE
    records = example_rows(rows, seed=seed, fraud_rate=fraud_rate, days=days)
    written = fraud = 0

    def counted(record: dict[str, str]) -> dict[str, str]:
        nonlocal written, fraud
        written += 1
        fraud += record["chargeback"] == "Y" or record["confirmed_fraud"] == "1"
        return record

    if fmt == "csv":
        with data_path.open("w", encoding="utf-8", newline="") as out:
            writer = csv.DictWriter(out, fieldnames=FLAT_COLUMNS, delimiter="|", lineterminator="\n")
            writer.writeheader()
            for record in records:
                writer.writerow(counted(record))
    elif fmt == "jsonl":
        with data_path.open("w", encoding="utf-8") as out:
            for record in records:
                out.write(json.dumps(nested_record(counted(record)), separators=(",", ":")))
                out.write("\n")
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        schema = _parquet_schema()
        with pq.ParquetWriter(data_path, schema) as writer:
            batch: list[dict[str, Any]] = []
            for record in records:
                batch.append(_typed(counted(record)))
                if len(batch) == 50_000:
                    writer.write_table(pa.Table.from_pylist(batch, schema=schema))
                    batch = []
            if batch:
                writer.write_table(pa.Table.from_pylist(batch, schema=schema))
    mapping_path.write_text(example_mapping(fmt), encoding="utf-8")
    return ExampleFiles(data=data_path, mapping=mapping_path, rows=written, fraud_rows=fraud)
