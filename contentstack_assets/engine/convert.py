"""Conversion of source column values to Personalize wire values.

Pure functions, no Dagster. Implements the type table of the contract (section 2), the user-uid rule
(section 3) and the value fine points (section 7):

- ``convert_column(values, type_name)`` turns one source column into the values that go on the wire for
  one attribute type, with a short reason for every value the type cannot take;
- ``convert_uids(values)`` turns the match column into user uids, or "missing user uid" /
  "invalid user uid";
- ``shorten(value)`` renders a value for a reason or a log line.

Every type has an exact per-element rule (``_ONE[type]``, the reference) and vectorised fast paths keyed
on the Series dtype and on ``pd.api.types.infer_dtype``. A fast path only ever produces values for rows it
is sure of; every other row (odd values, all rejections) goes through the per-element rule, so the
two agree by construction and reasons always come from one place.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import math
import re
import uuid
import warnings
from collections.abc import Callable
from decimal import Decimal
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

__all__ = [
    "ATTRIBUTE_TYPES",
    "WIRE_DTYPES",
    "Converted",
    "convert_column",
    "convert_uids",
    "shorten",
]

ATTRIBUTE_TYPES = ("string", "number", "integer", "boolean", "datetime", "date")
WIRE_DTYPES: dict[str, Any] = {
    "string": object,
    "number": "float64",
    "integer": "Int64",
    "boolean": "boolean",
    "datetime": object,
    "date": object,
}

MAX_UID_LENGTH = 256
MISSING_UID = "missing user uid"
INVALID_UID = "invalid user uid"


class Converted(NamedTuple):
    values: pd.Series  # same index as the input; dtype WIRE_DTYPES[type]; null where input null or rejected
    errors: pd.Series  # object dtype, same index; None where fine, else a short reason


# --------------------------------------------------------------------------------------------------
# shorten


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
_NUMERIC_RX = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_NUMERIC_PARTS_RX = re.compile(r"[+-]?([0-9.]+)[eE]([+-]?[0-9]+)")  # mantissa, exponent
_INT_DIGITS_RX = re.compile(r"[+-]?[0-9]+")
_SMALL_INT_RX = re.compile(r"[+-]?[0-9]{1,15}")  # |x| < 10^15 < 2^53
# ISO-8601 date or date-time; "T"/"t" or a space between date and time; optional seconds and
# fraction (any number of digits, "." or ","); optional offset "Z", "+hh:mm", "+hhmm", "+hh".
_ISO_RX = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})"
    r"(?:[Tt ]([0-9]{2}):([0-9]{2})(?::([0-9]{2})(?:[.,][0-9]+)?)?"
    r"(?:([Zz])|([+-])([0-9]{2})(?::?([0-9]{2}))?)?)?"
)
# The subset of ISO text the vectorised path hands to pandas' ISO-8601 parser.
_ISO_FAST_RX = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}(?:[T ][0-9]{2}:[0-9]{2}(?::[0-9]{2}(?:\.[0-9]{1,9})?)?"
    r"(?:Z|[+-][0-9]{2}(?::?[0-9]{2})?)?)?"
)

_TWO53 = 2**53
_EPOCH = dt.datetime(1970, 1, 1)
_EPOCH_ORDINAL = _EPOCH.toordinal()
_SECS_MIN = -62135596800  # 0001-01-01T00:00:00Z
_SECS_MAX = 253402300799  # 9999-12-31T23:59:59Z
_BOOL_TEXT = {
    "true": True,
    "t": True,
    "yes": True,
    "1": True,
    "false": False,
    "f": False,
    "no": False,
    "0": False,
}
# the spellings a fast path maps without trimming or lower-casing (the element rule takes the rest)
_BOOL_TEXT_CASES = {form: b for k, b in _BOOL_TEXT.items() for form in (k, k.upper(), k.capitalize())}

_BYTES = (bytes, bytearray, memoryview)
_INTS = (int, np.integer)  # check bool first: bool is an int
_BOOLS = (bool, np.bool_)
_FLOATS = (float, np.floating)
_NUMBERS = (int, np.integer, float, np.floating)
_NANLIKE = (float, np.floating, Decimal)


class _OutOfRange(Exception):
    pass


def _is_nanlike(v: object) -> bool:
    """A NaN-valued float or Decimal (not a null: a value that is not a number)."""
    if isinstance(v, Decimal):
        return v.is_nan()
    if isinstance(v, _FLOATS):
        return bool(v != v)
    return False


def _elem_isna(v: object) -> bool:
    if v is None or v is pd.NA or v is pd.NaT:
        return True
    if isinstance(v, (np.datetime64, np.timedelta64)):
        return bool(np.isnat(v))
    return _is_nanlike(v)


def _fmt_fields(y: int, mo: int, d: int, h: int, mi: int, s: int) -> str:
    return f"{y:04d}-{mo:02d}-{d:02d}T{h:02d}:{mi:02d}:{s:02d}Z"


def _utc_fields(v: object) -> tuple[int, int, int, int, int, int] | None:
    """UTC (year, month, day, hour, minute, second) of a datetime-like value (naive = UTC, fractional
    seconds truncated); None if ``v`` is not datetime-like; raises _OutOfRange outside 0001-9999."""
    if isinstance(v, dt.datetime):  # includes pd.Timestamp
        try:
            off = v.utcoffset()
            if off:
                v = v.replace(tzinfo=None) - off
        except (OverflowError, ValueError) as exc:
            raise _OutOfRange from exc
        f = (v.year, v.month, v.day, v.hour, v.minute, v.second)
    elif isinstance(v, dt.date):
        f = (v.year, v.month, v.day, 0, 0, 0)
    elif isinstance(v, np.datetime64):
        secs = int(v.astype("datetime64[s]").astype(np.int64))
        if not _SECS_MIN <= secs <= _SECS_MAX:
            raise _OutOfRange
        u = _EPOCH + dt.timedelta(seconds=secs)
        f = (u.year, u.month, u.day, u.hour, u.minute, u.second)
    else:
        return None
    if not 1 <= f[0] <= 9999:
        raise _OutOfRange
    return f


def _parse_iso(text: str) -> tuple[int, int, int, int, int, int] | None:
    """UTC fields of ISO-8601 text; None if it is not ISO-8601; raises _OutOfRange."""
    m = _ISO_RX.fullmatch(text.strip())
    if m is None:
        return None
    y, mo, d, hh, mi, ss, _z, sign, oh, om = m.groups()
    try:
        t = dt.datetime(int(y), int(mo), int(d), int(hh or 0), int(mi or 0), int(ss or 0))
    except ValueError:
        return None
    if sign is not None:
        oh_i, om_i = int(oh), int(om or 0)
        if oh_i > 23 or om_i > 59:
            return None
        off = dt.timedelta(hours=oh_i, minutes=om_i)
        try:
            t = t - off if sign == "+" else t + off
        except OverflowError as exc:
            raise _OutOfRange from exc
    return (t.year, t.month, t.day, t.hour, t.minute, t.second)


# --------------------------------------------------------------------------------------------------
# per-element rules (the reference): value -> (wire value, None) | (None, reason) | (None, None) = null

_Result = tuple[Any, str | None]


def _one_string(v: object) -> _Result:
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
    if _NUMERIC_RX.fullmatch(t) is None:
        return None
    return float(t)


def _one_number(v: object) -> _Result:
    # an integral int, decimal or plain text above 2^53 is rejected as `integer` does: a double may not hold
    # it; a float is a double already, and other values are rounded to the nearest double
    if isinstance(v, _BOOLS):
        return None, f"{shorten(v)} is not a number"
    if isinstance(v, _INTS):
        try:
            x = float(v)
        except OverflowError:
            return None, f"{shorten(v)} is out of range"
        if abs(int(v)) > _TWO53:
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
    return d == d.to_integral_value() and d.copy_abs() > _TWO53


def _integer_of_decimal(v: object, d: Decimal) -> _Result:
    if not d.is_finite():
        return None, f"{shorten(v)} is not a finite number"
    _, digits, exp = d.as_tuple()
    assert isinstance(exp, int)
    if exp < 0 and any(digits[exp:]):
        return None, f"{shorten(v)} is not an integer"
    if d.copy_abs() > _TWO53:
        return None, f"{shorten(v)} has a magnitude above 2^53"
    return int(d), None


def _one_integer(v: object) -> _Result:
    if isinstance(v, _BOOLS):
        return None, f"{shorten(v)} is not an integer"
    if isinstance(v, _INTS):
        i = int(v)
        if abs(i) > _TWO53:
            return None, f"{shorten(v)} has a magnitude above 2^53"
        return i, None
    if isinstance(v, _FLOATS):
        x = float(v)
        if not math.isfinite(x):
            return None, f"{shorten(v)} is not a finite number"
        if not x.is_integer():
            return None, f"{shorten(v)} is not an integer"
        if abs(x) > _TWO53:
            return None, f"{shorten(v)} has a magnitude above 2^53"
        return int(x), None
    if isinstance(v, Decimal):
        return _integer_of_decimal(v, v)
    if isinstance(v, str):
        t = v.strip()
        if _NUMERIC_RX.fullmatch(t) is None:
            return None, f"{shorten(v)} is not an integer"
        if _INT_DIGITS_RX.fullmatch(t) is not None and len(t) <= 17:
            i = int(t)
            if abs(i) > _TWO53:
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


def _one_boolean(v: object) -> _Result:
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
        b = _BOOL_TEXT.get(t)
        if b is None:
            return None, f"{shorten(v)} is not a boolean"
        return b, None
    return None, f"{shorten(v)} is not a boolean"


def _one_datetime(v: object) -> _Result:
    try:
        if isinstance(v, str):
            f = _parse_iso(v)
            if f is None:
                return None, f"{shorten(v)} is not an ISO-8601 datetime"
        else:
            f = _utc_fields(v)
            if f is None:
                return None, f"{shorten(v)} is not a datetime"
    except _OutOfRange:
        return None, f"{shorten(v)} is outside years 0001-9999 UTC"
    return _fmt_fields(*f), None


def _one_date(v: object) -> _Result:
    try:
        if isinstance(v, str):
            f = _parse_iso(v)
            if f is None:
                return None, f"{shorten(v)} is not an ISO-8601 date"
        else:
            f = _utc_fields(v)
            if f is None:
                return None, f"{shorten(v)} is not a date"
    except _OutOfRange:
        return None, f"{shorten(v)} is outside years 0001-9999 UTC"
    return f"{f[0]:04d}-{f[1]:02d}-{f[2]:02d}", None


def _one_uid(v: object) -> _Result:
    if _elem_isna(v):  # includes a float / Decimal NaN: a NULL that went through a float column
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


_ONE: dict[str, Callable[[object], _Result]] = {
    "string": _one_string,
    "number": _one_number,
    "integer": _one_integer,
    "boolean": _one_boolean,
    "datetime": _one_datetime,
    "date": _one_date,
}


# --------------------------------------------------------------------------------------------------
# vectorised helpers


def _civil_from_days(days: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Proleptic Gregorian (year, month, day) of days since 1970-01-01 (H. Hinnant's algorithm), in int32:
    years 0001-9999 are within +-3.7 million days."""
    z = days.astype(np.int32) + 719468
    era = np.floor_divide(z, 146097)
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    d = doy - (153 * mp + 2) // 5 + 1
    m = np.where(mp < 10, mp + 3, mp - 9)
    y = yoe + era * 400 + (m <= 2)
    return y, m, d


