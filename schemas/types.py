"""Constrained field types shared by the wire schemas."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, Field, StringConstraints, WithJsonSchema

from schemas.iso import COUNTRY_CODES, CURRENCY_CODES

#: Identifiers (transactions, accounts, merchants, devices, workers): printable ASCII, no spaces.
Identifier = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:@/-]*$")]
#: An input identifier as riskstream writes it: a card number in it masked with ``*``
#: (``411111******1111``, see ``schemas.redaction.mask_identifier``). Inputs stay :data:`Identifier`.
OutputIdentifier = Annotated[
    str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9*][A-Za-z0-9._:@/*-]*$")
]
#: Free text a human typed or a system named (merchant names): no control characters.
FreeText = Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=r"^[^\x00-\x1f\x7f]+$")]


def _known_country(code: str) -> str:
    if code not in COUNTRY_CODES:
        raise ValueError("not an ISO 3166-1 alpha-2 country code")
    return code


def _known_currency(code: str) -> str:
    if code not in CURRENCY_CODES:
        raise ValueError("not an ISO 4217 currency code")
    return code


# The JSON Schema carries the code lists themselves, so a producer validating against it gets the
# same verdict as the decoder.
CountryCode = Annotated[
    str,
    StringConstraints(min_length=2, max_length=2, pattern=r"^[A-Z]{2}$"),
    AfterValidator(_known_country),
    WithJsonSchema({"type": "string", "enum": sorted(COUNTRY_CODES)}),
]
CurrencyCode = Annotated[
    str,
    StringConstraints(min_length=3, max_length=3, pattern=r"^[A-Z]{3}$"),
    AfterValidator(_known_currency),
    WithJsonSchema({"type": "string", "enum": sorted(CURRENCY_CODES)}),
]
#: ISO 18245 merchant category code: exactly four digits.
MerchantCategoryCode = Annotated[str, StringConstraints(min_length=4, max_length=4, pattern=r"^[0-9]{4}$")]
FEATURE_NAME_PATTERN = r"^[a-z][a-z0-9_]*$"
MAX_FEATURE_NAME_CHARS = 64
FeatureName = Annotated[
    str, StringConstraints(min_length=1, max_length=MAX_FEATURE_NAME_CHARS, pattern=FEATURE_NAME_PATTERN)
]
FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]
KafkaTopic = Annotated[str, StringConstraints(min_length=1, max_length=249, pattern=r"^[A-Za-z0-9._-]+$")]
