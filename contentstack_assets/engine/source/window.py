"""The time window a partitioned read covers, and how its bounds meet the partition column: a timestamp,
ISO text (SQLite's, compared as text) or epoch numbers (seconds or milliseconds, told apart by their size);
the same rules for a sensor's watermark and for the day a value names.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from decimal import Decimal

import numpy as np
import pandas as pd
import sqlalchemy as sa

from contentstack_assets.engine.source.errors import SourceError

# epoch seconds reach 10^11 only in the year 5138, milliseconds passed it in 1973; above 10^14 (milliseconds of
# 5138) they would be micro- or nanoseconds, which are refused
EPOCH_MILLISECONDS_FROM = 10**11
EPOCH_MILLISECONDS_BELOW = 10**14
_DIGITS_TEXT = re.compile(r"\s*[+-]?[0-9]+(?:\.[0-9]*)?\s*")
_DAY_TEXT = re.compile(r"\d{4}-\d{2}-\d{2}")


@dataclass(frozen=True)
class Window:
    """A half-open range of UTC time [start, end) on the partition column."""

    start: dt.datetime
    end: dt.datetime


def bound_time(
    moment: dt.datetime, epoch_scale: int | None, *, as_text: bool, zoned: bool
) -> dt.datetime | str | int:
    """A UTC instant as the partition column compares it.

    SQLite stores timestamps as text and compares text: '2024-01-05 00:00:00.000000' (SQLAlchemy's
    rendering of a datetime) sorts after '2024-01-05 00:00:00' and '2024-01-05', which would put a row
    at midnight into the day before. A day boundary is bound as the bare date, which sorts before every
    text of that day, whatever its separator or precision (`as_text`: SQLite's, or a column of text).
    Typed columns get a datetime, naive (UTC) for a naive column, aware for a timestamptz (`zoned`); a
    column of epoch numbers gets its epoch number.
    """
    utc = moment.astimezone(dt.UTC)
    if epoch_scale is not None:
        return int(utc.timestamp()) * epoch_scale
    if as_text:
        aligned = utc.time() == dt.time(0)
        return utc.strftime("%Y-%m-%d") if aligned else utc.strftime("%Y-%m-%d %H:%M:%S")
    return utc if zoned else utc.replace(tzinfo=None)


def typed_watermark(
    watermark: str | dt.datetime, epoch_scale: int | None, *, as_text: bool, zoned: bool
) -> str | dt.datetime | float:
    """A sensor's watermark (the max a probe returned, as text or datetime) as the partition column
    compares it: a number for epoch numbers, text for text, else a datetime (naive = UTC)."""
    if epoch_scale is not None:
        # the probe's max as text ('1709287204'), or an instant the range read returned
        if isinstance(watermark, str) and _DIGITS_TEXT.fullmatch(watermark):
            return float(watermark)
        try:
            moment = pd.Timestamp(watermark)
        except ValueError:  # a cursor from before the column held numbers: read from the epoch on
            return 0
        moment = moment.tz_localize(dt.UTC) if moment.tzinfo is None else moment
        return moment.timestamp() * epoch_scale
    if as_text:
        return watermark if isinstance(watermark, str) else watermark.isoformat(sep=" ")
    try:
        moment = pd.Timestamp(watermark).to_pydatetime()
    except ValueError:
        return watermark  # not a timestamp (a text column): compare as text
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)  # naive = UTC (contract)
    moment = moment.astimezone(dt.UTC)
    return moment if zoned else moment.replace(tzinfo=None)


def partition_sample(
    connection: sa.Connection, column: sa.ColumnElement, declared: sa.types.TypeEngine | None
) -> list | None:
    """Values of the partition column that tell whether it holds epoch numbers; None when none is needed.

    SQLite keeps each value's own type and sorts every number before every text, so its min and max tell
    numbers, text, or both; elsewhere a column has one type: a declared timestamp, date or text type
    needs no read (None), else one value says. None too when the column holds no value.
    """
    if connection.dialect.name == "sqlite":
        statement = sa.select(sa.func.min(column), sa.func.max(column))
    elif declared is not None and not isinstance(declared, (sa.Integer, sa.Numeric, sa.types.NullType)):
        return None
    else:
        statement = sa.select(column).limit(1)
    row = connection.execute(statement.where(column.is_not(None))).first()
    if row is None or row[0] is None:
        return None
    return list(row)


def epoch_scale(values: list, where: str) -> int | None:
    """1 for epoch seconds, 1000 for milliseconds, None for values that are no numbers. Numbers beside
    text, numbers stored as text, or numbers finer than milliseconds cannot be compared with a window: a
    SourceError beginning with `where` (the source and its column)."""
    numbers = [_is_number(value) for value in values]
    if any(numbers) and not all(numbers):
        raise SourceError(
            f"{where} holds both numbers ({values[numbers.index(True)]!r}) and text or other values "
            f"({values[numbers.index(False)]!r}); it must hold timestamps, ISO-8601 text or epoch numbers "
            "only, one kind"
        )
    if not any(numbers):
        if all(isinstance(value, str) and _DIGITS_TEXT.fullmatch(value) for value in values):
            raise SourceError(
                f"{where} holds numbers as text ({values[0]!r}): they would be compared with dates as "
                "text; store epoch numbers as numbers, or timestamps as ISO-8601 text"
            )
        return None
    largest = max(abs(value) for value in values)
    if largest >= EPOCH_MILLISECONDS_BELOW:
        raise SourceError(
            f"{where} holds epoch numbers up to {largest}: only epoch seconds or milliseconds are "
            "supported (convert micro- or nanoseconds in a `query:`)"
        )
    return 1000 if largest >= EPOCH_MILLISECONDS_FROM else 1


def epoch_time(value: object, epoch_scale: int | None) -> object:
    """A value of an epoch partition column as the UTC instant it stands for (others as they are)."""
    if epoch_scale is None or not _is_number(value):
        return value
    return dt.datetime.fromtimestamp(float(value) / epoch_scale, dt.UTC)


def day_key(value: object, epoch_scale: int | None) -> str | None:
    """A day expression's value as a partition key (`YYYY-MM-DD`); None for what names no day."""
    if epoch_scale is not None and _is_number(value):
        return (dt.date(1970, 1, 1) + dt.timedelta(days=int(value))).isoformat()
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).date().isoformat() if value.tzinfo else value.date().isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    text = str(value)
    if not _DAY_TEXT.fullmatch(text):
        return None
    try:  # MySQL's zero date '0000-00-00' (or '2024-02-00') names no day: no window reads its rows
        return dt.date.fromisoformat(text).isoformat()
    except ValueError:
        return None


