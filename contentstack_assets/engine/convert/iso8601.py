"""ISO-8601 text in and out: the element parser, the fixed-width reader of whole columns that agrees with
it, and the writer of wire text from epoch seconds. Every wire date or datetime lies in years 0001-9999 UTC.
"""

from __future__ import annotations

import datetime as dt
import re

import numpy as np

# ISO-8601 date or date-time; "T"/"t" or a space between date and time; optional seconds and
# fraction (any number of digits, "." or ","); optional offset "Z", "+hh:mm", "+hhmm", "+hh".
_ISO_RX = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})"
    r"(?:[Tt ]([0-9]{2}):([0-9]{2})(?::([0-9]{2})(?:[.,][0-9]+)?)?"
    r"(?:([Zz])|([+-])([0-9]{2})(?::?([0-9]{2}))?)?)?"
)

_EPOCH = dt.datetime(1970, 1, 1)
EPOCH_ORDINAL = _EPOCH.toordinal()
_SECS_MIN = -62135596800  # 0001-01-01T00:00:00Z
_SECS_MAX = 253402300799  # 9999-12-31T23:59:59Z


class OutOfRange(Exception):
    """A date or time outside years 0001-9999 UTC."""


def format_fields(y: int, mo: int, d: int, h: int, mi: int, s: int) -> str:
    return f"{y:04d}-{mo:02d}-{d:02d}T{h:02d}:{mi:02d}:{s:02d}Z"


def utc_fields(v: object) -> tuple[int, int, int, int, int, int] | None:
    """UTC (year, month, day, hour, minute, second) of a datetime-like value (naive = UTC, fractional
    seconds truncated); None if ``v`` is not datetime-like; raises OutOfRange outside 0001-9999."""
    if isinstance(v, dt.datetime):  # includes pd.Timestamp
        try:
            off = v.utcoffset()
            if off:
                v = v.replace(tzinfo=None) - off
        except (OverflowError, ValueError) as exc:
            raise OutOfRange from exc
        f = (v.year, v.month, v.day, v.hour, v.minute, v.second)
    elif isinstance(v, dt.date):
        f = (v.year, v.month, v.day, 0, 0, 0)
    elif isinstance(v, np.datetime64):
        secs = int(v.astype("datetime64[s]").astype(np.int64))
        if not _SECS_MIN <= secs <= _SECS_MAX:
            raise OutOfRange
        u = _EPOCH + dt.timedelta(seconds=secs)
        f = (u.year, u.month, u.day, u.hour, u.minute, u.second)
    else:
        return None
    if not 1 <= f[0] <= 9999:
        raise OutOfRange
    return f


def parse_iso(text: str) -> tuple[int, int, int, int, int, int] | None:
    """UTC fields of ISO-8601 text; None if it is not ISO-8601; raises OutOfRange."""
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
            raise OutOfRange from exc
    return (t.year, t.month, t.day, t.hour, t.minute, t.second)


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


def format_seconds(secs: np.ndarray, width: int = 20) -> list[str]:
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


def in_range(secs: np.ndarray) -> np.ndarray:
    return (secs >= _SECS_MIN) & (secs <= _SECS_MAX)


# Text a database returns for its timestamps and dates has one shape per column: "2024-05-01",
# "2024-05-01 12:30:00", with "T", a fraction, "Z" or an offset. Each length is read as a matrix of bytes,
# one column per character, checked and converted by numpy; what does not fit the shape of its length (or is
# not ASCII) is left to the regular expression and the element rule.
_DAYS_BEFORE_MONTH = np.array([0, 0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334], dtype=np.int32)
_DAYS_IN_MONTH = np.array([0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31], dtype=np.int32)


def iso_bytes_seconds(text: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
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
    offset; the same values `parse_iso` gives, fractions truncated, offsets applied."""
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
    return good & in_range(seconds), seconds


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