def _format_seconds(secs: np.ndarray, width: int = 20) -> list[str]:
    """'YYYY-MM-DDTHH:MM:SSZ' of epoch seconds already checked to be in range; the first ``width``
    characters of it: 10 for the date, 19 for the naive ISO text. Written digit by digit into one byte
    matrix (a row per value and a "\n"), decoded and split once."""
    secs = np.asarray(secs, dtype=np.int64)
    n = len(secs)
    if n == 0:
        return []
    days, seconds_of_day = np.divmod(secs, 86400)
    year, month, day = _civil_from_days(days)
    chars = np.empty((n, width + 1), dtype=np.uint8)

    def put(column: int, value: np.ndarray, digits: int) -> None:
        for position in range(column + digits - 1, column - 1, -1):
            value, digit = np.divmod(value, 10)
            chars[:, position] = digit
        chars[:, column : column + digits] += 48  # "0"

    put(0, year, 4)
    chars[:, 4] = chars[:, 7] = ord("-")
    put(5, month, 2)
    put(8, day, 2)
    if width > 10:
        hour, rest = np.divmod(seconds_of_day.astype(np.int32), 3600)
        minute, second = np.divmod(rest, 60)
        chars[:, 10] = ord("T")
        chars[:, 13] = chars[:, 16] = ord(":")
        put(11, hour, 2)
        put(14, minute, 2)
        put(17, second, 2)
    if width > 19:
        chars[:, 19] = ord("Z")
    chars[:, width] = ord("\n")
    return chars.tobytes()[:-1].decode("ascii").split("\n")


