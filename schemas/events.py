"""``TransactionEvent`` v1: what fraud pipelines produce to the input topic."""

from __future__ import annotations

import re
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    StringConstraints,
    WithJsonSchema,
)

from schemas.types import (
    FEATURE_NAME_PATTERN,
    MAX_FEATURE_NAME_CHARS,
    CountryCode,
    CurrencyCode,
    FeatureName,
    FiniteFloat,
    FreeText,
    Identifier,
    MerchantCategoryCode,
)

TRANSACTION_EVENT_VERSION: Literal[1] = 1
MAX_FEATURES = 64
MAX_AMOUNT = Decimal("1000000000")
AMOUNT_DECIMAL_PLACES = 4

#: An amount written as a string: a plain decimal (no sign, exponent, spaces or leading zeros), at
#: most four decimal places, greater than 0 and at most 1,000,000,000. No look-arounds, so that
#: every JSON Schema regex dialect (ECMA-262, RE2, Python) reads it alike.
AMOUNT_PATTERN = (
    r"^(?:0\.(?:[1-9][0-9]{0,3}|0[1-9][0-9]{0,2}|00[1-9][0-9]?|000[1-9])"
    r"|[1-9][0-9]{0,8}(?:\.[0-9]{1,4})?"
    r"|1000000000(?:\.0{1,4})?)$"
)
#: ``event_time``: an RFC 3339 date-time with a UTC offset (``Z`` or ``+hh:mm``), years 0001-9999,
#: up to nine fraction digits (sub-microsecond digits are dropped). Day-of-month against the month
#: (``02-30``) is checked by the decoder only.
EVENT_TIME_PATTERN = (
    r"^(?:000[1-9]|00[1-9][0-9]|0[1-9][0-9]{2}|[1-9][0-9]{3})-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12][0-9]|3[01])"
    r"[Tt](?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](?:\.[0-9]{1,9})?(?:[Zz]|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])$"
)
_AMOUNT_TEXT = re.compile(AMOUNT_PATTERN)
_EVENT_TIME_TEXT = re.compile(EVENT_TIME_PATTERN)


# These before-validators are the strictness of these fields: what they let through is then
# validated in lax mode (a function validator hands pydantic a Python value, which strict mode would
# only take as a Decimal or datetime instance).


def _amount_input(value: Any) -> Any:
    """Strings must be plain decimals (``AMOUNT_PATTERN``); numbers go on to the Decimal rules."""
    if isinstance(value, str):
        if _AMOUNT_TEXT.fullmatch(value) is None:
            raise ValueError("amount must be a plain decimal string like 129.90 (0 < amount <= 1000000000, 4 places)")
        return value
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        raise ValueError("amount must be a decimal string or a number")
    return value


def _event_time_input(value: Any) -> Any:
    if isinstance(value, str):
        if _EVENT_TIME_TEXT.fullmatch(value) is None:
            raise ValueError("event_time must be an RFC 3339 date-time with a UTC offset, like 2026-11-28T16:59:09Z")
        return value
    if not isinstance(value, datetime):
        raise ValueError("event_time must be an RFC 3339 date-time string")
    return value


def _features_input(value: Any) -> Any:
    """``features: null`` (how Go and Jackson write an empty map) is an empty map."""
    return {} if value is None else value


def _schema_version_input(value: Any) -> Any:
    if isinstance(value, bool):  # JSON true is not the number 1
        raise ValueError("schema_version must be the integer 1")
    return value


#: The amount: a decimal string (``AMOUNT_PATTERN``) or a JSON number within the same bounds.
#: Written back as a plain decimal string, never in exponent form.
Amount = Annotated[
    Decimal,
    BeforeValidator(_amount_input),
    Field(gt=0, le=MAX_AMOUNT, max_digits=18, decimal_places=AMOUNT_DECIMAL_PLACES, strict=False),
    PlainSerializer(lambda amount: format(amount, "f"), return_type=str, when_used="json"),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "pattern": AMOUNT_PATTERN},
                # At most four decimal places holds for numbers too, but JSON Schema cannot say it
                # portably: multipleOf 0.0001 over binary floats rejects 0.3 in some validators.
                {"type": "number", "exclusiveMinimum": 0, "maximum": int(MAX_AMOUNT)},
            ]
        }
    ),
]
EventTime = Annotated[
    AwareDatetime,
    BeforeValidator(_event_time_input),
    Field(strict=False),
    WithJsonSchema({"type": "string", "format": "date-time", "pattern": EVENT_TIME_PATTERN}),
]
Features = Annotated[
    dict[FeatureName, FiniteFloat],
    BeforeValidator(_features_input),
    Field(max_length=MAX_FEATURES),
    WithJsonSchema(
        {
            "anyOf": [
                {
                    "type": "object",
                    "maxProperties": MAX_FEATURES,
                    "propertyNames": {
                        "minLength": 1,
                        "maxLength": MAX_FEATURE_NAME_CHARS,
                        "pattern": FEATURE_NAME_PATTERN,
                    },
                    "additionalProperties": {"type": "number"},
                },
                {"type": "null"},
            ]
        }
    ),
]


class WireModel(BaseModel):
    """Base for wire messages: strict types, unknown fields rejected, immutable once built."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True, str_strip_whitespace=False)


class Channel(StrEnum):
    """How the transaction reached the issuer."""

    POS = "pos"
    ECOMMERCE = "ecommerce"
    ATM = "atm"
    MOTO = "moto"
    RECURRING = "recurring"
    IN_APP = "in_app"


class EntryMode(StrEnum):
    """How the card credentials were captured."""

    CHIP = "chip"
    CONTACTLESS = "contactless"
    MAGSTRIPE = "magstripe"
    MANUAL = "manual"
    CREDENTIAL_ON_FILE = "credential_on_file"
    WALLET = "wallet"


class Merchant(WireModel):
    merchant_id: Identifier
    mcc: MerchantCategoryCode = Field(description="ISO 18245 merchant category code, four digits.")
    country: CountryCode = Field(description="ISO 3166-1 alpha-2 country of the merchant.")
    name: FreeText | None = None


class CardRef(WireModel):
    """The card, never as a full PAN: a network/vault token, the BIN and the last four digits."""

    token: Annotated[str, StringConstraints(min_length=8, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]
    bin: Annotated[str, StringConstraints(min_length=6, max_length=8, pattern=r"^[0-9]+$")]
    last4: Annotated[str, StringConstraints(min_length=4, max_length=4, pattern=r"^[0-9]{4}$")]


class TransactionEvent(WireModel):
    """A card transaction to score. The account id is the Kafka partition key."""

    schema_version: Annotated[Literal[1], BeforeValidator(_schema_version_input)] = TRANSACTION_EVENT_VERSION
    transaction_id: Identifier
    event_time: EventTime = Field(description="When the transaction happened; must carry a UTC offset.")
    account_id: Identifier
    amount: Amount = Field(description='In the currency\'s major unit, e.g. "129.90"; at most four decimal places.')
    currency: CurrencyCode
    merchant: Merchant
    channel: Channel
    entry_mode: EntryMode
    card_present: bool
    card: CardRef
    device_id: Identifier | None = None
    ip_country: CountryCode | None = Field(default=None, description="Country of the client IP, if known.")
    features: Features = Field(
        default_factory=dict,
        description="Upstream behavioural signals (velocity counts, account age, ...), finite floats; null is empty.",
    )
