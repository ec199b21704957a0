"""The per-element rules of the type table: one source value -> its wire value, or the short reason the type
rejects it. They are the reference: a vectorised fast path only takes rows it is sure of, every other row
comes here, so reasons always come from one place.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import math
import re
import uuid
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import numpy as np
import pandas as pd

from contentstack_assets.engine.convert.iso8601 import OutOfRange, format_fields, parse_iso, utc_fields
from contentstack_assets.wire import INVALID_UID, MAX_SAFE_INTEGER, MAX_UID_LENGTH, MISSING_UID


def shorten(value: object, limit: int = 40) -> str:
    """A repr-ish rendering of ``value`` for reasons and logs: text quoted, control characters
    escaped, at most ``limit`` characters (cut with "…")."""
    limit = max(int(limit), 2)
    try:
        if isinstance(value, str):
            text = repr(str(value[: limit + 1]))
            if len(value) > limit:
                text = text[: limit - 1] + "…"
        elif isinstance(value, _BYTES):
            text = repr(bytes(value[: limit + 1]))
        elif isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 1000:
            digits = int(value.bit_length() * math.log10(2)) + 1
            text = f"<{'-' if value < 0 else ''}integer of about {digits} digits>"
        else:
            text = str(value)
            if not text.isprintable():
                text = "".join(
                    c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text
                )
    except Exception:  # a broken __str__ / __repr__ must not break a sync
        text = f"<{type(value).__name__}>"
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return text


# --------------------------------------------------------------------------------------------------
# shared text grammar

# Numeric text: plain ASCII, optional sign, digits, optional fraction, optional exponent.
NUMERIC_RX = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_NUMERIC_PARTS_RX = re.compile(r"[+-]?([0-9.]+)[eE]([+-]?[0-9]+)")  # mantissa, exponent
_INT_DIGITS_RX = re.compile(r"[+-]?[0-9]+")
BOOL_TEXT = {
    "true": True,
    "t": True,
    "yes": True,
    "1": True,
    "false": False,
    "f": False,
    "no": False,
    "0": False,
}

_BYTES = (bytes, bytearray, memoryview)
_INTS = (int, np.integer)  # check bool first: bool is an int
_BOOLS = (bool, np.bool_)
_FLOATS = (float, np.floating)
_NUMBERS = (int, np.integer, float, np.floating)
NANLIKE = (float, np.floating, Decimal)


def _is_nanlike(v: object) -> bool:
    """A NaN-valued float or Decimal (not a null: a value that is not a number)."""
    if isinstance(v, Decimal):
        return v.is_nan()
    if isinstance(v, _FLOATS):
        return bool(v != v)
    return False


def elem_isna(v: object) -> bool:
    if v is None or v is pd.NA or v is pd.NaT:
        return True
    if isinstance(v, (np.datetime64, np.timedelta64)):
        return bool(np.isnat(v))
    return _is_nanlike(v)


# --------------------------------------------------------------------------------------------------
# per-element rules (the reference): value -> (wire value, None) | (None, reason) | (None, None) = null

Result = tuple[Any, str | None]


def _one_string(v: object) -> Result:
    if isinstance(v, str):
        try:
            v.encode("utf-8")
        except UnicodeEncodeError:
            return None, f"{shorten(v)} is not valid Unicode text"
        return (v if type(v) is str else str(v)), None
    if isinstance(v, _BOOLS):
        return ("true" if v else "false"), None
    if isinstance(v, _INTS):
        try:
            return str(int(v)), None
        except ValueError:  # more digits than int -> str allows
            return None, f"{shorten(v)} is out of range"
    if isinstance(v, _FLOATS):
        if not math.isfinite(v):
            return None, f"{shorten(v)} is not a finite number"
        return repr(float(v)), None
    if isinstance(v, Decimal):
        if not v.is_finite():
            return None, f"{shorten(v)} is not a finite number"
        return str(v), None
    if isinstance(v, dt.datetime) and v.utcoffset():
        # an aware timestamp comes in the connection's time zone: as UTC its text does not change with it
        with contextlib.suppress(OverflowError, ValueError):  # the UTC instant is outside years 1-9999
            v = v.astimezone(dt.UTC)
    if isinstance(v, dt.date | dt.time):
        return v.isoformat(), None
    if isinstance(v, np.datetime64):
        try:
            return pd.Timestamp(v).isoformat(), None
        except (ValueError, OverflowError):
            return str(np.datetime_as_string(v)), None
    if isinstance(v, uuid.UUID):
        return str(v), None
    if isinstance(v, _BYTES):
        return None, "bytes are not text"
    return None, f"{shorten(v)} is not text"


def _float_of_text(v: str) -> float | None:
    t = v.strip()
    if NUMERIC_RX.fullmatch(t) is None:
        return None
    return float(t)


def _one_number(v: object) -> Result:
    # an integral int, decimal or plain text above 2^53 is rejected as `integer` does: a double may not hold
    # it; a float is a double already, and other values are rounded to the nearest double
    if isinstance(v, _BOOLS):
        return None, f"{shorten(v)} is not a number"
    if isinstance(v, _INTS):
        try:
            x = float(v)
        except OverflowError:
            return None, f"{shorten(v)} is out of range"
        if abs(int(v)) > MAX_SAFE_INTEGER:
            return None, f"{shorten(v)} has a magnitude above 2^53"
        return x, None
    if isinstance(v, _FLOATS):
        x = float(v)
        if not math.isfinite(x):
            return None, f"{shorten(v)} is not a finite number"
        return x, None
    if isinstance(v, Decimal):
        if not v.is_finite():
            return None, f"{shorten(v)} is not a finite number"
        x = float(v)
        if not math.isfinite(x):
            return None, f"{shorten(v)} is out of range"
        if abs(x) >= 2.0**53 and _integral_above_2_53(v):
            return None, f"{shorten(v)} has a magnitude above 2^53"
        return x, None
    if isinstance(v, str):
        x = _float_of_text(v)
        if x is None:
            return None, f"{shorten(v)} is not a number"
        if not math.isfinite(x):
            return None, f"{shorten(v)} is out of range"
        text = v.strip()
        if abs(x) >= 2.0**53 and "e" not in text.lower() and _integral_above_2_53(Decimal(text)):
            return None, f"{shorten(v)} has a magnitude above 2^53"
        return x, None
    return None, f"{shorten(v)} is not a number"


def _integral_above_2_53(d: Decimal) -> bool:
    return d == d.to_integral_value() and d.copy_abs() > MAX_SAFE_INTEGER


def _integer_of_decimal(v: object, d: Decimal) -> Result:
    if not d.is_finite():
        return None, f"{shorten(v)} is not a finite number"
    _, digits, exp = d.as_tuple()
    assert isinstance(exp, int)
    if exp < 0 and any(digits[exp:]):
        return None, f"{shorten(v)} is not an integer"
    if d.copy_abs() > MAX_SAFE_INTEGER:
        return None, f"{shorten(v)} has a magnitude above 2^53"
    return int(d), None


def _one_integer(v: object) -> Result:
    if isinstance(v, _BOOLS):
        return None, f"{shorten(v)} is not an integer"
    if isinstance(v, _INTS):
        i = int(v)
        if abs(i) > MAX_SAFE_INTEGER:
            return None, f"{shorten(v)} has a magnitude above 2^53"
        return i, None
    if isinstance(v, _FLOATS):
        x = float(v)
        if not math.isfinite(x):
            return None, f"{shorten(v)} is not a finite number"
        if not x.is_integer():
            return None, f"{shorten(v)} is not an integer"
        if abs(x) > MAX_SAFE_INTEGER:
            return None, f"{shorten(v)} has a magnitude above 2^53"
        return int(x), None
    if isinstance(v, Decimal):
        return _integer_of_decimal(v, v)
    if isinstance(v, str):
        t = v.strip()
        if NUMERIC_RX.fullmatch(t) is None:
            return None, f"{shorten(v)} is not an integer"
        if _INT_DIGITS_RX.fullmatch(t) is not None and len(t) <= 17:
            i = int(t)
            if abs(i) > MAX_SAFE_INTEGER:
                return None, f"{shorten(v)} has a magnitude above 2^53"
            return i, None
        try:
            d = Decimal(t)
        except ArithmeticError:  # an exponent beyond what Decimal can hold
            m = _NUMERIC_PARTS_RX.fullmatch(t)
            assert m is not None
            if not m.group(1).strip("0."):
                return 0, None
            if m.group(2).startswith("-"):
                return None, f"{shorten(v)} is not an integer"
            return None, f"{shorten(v)} has a magnitude above 2^53"
        return _integer_of_decimal(v, d)
    return None, f"{shorten(v)} is not an integer"


def _one_boolean(v: object) -> Result:
    if isinstance(v, _BOOLS):
        return bool(v), None
    if isinstance(v, _NUMBERS):
        if v == 0:
            return False, None
        if v == 1:
            return True, None
        return None, f"{shorten(v)} is not a boolean"
    if isinstance(v, Decimal):
        if v.is_nan():
            return None, f"{shorten(v)} is not a boolean"
        if v == 0:
            return False, None
        if v == 1:
            return True, None
        return None, f"{shorten(v)} is not a boolean"
    if isinstance(v, str):
        t = v.strip().lower()
        if t == "":
            return None, None
        b = BOOL_TEXT.get(t)
        if b is None:
            return None, f"{shorten(v)} is not a boolean"
        return b, None
    return None, f"{shorten(v)} is not a boolean"


def _one_datetime(v: object) -> Result:
    try:
        if isinstance(v, str):
            f = parse_iso(v)
            if f is None:
                return None, f"{shorten(v)} is not an ISO-8601 datetime"
        else:
            f = utc_fields(v)
            if f is None:
                return None, f"{shorten(v)} is not a datetime"
    except OutOfRange:
        return None, f"{shorten(v)} is outside years 0001-9999 UTC"
    return format_fields(*f), None


def _one_date(v: object) -> Result:
    try:
        if isinstance(v, str):
            f = parse_iso(v)
            if f is None:
                return None, f"{shorten(v)} is not an ISO-8601 date"
        else:
            f = utc_fields(v)
            if f is None:
                return None, f"{shorten(v)} is not a date"
    except OutOfRange:
        return None, f"{shorten(v)} is outside years 0001-9999 UTC"
    return f"{f[0]:04d}-{f[1]:02d}-{f[2]:02d}", None


def one_uid(v: object) -> Result:
    if elem_isna(v):  # includes a float / Decimal NaN: a NULL that went through a float column
        return None, MISSING_UID
    if isinstance(v, str):
        text = str(v)
    elif isinstance(v, _BYTES):
        return None, INVALID_UID
    elif isinstance(v, _BOOLS):
        text = str(bool(v))
    elif isinstance(v, _INTS):
        try:
            text = str(int(v))
        except ValueError:
            return None, INVALID_UID
    elif isinstance(v, _FLOATS):
        x = float(v)
        if not math.isfinite(x):
            return None, INVALID_UID
        # an integer id column that held a NULL arrives as float64: 42.0 is uid "42"
        text = str(int(x)) if x.is_integer() else repr(x)
    else:
        try:
            text = str(v)
        except Exception:
            return None, INVALID_UID
    text = text.strip()
    if not text:
        return None, MISSING_UID
    if len(text) > MAX_UID_LENGTH or not (text.isascii() and text.isprintable()):
        return None, INVALID_UID
    return text, None


ELEMENT_RULES: dict[str, Callable[[object], Result]] = {
    "string": _one_string,
    "number": _one_number,
    "integer": _one_integer,
    "boolean": _one_boolean,
    "datetime": _one_datetime,
    "date": _one_date,
}
