"""``TransactionEvent`` v1: what fraud pipelines produce to the input topic."""

from __future__ import annotations

from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints

from schemas.types import (
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

    schema_version: Literal[1] = TRANSACTION_EVENT_VERSION
    transaction_id: Identifier
    event_time: AwareDatetime = Field(description="When the transaction happened; must carry a UTC offset.")
    account_id: Identifier
    amount: Decimal = Field(gt=0, le=MAX_AMOUNT, max_digits=18, decimal_places=4)
    currency: CurrencyCode
    merchant: Merchant
    channel: Channel
    entry_mode: EntryMode
    card_present: bool
    card: CardRef
    device_id: Identifier | None = None
    ip_country: CountryCode | None = Field(default=None, description="Country of the client IP, if known.")
    features: dict[FeatureName, FiniteFloat] = Field(
        default_factory=dict,
        max_length=MAX_FEATURES,
        description="Upstream behavioural signals (velocity counts, account age, ...), finite floats.",
    )
