"""Numbers as riskstream prints them: never with a digit run long enough to be read as a card number.

A PAN is 12-19 digits (``schemas.redaction``), so a printed number stays safe for every scanner as
long as no run of consecutive digits in it reaches 12. Plain ``repr`` does not guarantee that:
``0.00012345678901234`` has a 17-digit run, and so does a 17-significant-digit Unix timestamp. Even
``%.12g`` and ``%.9g`` print ``0.000123456789``-style runs, because leading zeros count.
"""

from __future__ import annotations

import math
import re

from schemas.redaction import PAN_MAX_DIGITS, PAN_MIN_DIGITS, luhn_valid, mask_pans

#: A run of this many digits could be (part of) a card number.
_LONG_DIGIT_RUN = re.compile(rf"\d{{{PAN_MIN_DIGITS}}}")
_EXACT_INTEGER_LIMIT = 1e11
_SIGNIFICANT_DIGITS = 11


def _scientific(value: float) -> str:
    """``value`` in exponent notation with 10 digits after the point, truncated (never rounded up,
    so the largest finite floats do not turn into infinity)."""
    mantissa, exponent = f"{value:.16e}".split("e")
    return f"{mantissa[: mantissa.index('.') + _SIGNIFICANT_DIGITS]}e{exponent}"


def exposition_number(value: float) -> str:
    """A Prometheus sample value: a number that ``float()`` parses, with no run of 12+ digits.

    * integral values below 1e11 (counters, byte counts): ``3000.0``, exact, at most 11 digits;
    * otherwise ``%.11g``: in fixed notation the integer part has at most 11 digits and the
      fraction at most 10 when the value is at least 1; in exponent notation the mantissa has 11
      digits, 10 after the point, and the exponent at most 3;
    * ``%.11g`` prints fixed notation down to 1e-4, where up to three leading zeros join the 11
      significant digits (``0.00012345678901``): then exponent notation (``1.2345678901e-04``)
      instead, also when rounding would carry the largest finite floats to infinity.
    """
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value.is_integer() and abs(value) < _EXACT_INTEGER_LIMIT:
        return f"{value:.1f}"
    text = f"{value:.{_SIGNIFICANT_DIGITS}g}"
    if _LONG_DIGIT_RUN.search(text) is not None or math.isinf(float(text)):
        text = _scientific(value)
    return text


def loggable_float(value: float) -> float | str:
    """A float for a log line: itself when its ``repr`` is safe, else rounded until it is.

    Rounding to 11 significant digits makes ``repr`` safe except between 1e-4 and 1 (leading zeros,
    so 8 digits there) and from 1e11 up (``repr`` prints up to 16 integer digits); those come back as
    :func:`exposition_number` text.
    """
    if not math.isfinite(value) or _LONG_DIGIT_RUN.search(repr(value)) is None:
        return value
    for digits in (_SIGNIFICANT_DIGITS, 8):
        rounded = float(f"{value:.{digits}g}")
        if math.isfinite(rounded) and _LONG_DIGIT_RUN.search(repr(rounded)) is None:
            return rounded
    return exposition_number(value)


def loggable_int(value: int) -> int | str:
    """An integer for a log line: itself, unless it is 12-19 digits that pass Luhn (then masked text)."""
    digits = str(abs(value)) if abs(value) < 10**PAN_MAX_DIGITS else ""
    if PAN_MIN_DIGITS <= len(digits) <= PAN_MAX_DIGITS and luhn_valid(digits):
        return mask_pans(str(value))
    return value