def _datetime64_seconds(a: np.ndarray) -> np.ndarray:
    """Epoch seconds (floored) of a naive datetime64 array; NaT -> int64 min (out of range)."""
    return a.astype("datetime64[s]").view(np.int64)


def _series_seconds(values: pd.Series) -> np.ndarray:
    s = values
    if isinstance(s.dtype, pd.DatetimeTZDtype):
        s = s.dt.tz_convert("UTC").dt.tz_localize(None)
    return _datetime64_seconds(s.to_numpy())


def _index_seconds(idx: pd.DatetimeIndex) -> np.ndarray:
    if idx.tz is not None:
        idx = idx.tz_convert("UTC").tz_localize(None)
    return _datetime64_seconds(idx.to_numpy())


def _in_range(secs: np.ndarray) -> np.ndarray:
    return (secs >= _SECS_MIN) & (secs <= _SECS_MAX)


def _all_type(sub: np.ndarray, cls: type) -> bool:
    return set(map(type, sub.tolist())) <= {cls}


def _gate(sub: np.ndarray, rx: re.Pattern[str]) -> np.ndarray:
    match = rx.fullmatch
    return np.fromiter((match(v) is not None for v in sub.tolist()), dtype=bool, count=len(sub))


class _Ctx:
    """What a fast path sees: the column, its candidate rows (non-null, not NaN-like) and, for an
    object column, the candidates' values and their inferred kind."""

    def __init__(self, values: pd.Series, cand: np.ndarray, arr: np.ndarray | None) -> None:
        self.values = values
        self.cand = cand
        self.dtype = values.dtype
        self.is_object = arr is not None
        self.sub: np.ndarray | None = arr[cand] if arr is not None else None
        self.kind = pd.api.types.infer_dtype(self.sub, skipna=False) if self.sub is not None else ""

    def typed(self, dtype: Any, na_value: Any) -> np.ndarray:
        return self.values.to_numpy(dtype=dtype, na_value=na_value)[self.cand]


# A fast path returns (mask over the candidate rows it handled, their wire values) or None.
_Fast = tuple[np.ndarray, Any] | None


def _is_str_dtype(dtype: Any) -> bool:
    return isinstance(dtype, pd.StringDtype)


def _sub_as_float(ctx: _Ctx) -> np.ndarray | None:
    """The candidates as float64 when the column holds plain numbers (None otherwise)."""
    dtype = ctx.dtype
    if ctx.is_object:
        assert ctx.sub is not None
        if ctx.kind in ("floating", "integer", "mixed-integer-float", "decimal"):
            try:
                with np.errstate(all="ignore"):
                    return ctx.sub.astype(np.float64)
            except (OverflowError, ValueError, TypeError, ArithmeticError):
                return None
        return None
    if pd.api.types.is_float_dtype(dtype) or (
        pd.api.types.is_integer_dtype(dtype) and not pd.api.types.is_bool_dtype(dtype)
    ):
        return ctx.typed(np.float64, np.nan)
    return None


