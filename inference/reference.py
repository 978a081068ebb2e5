"""Static reference data shared by the featurizer and the synthetic generator.

Approximate exchange rates are enough for bucketing amounts on a logarithmic scale: a 10% error in a
rate moves an amount by at most one bucket edge. The table is copied into every checkpoint's feature
spec, so a model keeps the rates it was trained with even when this table is updated.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Final

#: US dollars per unit of currency (rounded, early-2026 levels). Unknown currencies count as 1.0.
USD_PER_UNIT: Final = MappingProxyType(
    {
        "USD": 1.0,
        "EUR": 1.08,
        "GBP": 1.27,
        "CAD": 0.73,
        "AUD": 0.66,
        "JPY": 0.0067,
        "BRL": 0.18,
        "MXN": 0.055,
        "INR": 0.012,
        "SEK": 0.095,
        "CHF": 1.12,
        "THB": 0.028,
        "AED": 0.27,
        "TRY": 0.03,
        "CNY": 0.14,
        "SGD": 0.74,
        "HKD": 0.128,
        "NGN": 0.0007,
        "RUB": 0.011,
        "RON": 0.22,
        "VND": 0.00004,
        "IDR": 0.000063,
        "UAH": 0.024,
        "PKR": 0.0036,
        "PHP": 0.017,
        "KES": 0.0077,
        "BDT": 0.0083,
        "NOK": 0.094,
        "DKK": 0.145,
        "PLN": 0.25,
        "ZAR": 0.055,
        "KRW": 0.00075,
    }
)

#: Currency used in each country the generator knows (ISO 3166-1 alpha-2 -> ISO 4217).
COUNTRY_CURRENCY: Final = MappingProxyType(
    {
        "US": "USD",
        "GB": "GBP",
        "DE": "EUR",
        "FR": "EUR",
        "ES": "EUR",
        "IT": "EUR",
        "NL": "EUR",
        "IE": "EUR",
        "PT": "EUR",
        "GR": "EUR",
        "LU": "EUR",
        "CA": "CAD",
        "AU": "AUD",
        "JP": "JPY",
        "BR": "BRL",
        "MX": "MXN",
        "IN": "INR",
        "SE": "SEK",
        "CH": "CHF",
        "TH": "THB",
        "AE": "AED",
        "TR": "TRY",
        "CN": "CNY",
        "SG": "SGD",
        "HK": "HKD",
        "NG": "NGN",
        "RU": "RUB",
        "RO": "RON",
        "VN": "VND",
        "ID": "IDR",
        "UA": "UAH",
        "PK": "PKR",
        "PH": "PHP",
        "KE": "KES",
        "BD": "BDT",
        "NO": "NOK",
        "DK": "DKK",
        "PL": "PLN",
        "ZA": "ZAR",
        "KR": "KRW",
    }
)

#: Currencies without minor units (amounts are whole numbers).
ZERO_DECIMAL_CURRENCIES: Final = frozenset({"JPY", "VND", "KRW", "IDR"})
