"""Test corpora for card-number detection: real-format PANs of every brand and length, and the
identifiers, timestamps and amounts of realistic traffic that must never be taken for one.

Everything is generated from a fixed seed (no data files): PANs get a real issuer prefix and a
valid Luhn check digit; ids have the shapes real systems emit.
"""

from __future__ import annotations

import hashlib
import random
import string
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from schemas.redaction import luhn_valid

#: (brand, issuer prefixes, lengths) — the IIN ranges and lengths the networks publish.
BRANDS: tuple[tuple[str, tuple[str, ...], tuple[int, ...]], ...] = (
    ("visa", ("4",), (13, 16, 19)),
    ("mastercard", ("51", "52", "53", "54", "55", "2221", "2500", "2720"), (16,)),
    ("amex", ("34", "37"), (15,)),
    ("discover", ("6011", "644", "649", "65"), (16, 19)),
    ("diners", ("300", "305", "36", "38"), (14,)),
    ("jcb", ("3528", "3589"), (16, 17, 18, 19)),
    ("maestro", ("5018", "5020", "5038", "6304", "6759", "676770"), (12, 13, 14, 15, 16, 17, 18, 19)),
    ("unionpay", ("62",), (16, 17, 18, 19)),
)


@dataclass(frozen=True, slots=True)
class Pan:
    brand: str
    digits: str

    def formats(self) -> dict[str, str]:
        """The ways people write this number: plain, and spaced or dashed in the brand's groups."""
        groups = [_grouped(self.digits, sizes) for sizes in _groupings(self.brand, len(self.digits))]
        written = {"plain": self.digits}
        for index, parts in enumerate(groups):
            written[f"spaced{index}"] = " ".join(parts)
            written[f"dashed{index}"] = "-".join(parts)
        return written


def _groupings(brand: str, length: int) -> list[tuple[int, ...]]:
    fours = (4,) * (length // 4) + ((length % 4,) if length % 4 else ())
    shapes = [fours]
    if brand == "amex":
        shapes = [(4, 6, 5)]
    elif brand == "diners":
        shapes = [(4, 6, 4), fours]
    elif length == 13:
        shapes.append((4, 3, 3, 3))
    return shapes


def _grouped(digits: str, sizes: tuple[int, ...]) -> list[str]:
    parts, start = [], 0
    for size in sizes:
        parts.append(digits[start : start + size])
        start += size
    return parts


def make_pan(rng: random.Random, prefix: str, length: int) -> str:
    body = prefix + "".join(rng.choice(string.digits) for _ in range(length - len(prefix) - 1))
    for check in string.digits:
        if luhn_valid(body + check):
            return body + check
    raise AssertionError("unreachable: one check digit always fits")


def pan_corpus(per_combination: int = 3, seed: int = 7) -> list[Pan]:
    """``per_combination`` PANs for every (brand, prefix, length)."""
    rng = random.Random(seed)
    return [
        Pan(brand, make_pan(rng, prefix, length))
        for brand, prefixes, lengths in BRANDS
        for prefix in prefixes
        for length in lengths
        for _ in range(per_combination)
    ]


#: Free-text contexts around a PAN: alone, in a sentence, at the start or end, next to punctuation.
TEXT_CONTEXTS = (
    "{}",
    "refund to card {} please",
    "{} was declined",
    "card: {}",
    "({})",
    "{}.",
    "{},",
    '"{}"',
    "pan={}&cvv=none",
    "#{}!",
    "line one\n{}\nline two",
    "qty 2 {} ref 77",
)
#: Identifier fields hold no spaces; PANs appear in them plain, dashed, or after a delimiter.
IDENTIFIER_CONTEXTS = ("{}", "acct:{}", "{}@issuer", "card/{}", "{}.v1")


def _base62(rng: random.Random, size: int) -> str:
    return "".join(rng.choice(string.ascii_letters + string.digits) for _ in range(size))


def _crockford(rng: random.Random, size: int) -> str:
    return "".join(rng.choice("0123456789ABCDEFGHJKMNPQRSTVWXYZ") for _ in range(size))


def _digits(rng: random.Random, size: int) -> str:
    return str(rng.randint(1, 9)) + "".join(rng.choice(string.digits) for _ in range(size - 1))


IdMaker = Callable[[random.Random], str]

#: Kinds of realistic identifiers; none is written as a number, so none may ever look like a PAN.
ID_KINDS: dict[str, IdMaker] = {
    "uuid4": lambda rng: str(uuid.UUID(int=rng.getrandbits(128), version=4)),
    "uuid4_hex": lambda rng: uuid.UUID(int=rng.getrandbits(128), version=4).hex,
    "sha256": lambda rng: hashlib.sha256(rng.randbytes(16)).hexdigest(),
    "sha1": lambda rng: hashlib.sha1(rng.randbytes(16)).hexdigest(),
    "md5": lambda rng: hashlib.md5(rng.randbytes(16)).hexdigest(),
    "stripe_charge": lambda rng: "ch_" + _base62(rng, 24),
    "stripe_token": lambda rng: "tok_" + _base62(rng, 24),
    "stripe_intent": lambda rng: "pi_" + _base62(rng, 24),
    "network_token_ref": lambda rng: "DNITHE" + _crockford(rng, 20),
    "network_token_alnum": lambda rng: _crockford(rng, 32),
    "ulid": lambda rng: _crockford(rng, 26),
    "hex_with_digit_runs": lambda rng: rng.choice("abcdef") + _digits(rng, 16) + rng.choice("abcdef"),
    "prefixed_digits": lambda rng: rng.choice(("txn-", "acct-", "dev-", "m-")) + _digits(rng, 16),
    "arn_23_digits": lambda rng: _digits(rng, 23),
}
#: Pure-digit identifiers (Snowflake-like 18-19 digits, 16-digit account numbers, 15-digit merchant
#: ids): Luhn-valid one time in ten, then masked on output but still scored.
DIGIT_ID_KINDS: dict[str, IdMaker] = {
    "snowflake_18": lambda rng: _digits(rng, 18),
    "snowflake_19": lambda rng: _digits(rng, 19),
    "account_16": lambda rng: _digits(rng, 16),
    "merchant_mid_15": lambda rng: _digits(rng, 15),
}


def realistic_ids(kinds: dict[str, IdMaker], per_kind: int, seed: int = 11) -> Iterator[tuple[str, str]]:
    rng = random.Random(seed)
    for kind, make in kinds.items():
        for _ in range(per_kind):
            yield kind, make(rng)


def realistic_free_text(count: int, seed: int = 13) -> Iterator[str]:
    """Merchant names carrying timestamps, amounts, epoch seconds, MCCs, BINs, phone-free numbers."""
    rng = random.Random(seed)
    start = datetime(2024, 1, 1, tzinfo=UTC)
    for _ in range(count):
        moment = start + timedelta(seconds=rng.randint(0, 3 * 365 * 86400), microseconds=rng.randint(0, 999_999))
        amount = Decimal(rng.randint(1, 10**9)) / 100
        yield rng.choice(
            (
                f"Shop {moment.isoformat()}",
                f"Refund {amount} EUR",
                f"POS {int(moment.timestamp())} MCC {rng.randint(1000, 9999)}",
                f"Order {moment:%Y-%m-%d %H:%M:%S} total {amount}",
                f"BIN {rng.randint(400000, 499999)} ref {rng.randint(1, 10**9)}",
                f"Store #{rng.randint(1, 99999)} {moment:%d.%m.%Y}",
            )
        )