def _sub_as_int(ctx: _Ctx) -> np.ndarray | None:
    """The candidates as int64 when the column holds ints that fit (None otherwise)."""
    if ctx.is_object:
        assert ctx.sub is not None
        if ctx.kind == "integer":
            try:
                return ctx.sub.astype(np.int64)
            except (OverflowError, ValueError, TypeError):
                return None
        return None
    dtype = ctx.dtype
    if pd.api.types.is_integer_dtype(dtype) and not pd.api.types.is_bool_dtype(dtype):
        if pd.api.types.is_unsigned_integer_dtype(dtype):
            a = ctx.typed(np.uint64, 0)
            if len(a) and a.max() > np.iinfo(np.int64).max:
                return None
            return a.astype(np.int64)
        return ctx.typed(np.int64, 0)
    return None


def _sub_text(ctx: _Ctx) -> np.ndarray | None:
    if ctx.is_object:
        return ctx.sub if ctx.kind == "string" else None
    if _is_str_dtype(ctx.dtype):
        return ctx.values.to_numpy(dtype=object)[ctx.cand]
    return None


def _iso_text_seconds(text: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(handled mask, epoch seconds, text lengths) of ISO text: the common fixed-width shapes read as bytes
    (`_iso_bytes_seconds`), the rest of the strict subset through pandas' ISO-8601 parser."""
    ok, secs, lengths = _iso_bytes_seconds(text)
    rest = np.flatnonzero(~ok)
    if not len(rest):
        return ok, secs, lengths
    sub = text[rest]
    gate = _gate(sub, _ISO_FAST_RX)
    if gate.any():
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                parsed = pd.to_datetime(sub[gate], format="ISO8601", utc=True, errors="coerce")
            s = _index_seconds(pd.DatetimeIndex(parsed))
        except Exception:
            return ok, secs, lengths
        good = _in_range(s)
        pos = rest[np.flatnonzero(gate)[good]]
        ok[pos] = True
        secs[pos] = s[good]
    return ok, secs, lengths


# Text a database returns for its timestamps and dates has one shape per column: "2024-05-01",
# "2024-05-01 12:30:00", with "T", a fraction, "Z" or an offset. Each length is read as a matrix of bytes,
# one column per character, checked and converted by numpy; what does not fit the shape of its length (or is
# not ASCII) is left to the regular expression and the element rule.
_DAYS_BEFORE_MONTH = np.array([0, 0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334], dtype=np.int32)
_DAYS_IN_MONTH = np.array([0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31], dtype=np.int32)


def _iso_bytes_seconds(text: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(read mask, epoch seconds, lengths) of the texts of the fixed-width shapes `_iso_shape` reads.

    The texts are joined by newlines into one ASCII buffer: the newlines give every length, and when all
    have one length L the buffer is already a matrix of rows of L + 1 bytes."""
    n = len(text)
    ok = np.zeros(n, dtype=bool)
    secs = np.zeros(n, dtype=np.int64)
    values = text.tolist()
    try:
        buffer = np.frombuffer(("\n".join(values) + "\n").encode("ascii"), dtype=np.uint8)
    except UnicodeEncodeError:  # some text is not ASCII: no shape here takes it, nor its neighbours
        return ok, secs, np.fromiter(map(len, values), dtype=np.int64, count=n)
    ends = np.flatnonzero(buffer == 10)
    if len(ends) != n:  # a text holds a newline itself
        return ok, secs, np.fromiter(map(len, values), dtype=np.int64, count=n)
    starts = np.concatenate(([0], ends[:-1] + 1))
    lengths = ends - starts
    shapes = np.unique(lengths)
    for length in shapes.tolist():
        if length != 10 and length < 19:
            continue
        if len(shapes) == 1:
            rows = np.arange(n)
            chars = buffer.reshape(n, length + 1)[:, :length]
        else:
            rows = np.flatnonzero(lengths == length)
            chars = buffer[starts[rows, None] + np.arange(length)]
        good, seconds = _iso_shape(chars)
        ok[rows[good]] = True
        secs[rows[good]] = seconds[good]
    return ok, secs, lengths


def _number(chars: np.ndarray, start: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """(all digits, their decimal value) of the characters start..start+width of each row, one character
    column at a time (a column of a byte matrix is a cheap view; a fancy selection of several is not)."""
    ok = np.ones(len(chars), dtype=bool)
    value = np.zeros(len(chars), dtype=np.int32)
    for column in range(start, start + width):
        digit = chars[:, column] - np.uint8(48)  # below "0" wraps around to above 9
        ok &= digit <= 9
        value = value * 10 + digit
    return ok, value


def _iso_shape(chars: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(rows this shape reads, epoch seconds) of rows of equal length: a date (10 characters), or a date and
    time to the second (19) followed by nothing, "Z", a fraction, an offset, or a fraction then "Z" or an
    offset; the same values `_parse_iso` gives, fractions truncated, offsets applied."""
    length = chars.shape[1]
    year_ok, year = _number(chars, 0, 4)
    month_ok, month = _number(chars, 5, 2)
    day_ok, day = _number(chars, 8, 2)
    good = year_ok & month_ok & day_ok & (chars[:, 4] == 45) & (chars[:, 7] == 45)  # "-"
    good &= (year >= 1) & (month >= 1) & (month <= 12) & (day >= 1)
    month = np.clip(month, 1, 12)
    leap = (year % 4 == 0) & ((year % 100 != 0) | (year % 400 == 0))
    good &= day <= _DAYS_IN_MONTH[month] + (leap & (month == 2))
    # days since 1970-01-01 of the proleptic Gregorian date
    prior = year - 1
    days = prior * 365 + prior // 4 - prior // 100 + prior // 400 + _DAYS_BEFORE_MONTH[month]
    days += (leap & (month > 2)) + day - 1 - 719162
    seconds = days.astype(np.int64) * 86400
    if length == 10:
        return good, seconds
    hour_ok, hour = _number(chars, 11, 2)
    minute_ok, minute = _number(chars, 14, 2)
    second_ok, second = _number(chars, 17, 2)
    separator = chars[:, 10]
    good &= hour_ok & minute_ok & second_ok
    good &= (separator == 84) | (separator == 116) | (separator == 32)  # "T", "t", " "
    good &= (chars[:, 13] == 58) & (chars[:, 16] == 58)  # ":"
    good &= (hour < 24) & (minute < 60) & (second < 60)
    seconds += hour * 3600 + minute * 60 + second
    if length > 19:
        tail_ok, offset = _iso_tail(chars[:, 19:])
        good &= tail_ok
        seconds -= offset
    return good & _in_range(seconds), seconds


def _iso_tail(tail: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(rows whose text after the seconds is one of the shapes, their UTC offset in seconds): a fraction
    (".", "," and digits) or none, then nothing, "Z"/"z", "+hh", "+hhmm" or "+hh:mm" (or "-")."""
    n, width = tail.shape
    good = np.zeros(n, dtype=bool)
    offset = np.zeros(n, dtype=np.int64)
    for zone in (0, 1, 3, 5, 6):  # the zone's width; the fraction takes the rest
        fraction = width - zone
        if fraction == 1 or fraction < 0:
            continue
        rows = np.ones(n, dtype=bool)
        if fraction:
            rows &= (tail[:, 0] == 46) | (tail[:, 0] == 44)  # "." or ","
            for column in range(1, fraction):
                rows &= tail[:, column] - np.uint8(48) <= 9
        if zone == 1:
            rows &= (tail[:, fraction] == 90) | (tail[:, fraction] == 122)  # "Z" or "z"
        elif zone:
            sign = tail[:, fraction]
            rows &= (sign == 43) | (sign == 45)  # "+" or "-"
            hours_ok, hours = _number(tail, fraction + 1, 2)
            rows &= hours_ok & (hours <= 23)
            minutes = 0
            if zone > 3:
                minutes_ok, minutes = _number(tail, fraction + zone - 2, 2)
                rows &= minutes_ok & (minutes <= 59)
            if zone == 6:
                rows &= tail[:, fraction + 3] == 58  # ":"
            offset = np.where(rows, np.where(sign == 43, 1, -1) * (hours * 3600 + minutes * 60), offset)
        good |= rows
    return good, offset


def _datetime_like_seconds(ctx: _Ctx) -> tuple[np.ndarray, np.ndarray, np.ndarray | None] | None:
    """(handled mask, epoch seconds, lengths of the text or None) for datetime64 columns, object columns
    of datetimes or dates, and ISO text columns."""
    dtype = ctx.dtype
    if not ctx.is_object:
        if pd.api.types.is_datetime64_any_dtype(dtype):
            s = _series_seconds(ctx.values)[ctx.cand]
            return _in_range(s), s, None
        text = _sub_text(ctx)
        return _iso_text_seconds(text) if text is not None else None
    sub = ctx.sub
    assert sub is not None
    if ctx.kind == "string":
        return _iso_text_seconds(sub)
    if ctx.kind == "date" and _all_type(sub, dt.date):
        ordinals = np.fromiter((v.toordinal() for v in sub.tolist()), dtype=np.int64, count=len(sub))
        s = (ordinals - _EPOCH_ORDINAL) * 86400
        return _in_range(s), s, None
    if ctx.kind == "datetime":
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                parsed = pd.to_datetime(sub, utc=True, errors="coerce")
            s = _index_seconds(pd.DatetimeIndex(parsed))
        except Exception:
            return None
        return _in_range(s), s, None
    return None


# --------------------------------------------------------------------------------------------------
# fast paths per type


def _fast_string(ctx: _Ctx) -> _Fast:
    dtype = ctx.dtype
    text = _sub_text(ctx)
    if text is not None:
        try:
            "".join(text.tolist()).encode("utf-8")
        except UnicodeEncodeError:  # some lone surrogate: let the element rule find it
            return None
        if ctx.is_object and not _all_type(text, str):  # np.str_ -> str
            return np.ones(len(text), dtype=bool), [str(v) for v in text.tolist()]
        return np.ones(len(text), dtype=bool), text
    if not ctx.is_object and pd.api.types.is_bool_dtype(dtype):
        b = ctx.typed(bool, False)
        return np.ones(len(b), dtype=bool), np.where(b, "true", "false").astype(object)
    ints = _sub_as_int(ctx)
    if ints is not None:
        return np.ones(len(ints), dtype=bool), [str(i) for i in ints.tolist()]
    if not ctx.is_object and dtype == np.float64:
        a = ctx.typed(np.float64, np.nan)
        ok = np.isfinite(a)
        return ok, [repr(x) for x in a[ok].tolist()]
    if not ctx.is_object and pd.api.types.is_datetime64_dtype(dtype):  # naive: Timestamp.isoformat()
        a = ctx.values.to_numpy()[ctx.cand]
        secs = _datetime64_seconds(a)
        ok = _in_range(secs) & (a == secs.view("datetime64[s]"))  # whole seconds: no fraction shown
        return ok, _format_seconds(secs[ok], width=19)
    return None


def _fast_number(ctx: _Ctx) -> _Fast:
    # from 2^53 up an int, a decimal or text may be an integer a double cannot hold: the element rule judges
    floats = (ctx.is_object and ctx.kind == "floating") or (
        not ctx.is_object and pd.api.types.is_float_dtype(ctx.dtype)
    )
    a = _sub_as_float(ctx)
    if a is not None:
        ok = np.isfinite(a) if floats else np.abs(a) < 2.0**53
        return ok, a[ok]
    text = _sub_text(ctx)
    if text is not None:
        gate = _gate(text, _NUMERIC_RX)
        a = np.full(len(text), np.nan)
        a[gate] = text[gate].astype(np.float64)
        ok = np.abs(a) < 2.0**53
        return ok, a[ok]
    return None


def _fast_integer(ctx: _Ctx) -> _Fast:
    ints = _sub_as_int(ctx)
    if ints is not None:
        ok = (ints >= -_TWO53) & (ints <= _TWO53)
        return ok, ints[ok]
    if (ctx.is_object and ctx.kind == "floating") or (
        not ctx.is_object and pd.api.types.is_float_dtype(ctx.dtype)
    ):
        a = _sub_as_float(ctx)
        if a is None:
            return None
        with np.errstate(invalid="ignore"):
            ok = np.isfinite(a) & (np.abs(a) <= _TWO53)
            ok &= a == np.trunc(a)
        return ok, a[ok].astype(np.int64)
    if ctx.is_object and ctx.kind == "decimal":
        assert ctx.sub is not None
        a = _sub_as_float(ctx)  # no NaN here: NaN-like values are not candidates
        if a is None:
            return None
        with np.errstate(invalid="ignore"):
            near = np.isfinite(a) & (np.abs(a) < 2.0**53) & (a == np.trunc(a))
        ints = a[near].astype(np.int64)
        # the float is only a guess: keep the rows whose Decimal is exactly that integer
        exact = np.fromiter(
            (d == i for d, i in zip(ctx.sub[near].tolist(), ints.tolist(), strict=True)),
            dtype=bool,
            count=len(ints),
        )
        ok = np.zeros(len(a), dtype=bool)
        ok[np.flatnonzero(near)[exact]] = True
        return ok, ints[exact]
    text = _sub_text(ctx)
    if text is not None:
        gate = _gate(text, _SMALL_INT_RX)
        return gate, text[gate].astype(np.int64)
    return None


def _fast_boolean(ctx: _Ctx) -> _Fast:
    dtype = ctx.dtype
    if (ctx.is_object and ctx.kind == "boolean") or (not ctx.is_object and pd.api.types.is_bool_dtype(dtype)):
        b = ctx.sub.astype(bool) if ctx.sub is not None else ctx.typed(bool, False)
        return np.ones(len(b), dtype=bool), b
    if ctx.is_object and ctx.kind == "decimal":
        return None
    a = _sub_as_float(ctx)
    if a is not None:
        ok = (a == 0) | (a == 1)
        return ok, a[ok] == 1
    text = _sub_text(ctx)
    if text is not None:
        get = _BOOL_TEXT_CASES.get
        mapped = [get(v) for v in text.tolist()]
        ok = np.fromiter((v is not None for v in mapped), dtype=bool, count=len(mapped))
        vals = np.array([v for v in mapped if v is not None], dtype=bool)
        return ok, vals
    return None


def _fast_datetime(ctx: _Ctx) -> _Fast:
    r = _datetime_like_seconds(ctx)
    if r is None:
        return None
    ok, secs, _ = r
    return ok, _format_seconds(secs[ok])


def _fast_date(ctx: _Ctx) -> _Fast:
    r = _datetime_like_seconds(ctx)
    if r is None:
        return None
    ok, secs, lengths = r
    if lengths is None:
        return ok, _format_seconds(secs[ok], width=10)
    # text of a date alone that reads as one is its own wire value ("2024-05-01"): no new string
    verbatim = (lengths == 10)[ok]
    text = _sub_text(ctx)[ok][verbatim]
    if not _all_type(text, str):  # a str subclass: made plain below
        verbatim[:] = False
    dates = np.empty(len(verbatim), dtype=object)
    dates[verbatim] = text if verbatim.any() else []
    dates[~verbatim] = _format_seconds(secs[ok][~verbatim], width=10)
    return ok, dates


_FAST: dict[str, Callable[[_Ctx], _Fast]] = {
    "string": _fast_string,
    "number": _fast_number,
    "integer": _fast_integer,
    "boolean": _fast_boolean,
    "datetime": _fast_datetime,
    "date": _fast_date,
}


def _fast_uid(ctx: _Ctx) -> _Fast:
    text = _sub_text(ctx)
    if text is not None:
        if ctx.is_object and not _all_type(text, str):  # np.str_ -> str, one by one
            return _uid_texts(text.tolist())
        plain = _plain_uids(text)
        if plain is None:
            return _uid_texts(text.tolist())
        ok = np.zeros(len(text), dtype=bool)
        vals = np.empty(len(text), dtype=object)
        ok[plain] = True
        vals[plain] = text[plain]  # already a uid as it is: the same string
        others = np.flatnonzero(~plain)
        if len(others):
            others_ok, others_vals = _uid_texts(text[others].tolist())
            ok[others[others_ok]] = True
            vals[others[others_ok]] = others_vals
        return ok, vals[ok]
    ints = _sub_as_int(ctx)
    if ints is not None:
        return np.ones(len(ints), dtype=bool), [str(i) for i in ints.tolist()]
    if not ctx.is_object and pd.api.types.is_float_dtype(ctx.dtype):  # an int id column with NULLs
        a = ctx.typed(np.float64, np.nan)
        with np.errstate(invalid="ignore"):
            ok = np.isfinite(a) & (np.abs(a) < 2.0**53) & (a == np.trunc(a))
        return ok, [str(i) for i in a[ok].astype(np.int64).tolist()]
    return None


def _uid_texts(texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(valid mask, the valid uids) of texts, one by one: trimmed, 1-256 printable ASCII characters."""
    out = []
    for v in texts:
        t = str(v).strip()
        out.append(t if 0 < len(t) <= MAX_UID_LENGTH and t.isascii() and t.isprintable() else None)
    vals = np.empty(len(out), dtype=object)
    vals[:] = out
    ok = np.not_equal(vals, None)
    return ok, vals[ok]


def _plain_uids(text: np.ndarray) -> np.ndarray | None:
    """Which texts are valid uids as they are (1-256 printable ASCII characters, no surrounding space),
    from one ASCII buffer of them all; None when the buffer cannot be built (some text is not ASCII or
    holds a newline): the caller goes one by one."""
    values = text.tolist()
    try:
        buffer = np.frombuffer(("\n".join(values) + "\n").encode("ascii"), dtype=np.uint8)
    except UnicodeEncodeError:
        return None
    ends = np.flatnonzero(buffer == 10)
    if len(ends) != len(values):
        return None
    starts = np.concatenate(([0], ends[:-1] + 1))
    lengths = ends - starts
    plain = (lengths > 0) & (lengths <= MAX_UID_LENGTH)
    nonempty = np.flatnonzero(plain)
    plain[nonempty] &= (buffer[starts[nonempty]] != 32) & (buffer[ends[nonempty] - 1] != 32)  # " "
    unprintable = np.flatnonzero(((buffer < 32) | (buffer > 126)) & (buffer != 10))
    plain[np.searchsorted(ends, unprintable)] = False  # the text each such character is in
    return plain


# --------------------------------------------------------------------------------------------------
# driver


def _null_masks(values: pd.Series) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """(null, nanlike, object array or None). In an object column None / pd.NA / pd.NaT are null and
    a float or Decimal NaN is a value (that no type takes); in a typed column every NA is null."""
    if values.dtype != object:
        null = np.asarray(values.isna().to_numpy(), dtype=bool)
        return null, np.zeros(len(values), dtype=bool), None
    arr = values.to_numpy()
    try:
        na = np.asarray(pd.isna(arr), dtype=bool).copy()
    except Exception:  # e.g. Decimal('sNaN') makes pandas' check raise
        na = np.fromiter((_elem_isna(v) for v in arr.tolist()), dtype=bool, count=len(arr))
    nanlike = np.zeros(len(arr), dtype=bool)
    idx = np.flatnonzero(na)
    if idx.size:
        fl = np.fromiter((isinstance(v, _NANLIKE) for v in arr[idx].tolist()), dtype=bool, count=idx.size)
        nanlike[idx[fl]] = True
        na[idx[fl]] = False
    return na, nanlike, arr


def _run(
    values: pd.Series,
    one: Callable[[object], _Result],
    fast: Callable[[_Ctx], _Fast] | None,
    storage: Any,
    null_error: str | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(storage array, valid mask, errors) for a column; ``fast`` may be None (element rule only)."""
    n = len(values)
    if storage is object:
        out = np.full(n, None, dtype=object)
    elif storage == np.float64:
        out = np.full(n, np.nan)
    else:
        out = np.zeros(n, dtype=storage)
    ok = np.zeros(n, dtype=bool)
    err = np.full(n, None, dtype=object)
    if n == 0:
        return out, ok, err
    null, nanlike, arr = _null_masks(values)
    if null_error is not None:
        err[null] = null_error
    todo = ~null
    cand = todo & ~nanlike
    if fast is not None and cand.any():
        res = fast(_Ctx(values, cand, arr))
        if res is not None:
            handled, vals = res
            pos = np.flatnonzero(cand)[handled]
            if len(pos):
                if storage is object and isinstance(vals, list):
                    tmp = np.empty(len(vals), dtype=object)
                    tmp[:] = vals
                    vals = tmp
                out[pos] = vals
                ok[pos] = True
                todo[pos] = False
    idx = np.flatnonzero(todo)
    if idx.size:
        rest = arr[idx] if arr is not None else values.iloc[idx].astype(object).to_numpy()
        for i, v in zip(idx.tolist(), rest.tolist(), strict=True):
            val, e = one(v)
            if e is not None:
                err[i] = e
            elif val is not None:
                out[i] = val
                ok[i] = True
    return out, ok, err


def _as_series(values: Any) -> pd.Series:
    if isinstance(values, pd.Series):
        return values
    return pd.Series(values, dtype=object)


def _wrap(type_name: str, values: pd.Series, out: np.ndarray, ok: np.ndarray, err: np.ndarray) -> Converted:
    index, name = values.index, values.name
    if type_name == "integer":
        result = pd.Series(pd.arrays.IntegerArray(out, ~ok), index=index, name=name, copy=False)
    elif type_name == "boolean":
        result = pd.Series(pd.arrays.BooleanArray(out, ~ok), index=index, name=name, copy=False)
    elif type_name == "number":
        result = pd.Series(out, index=index, name=name, dtype="float64", copy=False)
    else:
        result = pd.Series(out, index=index, name=name, dtype=object, copy=False)
    return Converted(result, pd.Series(err, index=index, name=name, dtype=object, copy=False))


_STORAGE: dict[str, Any] = {
    "string": object,
    "number": np.float64,
    "integer": np.int64,
    "boolean": bool,
    "datetime": object,
    "date": object,
}


def convert_column(values: pd.Series, type_name: str) -> Converted:
    """Convert one source column to the wire values of ``type_name`` (one of ATTRIBUTE_TYPES).

    Null inputs give null values and no error; a value the type cannot take gives a null value and a
    short reason (without the attribute name) in ``errors``."""
    if type_name not in ATTRIBUTE_TYPES:
        raise ValueError(
            f"unknown attribute type {type_name!r}; expected one of {', '.join(ATTRIBUTE_TYPES)}"
        )
    values = _as_series(values)
    out, ok, err = _run(values, _ONE[type_name], _FAST[type_name], _STORAGE[type_name])
    return _wrap(type_name, values, out, ok, err)


def convert_uids(values: pd.Series) -> Converted:
    """User uids: the value's text with surrounding whitespace trimmed; "missing user uid" for a null,
    empty or whitespace-only value; "invalid user uid" when longer than 256 characters or holding
    anything but printable ASCII. (Duplicates are the caller's business.)"""
    values = _as_series(values)
    out, ok, err = _run(values, _one_uid, _fast_uid, object, null_error=MISSING_UID)
    return _wrap("string", values, out, ok, err)


def _convert_column_slow(values: pd.Series, type_name: str) -> Converted:
    """The reference: ``convert_column`` with the element rule only (for tests)."""
    values = _as_series(values)
    out, ok, err = _run(values, _ONE[type_name], None, _STORAGE[type_name])
    return _wrap(type_name, values, out, ok, err)


def _convert_uids_slow(values: pd.Series) -> Converted:
    values = _as_series(values)
    out, ok, err = _run(values, _one_uid, None, object, null_error=MISSING_UID)
    return _wrap("string", values, out, ok, err)


if __name__ == "__main__":  # timing check: python -m contentstack_assets.engine.convert [rows]
    import sys
    import time

    rows = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    rng = np.random.default_rng(0)
    secs = rng.integers(0, 2_000_000_000, rows)
    stamps = pd.Series(pd.to_datetime(secs, unit="s"))
    cases: list[tuple[str, str, pd.Series]] = [
        ("string", "object str", pd.Series([f"plan-{i % 7}" for i in range(rows)], dtype=object)),
        ("string", "str dtype", pd.Series([f"plan-{i % 7}" for i in range(rows)], dtype="str")),
        ("number", "float64", pd.Series(rng.random(rows) * 1000)),
        ("number", "object float", pd.Series((rng.random(rows) * 1000).tolist(), dtype=object)),
        ("number", "object Decimal", pd.Series([Decimal(i) / 100 for i in range(rows)], dtype=object)),
        ("integer", "int64", pd.Series(rng.integers(0, 10**6, rows))),
        ("integer", "object int", pd.Series(rng.integers(0, 10**6, rows).tolist(), dtype=object)),
        ("integer", "float64 w/ NaN", pd.Series(np.where(rng.random(rows) < 0.1, np.nan, 3.0))),
        ("integer", "object Decimal", pd.Series([Decimal(i) for i in range(rows)], dtype=object)),
        ("boolean", "bool", pd.Series(rng.random(rows) < 0.5)),
        ("boolean", "object int 0/1", pd.Series(rng.integers(0, 2, rows).tolist(), dtype=object)),
        ("boolean", "object text", pd.Series(rng.choice(["true", "False", " yes "], rows), dtype=object)),
        ("datetime", "datetime64[s]", stamps.astype("datetime64[s]")),
        ("datetime", "datetime64 tz", stamps.dt.tz_localize("UTC").dt.tz_convert("Europe/Paris")),
        ("datetime", "object datetime", pd.Series(stamps.dt.to_pydatetime(), dtype=object)),
        ("datetime", "object ISO text", pd.Series(stamps.dt.strftime("%Y-%m-%d %H:%M:%S"), dtype=object)),
        (
            "datetime",
            "ISO text +02:00",
            pd.Series(stamps.dt.strftime("%Y-%m-%dT%H:%M:%S+02:00"), dtype=object),
        ),
        ("date", "object date", pd.Series([d.date() for d in stamps.dt.to_pydatetime()], dtype=object)),
        ("date", "datetime64[s]", stamps.astype("datetime64[s]")),
        ("date", "object ISO text", pd.Series(stamps.dt.strftime("%Y-%m-%d"), dtype=object)),
    ]
    for type_name, label, column in cases:
        t0 = time.perf_counter()
        res = convert_column(column, type_name)
        took = time.perf_counter() - t0
        bad = int(res.errors.notna().sum())
        print(f"{type_name:9s} {label:18s} {took:7.3f}s  rejected={bad}")
    uids = pd.Series([f"user-{i}" for i in range(rows)], dtype=object)
    t0 = time.perf_counter()
    convert_uids(uids)
    print(f"{'uids':9s} {'object str':18s} {time.perf_counter() - t0:7.3f}s")