def days_of(values: pd.Series) -> pd.Series:
    """The UTC day (`YYYY-MM-DD`) each value of a partition column falls in, None where it names none: an
    instant's UTC day (naive = UTC), an epoch number's (seconds or milliseconds, as the window tells them),
    the date that ISO text begins with (the window compares text as text). Vectorized for a typed column
    and for text; other values one by one."""
    if pd.api.types.is_datetime64_any_dtype(values):
        return _day_keys(values.dt.tz_convert("UTC") if values.dt.tz is not None else values)
    if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
        largest = values.abs().max()
        scale = 1000 if largest == largest and largest >= EPOCH_MILLISECONDS_FROM else 1
        return _day_keys(pd.to_datetime(values / scale, unit="s", utc=True, errors="coerce"))
    days = pd.Series(None, index=values.index, dtype=object)
    is_text = values.map(lambda value: isinstance(value, str)).to_numpy(dtype=bool)
    if is_text.any():
        text = values[is_text].str.strip()
        days[is_text] = text.str.slice(0, 10).where(text.str.match(_DAY_TEXT.pattern), None)
    others = values[~is_text]
    if len(others):
        numbers = [value for value in others if _is_number(value) and value == value]
        scale = 1000 if numbers and max(abs(value) for value in numbers) >= EPOCH_MILLISECONDS_FROM else 1
        days[~is_text] = [_day_of(value, scale) for value in others]
    return days


def _day_keys(instants: pd.Series) -> pd.Series:
    """UTC instants (naive = UTC) as day keys, None for NaT; formatted once per distinct day."""
    days = instants.dt.normalize()
    keys = {day: day.strftime("%Y-%m-%d") for day in days.dropna().unique()}
    return days.map(keys).astype(object).where(days.notna(), None)


def _day_of(value: object, scale: int) -> str | None:
    if value is None or value is pd.NaT or (isinstance(value, float) and value != value):
        return None
    if _is_number(value):
        try:
            return dt.datetime.fromtimestamp(float(value) / scale, dt.UTC).date().isoformat()
        except (OverflowError, OSError, ValueError):
            return None
    if isinstance(value, dt.datetime):  # pandas' Timestamp too
        return (value.astimezone(dt.UTC) if value.tzinfo else value).date().isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    return None


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float, Decimal, np.integer, np.floating)) and not isinstance(value, bool)
