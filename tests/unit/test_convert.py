"""The value conversion: the type table, the user-uid rule, the fine
points, the fast paths agreeing with the element rule, and properties over arbitrary driver values."""

from __future__ import annotations

import datetime as dt
import json
import math
import re
import uuid
import zoneinfo
from decimal import Decimal
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contentstack_assets.engine.convert import (
    ATTRIBUTE_TYPES,
    WIRE_DTYPES,
    Converted,
    _convert_column_slow,
    _convert_uids_slow,
    convert_column,
    convert_uids,
    shorten,
)

UTC = dt.UTC
HYPOTHESIS = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def tz(hours: int = 0, minutes: int = 0, seconds: int = 0) -> dt.timezone:
    sign = -1 if hours < 0 else 1
    return dt.timezone(sign * dt.timedelta(hours=abs(hours), minutes=minutes, seconds=seconds))


def plain(x: Any) -> Any:
    """A converted value as a plain Python value (None for any null)."""
    if x is None or x is pd.NA or (isinstance(x, float) and math.isnan(x)):
        return None
    if isinstance(x, np.generic):
        return x.item()
    return x


def rows(res: Converted) -> list[tuple[Any, Any]]:
    return [
        (plain(v), e) for v, e in zip(res.values.astype(object).tolist(), res.errors.tolist(), strict=True)
    ]


def one(type_name: str, value: Any) -> tuple[Any, Any]:
    res = convert_column(pd.Series([value], dtype=object), type_name)
    slow = _convert_column_slow(pd.Series([value], dtype=object), type_name)
    assert rows(res) == rows(slow)
    return rows(res)[0]


# --------------------------------------------------------------------------------------------------
# the type table and the fine points, value by value

ACCEPTED: list[tuple[str, Any, Any]] = [
    # string: text kept as is; numbers and booleans become their text
    ("string", "abc", "abc"),
    ("string", " a ", " a "),
    ("string", "", ""),
    ("string", "  ", "  "),
    ("string", "héllo ☃ \n", "héllo ☃ \n"),
    ("string", np.str_("np"), "np"),
    ("string", 12, "12"),
    ("string", -7, "-7"),
    ("string", np.int64(7), "7"),
    ("string", 2**70, str(2**70)),
    ("string", 12.5, "12.5"),
    ("string", 3.0, "3.0"),
    ("string", 1e16, "1e+16"),
    ("string", np.float64(0.1), "0.1"),
    ("string", Decimal("1.50"), "1.50"),
    ("string", True, "true"),
    ("string", False, "false"),
    ("string", np.bool_(True), "true"),
    ("string", dt.date(2024, 1, 2), "2024-01-02"),
    ("string", dt.datetime(2024, 1, 2, 3, 4, 5), "2024-01-02T03:04:05"),
    ("string", dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=tz(2)), "2024-01-02T01:04:05+00:00"),
    ("string", uuid.UUID(int=1), "00000000-0000-0000-0000-000000000001"),
    # number: ints, floats, decimals, numeric text
    ("number", 1, 1.0),
    ("number", -3, -3.0),
    ("number", 12.5, 12.5),
    ("number", np.float32(1.5), 1.5),
    ("number", np.int16(-2), -2.0),
    ("number", Decimal("2.25"), 2.25),
    ("number", Decimal("-0.1"), -0.1),
    ("number", "12.5", 12.5),
    ("number", " 42 ", 42.0),
    ("number", "-1e3", -1000.0),
    ("number", "+1.5E-2", 0.015),
    ("number", ".5", 0.5),
    ("number", "5.", 5.0),
    ("number", "\t7\n", 7.0),
    # integer: ints, integral floats/decimals, integer text in any numeric form
    ("integer", 42, 42),
    ("integer", np.int32(-4), -4),
    ("integer", np.uint64(9), 9),
    ("integer", "42", 42),
    ("integer", " 42 ", 42),
    ("integer", "+7", 7),
    ("integer", "42.0", 42),
    ("integer", "1e3", 1000),
    ("integer", "-0", 0),
    ("integer", "1.5e1", 15),
    ("integer", 3.0, 3),
    ("integer", -0.0, 0),
    ("integer", Decimal("5.000"), 5),
    ("integer", Decimal("1E+3"), 1000),
    ("integer", 2**53, 2**53),
    ("integer", -(2**53), -(2**53)),
    ("integer", float(2**53), 2**53),
    ("integer", "9007199254740992", 2**53),
    ("integer", "-9007199254740992", -(2**53)),
    ("integer", "9007199254740992.000", 2**53),
    ("integer", "0e99999999999999999999", 0),
    ("integer", "-0.0e-99999999999999999999", 0),
    # boolean: bool, 0/1, the closed text list (trimmed, any case)
    ("boolean", True, True),
    ("boolean", False, False),
    ("boolean", np.bool_(False), False),
    ("boolean", 1, True),
    ("boolean", 0, False),
    ("boolean", np.int8(1), True),
    ("boolean", 0.0, False),
    ("boolean", 1.0, True),
    ("boolean", -0.0, False),
    ("boolean", Decimal("1.0"), True),
    ("boolean", Decimal("0"), False),
    ("boolean", "  YES ", True),
    ("boolean", "true", True),
    ("boolean", "TRUE", True),
    ("boolean", "False", False),
    ("boolean", "t", True),
    ("boolean", "F", False),
    ("boolean", "yes", True),
    ("boolean", "No", False),
    ("boolean", "1", True),
    ("boolean", "0", False),
    ("boolean", "\tno\n", False),
    # datetime: timestamps (naive = UTC), ISO-8601 text; fractional seconds truncated; offsets to UTC
    ("datetime", "2024-01-02 03:04:05.999+02:00", "2024-01-02T01:04:05Z"),
    ("datetime", "2024-01-02T03:04:05Z", "2024-01-02T03:04:05Z"),
    ("datetime", "2024-01-02T03:04:05", "2024-01-02T03:04:05Z"),
    ("datetime", "2024-01-02T03:04:05+0200", "2024-01-02T01:04:05Z"),
    ("datetime", "2024-01-02T03:04:05-05", "2024-01-02T08:04:05Z"),
    ("datetime", "2024-01-02T03:04:05-05:30", "2024-01-02T08:34:05Z"),
    ("datetime", "2024-01-02T23:30:00-02:00", "2024-01-03T01:30:00Z"),
    ("datetime", "2024-01-02T03:04:05.123456789123Z", "2024-01-02T03:04:05Z"),
    ("datetime", "2024-01-02T03:04:05,5Z", "2024-01-02T03:04:05Z"),
    ("datetime", "2024-01-02 03:04", "2024-01-02T03:04:00Z"),
    ("datetime", "2024-01-02", "2024-01-02T00:00:00Z"),
    ("datetime", " 2024-01-02T03:04:05Z ", "2024-01-02T03:04:05Z"),
    ("datetime", "2024-02-29", "2024-02-29T00:00:00Z"),
    ("datetime", "0001-01-01", "0001-01-01T00:00:00Z"),
    ("datetime", "0001-01-01T00:30:00-01:00", "0001-01-01T01:30:00Z"),
    ("datetime", "9999-12-31T23:59:59Z", "9999-12-31T23:59:59Z"),
    ("datetime", "9999-12-31T23:59:59.999999999", "9999-12-31T23:59:59Z"),
    ("datetime", "1969-12-31T23:59:59.5Z", "1969-12-31T23:59:59Z"),
    ("datetime", dt.datetime(2024, 1, 2, 3, 4, 5, 999999), "2024-01-02T03:04:05Z"),
    ("datetime", dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=tz(5, 30)), "2024-01-01T21:34:05Z"),
    ("datetime", dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=tz(-1, 0, 7)), "2024-01-02T04:04:12Z"),
    ("datetime", dt.datetime(1, 1, 1), "0001-01-01T00:00:00Z"),
    ("datetime", dt.datetime(9999, 12, 31, 23, 59, 59, 999999), "9999-12-31T23:59:59Z"),
    ("datetime", dt.date(2024, 1, 2), "2024-01-02T00:00:00Z"),
    ("datetime", dt.date(1, 1, 1), "0001-01-01T00:00:00Z"),
    ("datetime", pd.Timestamp("2024-01-02 03:04:05.123456789", tz="US/Eastern"), "2024-01-02T08:04:05Z"),
    ("datetime", pd.Timestamp("2024-01-02 03:04:05"), "2024-01-02T03:04:05Z"),
    ("datetime", np.datetime64("2024-01-02T03:04:05.5"), "2024-01-02T03:04:05Z"),
    # date: dates, timestamps (their UTC date), ISO text
    ("date", dt.date(2024, 1, 2), "2024-01-02"),
    ("date", dt.date(1, 1, 1), "0001-01-01"),
    ("date", dt.date(9999, 12, 31), "9999-12-31"),
    ("date", dt.datetime(2024, 1, 2, 23, 59), "2024-01-02"),
    ("date", dt.datetime(2024, 1, 2, 1, 0, tzinfo=tz(2)), "2024-01-01"),
    ("date", pd.Timestamp("2024-01-01 23:30", tz="America/Sao_Paulo"), "2024-01-02"),
    ("date", "2024-01-01T23:30:00-02:00", "2024-01-02"),
    ("date", "2024-01-02", "2024-01-02"),
    ("date", "2024-01-02 03:04:05", "2024-01-02"),
    ("date", "0001-01-01", "0001-01-01"),
    ("date", np.datetime64("2024-01-02"), "2024-01-02"),
]

REJECTED: list[tuple[str, Any, str]] = [
    ("string", b"abc", "bytes are not text"),
    ("string", bytearray(b"abc"), "bytes are not text"),
    ("string", memoryview(b"abc"), "bytes are not text"),
    ("string", float("nan"), "nan is not a finite number"),
    ("string", float("inf"), "inf is not a finite number"),
    ("string", Decimal("NaN"), "NaN is not a finite number"),
    ("string", "a\ud800b", "'a\\ud800b' is not valid Unicode text"),
    ("string", {"a": 1}, "{'a': 1} is not text"),
    ("number", "abc", "'abc' is not a number"),
    ("number", "", "'' is not a number"),
    ("number", "nan", "'nan' is not a number"),
    ("number", "NaN", "'NaN' is not a number"),
    ("number", "inf", "'inf' is not a number"),
    ("number", "-Infinity", "'-Infinity' is not a number"),
    ("number", "0x10", "'0x10' is not a number"),
    ("number", "1_000", "'1_000' is not a number"),
    ("number", "١٢", "'١٢' is not a number"),
    ("number", "1,5", "'1,5' is not a number"),
    ("number", "1e", "'1e' is not a number"),
    ("number", float("nan"), "nan is not a finite number"),
    ("number", float("-inf"), "-inf is not a finite number"),
    ("number", np.float64("nan"), "nan is not a finite number"),
    ("number", Decimal("NaN"), "NaN is not a finite number"),
    ("number", Decimal("sNaN"), "sNaN is not a finite number"),
    ("number", Decimal("Infinity"), "Infinity is not a finite number"),
    ("number", True, "True is not a number"),
    ("number", np.bool_(False), "False is not a number"),
    ("number", 10**400, "is out of range"),
    ("number", 2**80, "1208925819614629174706176 has a magnitude above 2^53"),
    ("number", "1e999", "'1e999' is out of range"),
    ("number", Decimal("1e400"), "1E+400 is out of range"),
    ("number", dt.date(2024, 1, 2), "2024-01-02 is not a number"),
    ("number", b"1", "b'1' is not a number"),
    ("integer", 12.5, "12.5 is not an integer"),
    ("integer", "12.5", "'12.5' is not an integer"),
    ("integer", Decimal("1.5"), "1.5 is not an integer"),
    ("integer", "1.0000000000000000001", "is not an integer"),
    ("integer", 2**53 + 1, "9007199254740993 has a magnitude above 2^53"),
    ("integer", -(2**53) - 1, "has a magnitude above 2^53"),
    ("integer", "9007199254740993", "has a magnitude above 2^53"),
    ("integer", "1e20", "'1e20' has a magnitude above 2^53"),
    ("integer", float(2**60), "has a magnitude above 2^53"),
    ("integer", Decimal("1e999999999"), "has a magnitude above 2^53"),
    ("integer", "1e999999999999", "has a magnitude above 2^53"),
    ("integer", 10**5000, "has a magnitude above 2^53"),
    ("integer", "1e99999999999999999999", "has a magnitude above 2^53"),
    ("integer", "1e-99999999999999999999", "is not an integer"),
    ("number", "1e99999999999999999999", "is out of range"),
    ("integer", True, "True is not an integer"),
    ("integer", "abc", "'abc' is not an integer"),
    ("integer", "0x10", "'0x10' is not an integer"),
    ("integer", "inf", "'inf' is not an integer"),
    ("integer", float("nan"), "nan is not a finite number"),
    ("integer", float("inf"), "inf is not a finite number"),
    ("integer", Decimal("-Infinity"), "-Infinity is not a finite number"),
    ("integer", dt.datetime(2024, 1, 2), "2024-01-02 00:00:00 is not an integer"),
    ("boolean", 2, "2 is not a boolean"),
    ("boolean", -1, "-1 is not a boolean"),
    ("boolean", 0.5, "0.5 is not a boolean"),
    ("boolean", Decimal("2"), "2 is not a boolean"),
    ("boolean", Decimal("NaN"), "NaN is not a boolean"),
    ("boolean", float("nan"), "nan is not a boolean"),
    ("boolean", "maybe", "'maybe' is not a boolean"),
    ("boolean", "y", "'y' is not a boolean"),
    ("boolean", "Y", "'Y' is not a boolean"),
    ("boolean", "N", "'N' is not a boolean"),
    ("boolean", "tRuE!", "'tRuE!' is not a boolean"),
    ("boolean", "on", "'on' is not a boolean"),
    ("boolean", "2", "'2' is not a boolean"),
    ("boolean", "1.0", "'1.0' is not a boolean"),
    ("boolean", b"1", "b'1' is not a boolean"),
    ("datetime", 1700000000, "1700000000 is not a datetime"),
    ("datetime", 1.7e9, "1700000000.0 is not a datetime"),
    ("datetime", True, "True is not a datetime"),
    ("datetime", dt.time(3, 4), "03:04:00 is not a datetime"),
    ("datetime", "2024-13-01", "'2024-13-01' is not an ISO-8601 datetime"),
    ("datetime", "2023-02-29", "'2023-02-29' is not an ISO-8601 datetime"),
    ("datetime", "0000-01-01", "'0000-01-01' is not an ISO-8601 datetime"),
    ("datetime", "2024", "'2024' is not an ISO-8601 datetime"),
    ("datetime", "2024-01", "'2024-01' is not an ISO-8601 datetime"),
    ("datetime", "20240102", "'20240102' is not an ISO-8601 datetime"),
    ("datetime", "2024/01/02", "'2024/01/02' is not an ISO-8601 datetime"),
    ("datetime", "2024-01-02T03", "'2024-01-02T03' is not an ISO-8601 datetime"),
    ("datetime", "2024-01-02T24:00:00", "'2024-01-02T24:00:00' is not an ISO-8601 datetime"),
    ("datetime", "2016-12-31T23:59:60Z", "is not an ISO-8601 datetime"),
    ("datetime", "2024-01-02T03:04:05+24:00", "is not an ISO-8601 datetime"),
    ("datetime", "2024-01-02T03:04:05 +02:00", "is not an ISO-8601 datetime"),
    ("datetime", "yesterday", "'yesterday' is not an ISO-8601 datetime"),
    ("datetime", "1700000000", "'1700000000' is not an ISO-8601 datetime"),
    ("datetime", "", "'' is not an ISO-8601 datetime"),
    ("datetime", "0001-01-01T00:00:00+01:00", "'0001-01-01T00:00:00+01:00' is outside years 0001-9999 UTC"),
    ("datetime", "9999-12-31T23:59:59-01:00", "is outside years 0001-9999 UTC"),
    ("datetime", dt.datetime(1, 1, 1, tzinfo=tz(1)), "is outside years 0001-9999 UTC"),
    ("datetime", dt.datetime(9999, 12, 31, 23, tzinfo=tz(-2)), "is outside years 0001-9999 UTC"),
    ("date", 20240102, "20240102 is not a date"),
    ("date", 1.5, "1.5 is not a date"),
    ("date", True, "True is not a date"),
    ("date", "2024-13-01", "'2024-13-01' is not an ISO-8601 date"),
    ("date", "01/02/2024", "'01/02/2024' is not an ISO-8601 date"),
    ("date", "0001-01-01T00:00:00+00:01", "is outside years 0001-9999 UTC"),
]


@pytest.mark.parametrize(("type_name", "value", "wire"), ACCEPTED, ids=lambda x: shorten(x, 30))
def test_accepted(type_name: str, value: Any, wire: Any) -> None:
    got, error = one(type_name, value)
    assert error is None
    assert got == wire
    assert type(got) is type(wire)


@pytest.mark.parametrize(("type_name", "value", "reason"), REJECTED, ids=lambda x: shorten(x, 30))
def test_rejected(type_name: str, value: Any, reason: str) -> None:
    got, error = one(type_name, value)
    assert got is None
    assert isinstance(error, str)
    assert reason in error
    assert len(error) <= 80


@pytest.mark.parametrize("type_name", ATTRIBUTE_TYPES)
@pytest.mark.parametrize("null", [None, pd.NA, pd.NaT, np.datetime64("NaT")], ids=repr)
def test_null_gives_null_without_error(type_name: str, null: Any) -> None:
    assert one(type_name, null) == (None, None)


@pytest.mark.parametrize("text", ["", "   ", "\t\n"])
def test_boolean_blank_text_is_null(text: str) -> None:
    assert one("boolean", text) == (None, None)


def test_nan_in_a_float_column_is_null_but_nan_from_the_driver_is_rejected() -> None:
    typed = pd.Series([1.0, np.nan, 2.5])
    assert rows(convert_column(typed, "number")) == [(1.0, None), (None, None), (2.5, None)]
    assert rows(convert_column(typed, "integer")) == [
        (1, None),
        (None, None),
        (None, "2.5 is not an integer"),
    ]
    raw = pd.Series([1.0, float("nan"), None, Decimal("NaN")], dtype=object)
    assert rows(convert_column(raw, "number")) == [
        (1.0, None),
        (None, "nan is not a finite number"),
        (None, None),
        (None, "NaN is not a finite number"),
    ]
    assert convert_column(pd.Series([np.inf]), "number").errors.tolist() == ["inf is not a finite number"]


def test_str_dtype_nulls_are_null() -> None:
    s = pd.Series(["a", None, " yes "], dtype="string")
    assert rows(convert_column(s, "string")) == [("a", None), (None, None), (" yes ", None)]
    assert rows(convert_column(s, "boolean")) == [(None, "'a' is not a boolean"), (None, None), (True, None)]


def test_output_dtypes_index_and_name() -> None:
    index = pd.Index([10, 3, 10, 7], name="row")
    values = pd.Series(["1", None, "x", 2], index=index, dtype=object, name="col")
    for type_name in ATTRIBUTE_TYPES:
        res = convert_column(values, type_name)
        assert res.values.dtype == pd.Series([], dtype=WIRE_DTYPES[type_name]).dtype
        assert res.errors.dtype == object
        assert res.values.index.equals(index) and res.errors.index.equals(index)
        assert res.values.name == "col"
    uids = convert_uids(values)
    assert uids.values.dtype == object and uids.values.index.equals(index)


def test_empty_series() -> None:
    for type_name in ATTRIBUTE_TYPES:
        res = convert_column(pd.Series([], dtype=object), type_name)
        assert len(res.values) == 0 and len(res.errors) == 0
        assert res.values.dtype == pd.Series([], dtype=WIRE_DTYPES[type_name]).dtype
    assert len(convert_uids(pd.Series([], dtype=object)).values) == 0


def test_unknown_type() -> None:
    with pytest.raises(ValueError, match="unknown attribute type 'float'"):
        convert_column(pd.Series([1]), "float")


def test_long_values_are_shortened_in_reasons() -> None:
    (error,) = convert_column(pd.Series(["x" * 10_000]), "number").errors
    assert error == f"{shorten('x' * 10_000)} is not a number"
    assert len(error) < 60
    (error,) = convert_column(pd.Series(["a\nb\x00c\u202e"], dtype=object), "integer").errors
    assert error == "'a\\nb\\x00c\\u202e' is not an integer"


def test_shorten() -> None:
    assert shorten("abc") == "'abc'"
    assert shorten(12.5) == "12.5"
    assert shorten(float("nan")) == "nan"
    assert shorten(Decimal("1.50")) == "1.50"
    assert shorten(b"ab") == "b'ab'"
    assert shorten(memoryview(b"ab")) == "b'ab'"
    assert shorten(None) == "None"
    long = shorten("y" * 1000)
    assert len(long) == 40 and long.endswith("…") and long.startswith("'yyy")
    assert len(shorten("y" * 1000, limit=10)) == 10
    assert shorten(10**5000) == "<integer of about 5001 digits>"
    assert shorten(dt.datetime(2024, 1, 2, 3, 4, 5)) == "2024-01-02 03:04:05"

    class Broken:
        def __str__(self) -> str:
            raise RuntimeError("no")

    assert shorten(Broken()) == "<Broken>"


# --------------------------------------------------------------------------------------------------
# user uids: trimmed, 1-256 printable ASCII characters (wire.UID_PATTERN)

UIDS: list[tuple[Any, Any, Any]] = [
    ("abc", "abc", None),
    ("  abc\t", "abc", None),
    ("a b", "a b", None),
    ("\u00a0x\u3000", "x", None),
    (42, "42", None),
    (np.int64(42), "42", None),
    (42.0, "42", None),
    (Decimal("123"), "123", None),
    (uuid.UUID(int=5), "00000000-0000-0000-0000-000000000005", None),
    ("~" * 256, "~" * 256, None),
    (None, None, "missing user uid"),
    (pd.NA, None, "missing user uid"),
    (float("nan"), None, "missing user uid"),
    ("", None, "missing user uid"),
    ("   ", None, "missing user uid"),
    ("\t\n", None, "missing user uid"),
    ("a" * 257, None, "invalid user uid"),
    ("  " + "a" * 256 + "  ", "a" * 256, None),
    ("héllo", None, "invalid user uid"),
    ("a\tb", None, "invalid user uid"),
    ("a\x7fb", None, "invalid user uid"),
    ("a\x00", None, "invalid user uid"),
    (b"abc", None, "invalid user uid"),
    (float("inf"), None, "invalid user uid"),
    (10**5000, None, "invalid user uid"),
]


@pytest.mark.parametrize(("value", "uid", "error"), UIDS, ids=lambda x: shorten(x, 30))
def test_uids(value: Any, uid: Any, error: Any) -> None:
    series = pd.Series([value], dtype=object)
    assert rows(convert_uids(series)) == [(uid, error)] == rows(_convert_uids_slow(series))


def test_uids_typed_columns() -> None:
    assert rows(convert_uids(pd.Series([7, 8]))) == [("7", None), ("8", None)]
    assert rows(convert_uids(pd.Series([7.0, np.nan]))) == [("7", None), (None, "missing user uid")]
    assert rows(convert_uids(pd.Series([" a", None], dtype="string"))) == [
        ("a", None),
        (None, "missing user uid"),
    ]


# --------------------------------------------------------------------------------------------------
# fast paths == the element rule

EPOCH_VALUES = [
    dt.datetime(1999, 12, 31, 23, 59, 59, 999999),
    dt.datetime(2024, 2, 29, 12),
    dt.datetime(1969, 7, 20),
]

HOMOGENEOUS: list[tuple[str, pd.Series]] = [
    ("int64", pd.Series([0, 1, -5, 2**53, 2**53 + 1, -(2**63), 2**63 - 1], dtype="int64")),
    ("uint64", pd.Series([0, 1, 2**64 - 1], dtype="uint64")),
    ("Int64", pd.Series([0, 1, None, -(2**60)], dtype="Int64")),
    ("int8", pd.Series([0, 1, -128], dtype="int8")),
    ("float64", pd.Series([0.0, 1.0, -0.0, 2.5, 1e300, 2.0**53, 2.0**53 + 2, np.inf, -np.inf, 1e-310])),
    ("float32", pd.Series([0.1, 1.0, 3.5], dtype="float32")),
    ("bool", pd.Series([True, False])),
    ("boolean", pd.Series([True, None, False], dtype="boolean")),
    ("str", pd.Series(["a", " 1 ", "2024-01-02", "yes", "", "1e3", "x" * 300], dtype="str")),
    (
        "iso text",
        pd.Series(
            [
                "2024-01-02",
                "2024-01-02T03:04:05",
                "2024-01-02 03:04:05.123+05:30",
                "2024-01-02T03:04:05Z",
                "0001-01-01T00:00:00",
                "9999-12-31T23:59:59.999999999",
                "2024-02-30",
                "2024-01-02T03:04:05-0130",
            ],
            dtype=object,
        ),
    ),
    ("datetime64[ns]", pd.Series(pd.to_datetime(["2024-01-02 03:04:05.999999999", "1969-12-31 23:59:59.5"]))),
    ("datetime64[s]", pd.Series(np.array(["0001-01-01", "9999-12-31T23:59:59"], dtype="datetime64[s]"))),
    (
        "datetime64[us, tz]",
        pd.Series(pd.to_datetime(["2024-01-01 23:30", "2024-07-01 00:30"]).tz_localize("Europe/Paris")),
    ),
    ("datetime objects", pd.Series(EPOCH_VALUES, dtype=object)),
    ("aware datetimes", pd.Series([d.replace(tzinfo=tz(-9, 30)) for d in EPOCH_VALUES], dtype=object)),
    ("dates", pd.Series([dt.date(1, 1, 1), dt.date(2024, 2, 29), dt.date(9999, 12, 31)], dtype=object)),
    (
        "decimals",
        pd.Series(
            [Decimal("1"), Decimal("1.0"), Decimal("0"), Decimal("2.5"), Decimal(2**53 + 1)], dtype=object
        ),
    ),
    ("python ints", pd.Series([0, 1, 2**53, 2**53 + 1, 2**80, -(10**30)], dtype=object)),
    ("python floats", pd.Series([0.0, 1.0, 0.5, 2.0**60, 1e300], dtype=object)),
    ("bool objects", pd.Series([True, np.bool_(False)], dtype=object)),
    ("category", pd.Series(["a", "yes", None], dtype="category")),
]


def assert_same(a: Converted, b: Converted) -> None:
    assert a.values.dtype == b.values.dtype
    assert rows(a) == rows(b)


@pytest.mark.parametrize("type_name", ATTRIBUTE_TYPES)
@pytest.mark.parametrize(("label", "series"), HOMOGENEOUS, ids=[label for label, _ in HOMOGENEOUS])
def test_fast_paths_agree_with_the_element_rule(type_name: str, label: str, series: pd.Series) -> None:
    typed = convert_column(series, type_name)
    as_objects = series.astype(object)
    if series.dtype != object and series.isna().any():
        as_objects = as_objects.where(series.notna(), None)
    assert_same(typed, _convert_column_slow(as_objects, type_name))
    assert_same(typed, convert_column(as_objects, type_name))
    # the same values inside a mixed column
    mixed = pd.concat([as_objects, pd.Series([b"x", "maybe", None, 2.5], dtype=object)], ignore_index=True)
    res = convert_column(mixed, type_name)
    assert rows(res)[: len(series)] == rows(typed)
    assert_same(res, _convert_column_slow(mixed, type_name))
    uids = convert_uids(series)
    assert rows(uids) == rows(_convert_uids_slow(as_objects))


def test_uid_fast_path_agrees() -> None:
    values = pd.Series([" a ", "", "b" * 300, "ü", "ok", "x\x1f"], dtype=object)
    assert rows(convert_uids(values)) == rows(_convert_uids_slow(values))


# --------------------------------------------------------------------------------------------------
# properties over arbitrary driver values

offsets = st.integers(min_value=-(24 * 3600 - 1), max_value=24 * 3600 - 1).map(
    lambda s: dt.timezone(dt.timedelta(seconds=s))
)
naive_datetimes = st.datetimes(
    min_value=dt.datetime(1, 1, 1), max_value=dt.datetime(9999, 12, 31, 23, 59, 59, 999999)
)
aware_datetimes = st.datetimes(timezones=offsets)
# named zones (DST gaps and folds) where the machine has a time zone database
zoned_datetimes = (
    st.datetimes(timezones=st.timezones(), allow_imaginary=True)
    if zoneinfo.available_timezones()
    else aware_datetimes
)
timestamps = st.datetimes(min_value=dt.datetime(1700, 1, 1), max_value=dt.datetime(2250, 1, 1)).map(
    pd.Timestamp
)
aware_timestamps = st.builds(
    lambda d, z: pd.Timestamp(d).tz_localize(z),
    st.datetimes(min_value=dt.datetime(1800, 1, 1), max_value=dt.datetime(2200, 1, 1)),
    st.sampled_from(["UTC", "Europe/Paris", "Asia/Kolkata", "America/St_Johns"]),
)


def _iso(d: dt.datetime, sep: str, seconds: bool, frac: str, offset: str) -> str:
    text = d.strftime("%Y-%m-%d").zfill(10) if d.year >= 1000 else f"{d.year:04d}-{d.month:02d}-{d.day:02d}"
    text += f"{sep}{d.hour:02d}:{d.minute:02d}"
    if seconds:
        text += f":{d.second:02d}{frac}"
    return text + offset


iso_texts = st.one_of(
    st.dates().map(lambda d: d.isoformat()),
    st.builds(
        _iso,
        naive_datetimes,
        st.sampled_from(["T", " ", "t"]),
        st.booleans(),
        st.sampled_from(["", ".5", ".123456", ".999999999999", ",25"]),
        st.one_of(
            st.sampled_from(["", "Z", "z", "+00:00", "-05", "+0530", "+23:59", "-24:00", "+02:60"]),
            st.builds(
                lambda s, h, m: f"{s}{h:02d}:{m:02d}",
                st.sampled_from("+-"),
                st.integers(0, 25),
                st.integers(0, 61),
            ),
        ),
    ),
)
BOOLEAN_WORDS = ["true", "false", "t", "f", "yes", "no", "1", "0", "y", "n", "on", "off", "tru", "yess", ""]
boolean_texts = st.builds(
    lambda word, flips, left, right: (
        left
        + "".join(
            c.upper() if flip else c for c, flip in zip(word, flips + [False] * len(word), strict=False)
        )
        + right
    ),
    st.sampled_from(BOOLEAN_WORDS),
    st.lists(st.booleans(), max_size=5),
    st.sampled_from(["", " ", "\t", "\u00a0"]),
    st.sampled_from(["", " ", "\n"]),
)
numeric_texts = st.one_of(
    st.integers().map(str),
    st.floats().map(repr),
    st.decimals().map(str),
    st.from_regex(r"\A\s?[+-]?[0-9]{0,20}(\.[0-9]{0,5})?([eE][+-]?[0-9]{1,4})?\s?\Z"),
)
SPECIAL = [
    None,
    pd.NA,
    pd.NaT,
    np.datetime64("NaT"),
    float("nan"),
    np.float64("nan"),
    Decimal("NaN"),
    Decimal("sNaN"),
    Decimal("-Infinity"),
    "",
    " ",
    "true",
    " YES ",
    "nan",
    "inf",
    "1e3",
    "42.0",
    "-0",
    "0x10",
    "١٢",
    "1e99999999999999999999",
    "-5e-99999999999999999999",
    "a\ud800",
    b"",
    bytearray(b"x"),
    memoryview(b"ab"),
    uuid.UUID(int=3),
    dt.time(1, 2),
    dt.timedelta(days=1),
    10**5000,
    2**53,
    2**53 + 1,
    [1, 2],
    {"k": "v"},
]
driver_values = st.one_of(
    st.sampled_from(SPECIAL),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(2**200), max_value=2**200),
    st.floats(),
    st.decimals(),
    st.text(),
    st.text(alphabet=st.characters(exclude_categories=())),
    iso_texts,
    numeric_texts,
    boolean_texts,
    naive_datetimes,
    aware_datetimes,
    zoned_datetimes,
    timestamps,
    aware_timestamps,
    st.dates(),
    st.binary(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1).map(np.int64),
    st.floats(width=32).map(np.float32),
    st.floats().map(np.float64),
    st.booleans().map(np.bool_),
)

DATETIME_RX = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", re.ASCII)
DATE_RX = re.compile(r"\d{4}-\d\d-\d\d", re.ASCII)


def is_null_input(v: Any) -> bool:
    return v is None or v is pd.NA or v is pd.NaT or (isinstance(v, np.datetime64) and np.isnat(v))


def check_wire_value(type_name: str, v: Any) -> None:
    json.dumps(v, allow_nan=False, ensure_ascii=False).encode("utf-8")
    if type_name == "string":
        assert type(v) is str
    elif type_name == "number":
        assert type(v) is float and math.isfinite(v)
    elif type_name == "integer":
        assert type(v) is int and abs(v) <= 2**53
    elif type_name == "boolean":
        assert type(v) is bool
    elif type_name == "datetime":
        assert DATETIME_RX.fullmatch(v), v
        dt.datetime.strptime(v, "%Y-%m-%dT%H:%M:%SZ")
    elif type_name == "date":
        assert DATE_RX.fullmatch(v), v
        dt.date.fromisoformat(v)


def check_column(inputs: list[Any], series: pd.Series, type_name: str, res: Converted) -> None:
    assert len(res.values) == len(series) == len(res.errors)
    assert res.values.index.equals(series.index) and res.errors.index.equals(series.index)
    assert res.values.dtype == pd.Series([], dtype=WIRE_DTYPES[type_name]).dtype
    assert res.errors.dtype == object
    for v, (out, error) in zip(inputs, rows(res), strict=True):
        if error is not None:
            assert out is None, (v, out, error)
            assert isinstance(error, str) and 0 < len(error) <= 100 and error.isprintable(), error
        if is_null_input(v):
            assert (out, error) == (None, None)
        elif out is not None:
            check_wire_value(type_name, out)
        elif error is None:  # a non-null input with neither a value nor a reason: only blank boolean text
            assert type_name == "boolean" and isinstance(v, str) and v.strip() == "", v


@HYPOTHESIS
@given(st.lists(driver_values, max_size=25), st.integers(0, 1000))
def test_property_any_driver_values(inputs: list[Any], start: int) -> None:
    series = pd.Series(inputs, dtype=object, index=pd.RangeIndex(start, start + 2 * len(inputs), 2))
    for type_name in ATTRIBUTE_TYPES:
        res = convert_column(series, type_name)
        check_column(inputs, series, type_name, res)
        assert_same(res, _convert_column_slow(series, type_name))
        # each value alone (another fast path, or none) says the same as inside the mixed column
        for i, v in enumerate(inputs[:6]):
            assert rows(convert_column(pd.Series([v], dtype=object), type_name))[0] == rows(res)[i]
    uids = convert_uids(series)
    assert rows(uids) == rows(_convert_uids_slow(series))
    for out, error in rows(uids):
        assert (out is None) != (error is None)
        if out is not None:
            assert 1 <= len(out) <= 256 and out == out.strip()
            assert all(0x20 <= ord(c) <= 0x7E for c in out)
        else:
            assert error in ("missing user uid", "invalid user uid")


homogeneous_lists = st.one_of(
    st.lists(st.integers(min_value=-(2**63), max_value=2**63 - 1), min_size=1).map(lambda x: (x, "int64")),
    st.lists(st.floats(allow_nan=False), min_size=1).map(lambda x: (x, "float64")),
    st.lists(st.booleans(), min_size=1).map(lambda x: (x, "bool")),
    st.lists(st.one_of(st.text(), iso_texts, numeric_texts, boolean_texts), min_size=1).map(
        lambda x: (x, "str")
    ),
    st.lists(boolean_texts, min_size=1).map(lambda x: (x, "object")),
    st.lists(numeric_texts, min_size=1).map(lambda x: (x, "object")),
    st.lists(naive_datetimes, min_size=1).map(lambda x: (x, "datetime64[us]")),
    st.lists(timestamps, min_size=1).map(lambda x: (x, "datetime64[ns]")),
    st.tuples(st.lists(naive_datetimes, min_size=1), offsets).map(
        lambda x: ([d.replace(tzinfo=x[1]) for d in x[0]], "aware")
    ),
    st.lists(st.dates(), min_size=1).map(lambda x: (x, "object")),
    st.lists(iso_texts, min_size=1).map(lambda x: (x, "object")),
    st.lists(st.decimals(allow_nan=False), min_size=1).map(lambda x: (x, "object")),
    st.lists(st.integers(), min_size=1).map(lambda x: (x, "object")),
)


@HYPOTHESIS
@given(homogeneous_lists)
def test_property_typed_columns_agree_with_objects(case: tuple[list[Any], str]) -> None:
    inputs, dtype = case
    if dtype == "aware":
        try:
            typed = pd.Series(pd.DatetimeIndex(inputs))
        except Exception:  # outside pandas' range once converted: nothing typed to compare
            return
    else:
        typed = pd.Series(inputs, dtype=dtype)
    objects = typed.astype(object) if dtype != "object" else typed
    for type_name in ATTRIBUTE_TYPES:
        res = convert_column(typed, type_name)
        check_column(objects.tolist(), typed, type_name, res)
        assert_same(res, _convert_column_slow(objects, type_name))
        assert_same(res, convert_column(pd.Series(inputs, dtype=object), type_name))
    assert rows(convert_uids(typed)) == rows(_convert_uids_slow(objects))


# ISO text of one shape per column, as databases return it, read as a byte matrix (`_iso_bytes_seconds`):
# fields drawn around and beyond their bounds (month 13, day 32, hour 24, second 60, offset +24:00), in
# every shape that path reads, and any character of the text possibly swapped for another
ISO_TAILS = ["", "Z", "z", ".123456", ",5", ".1234567Z", "+HH:MM", "-HH:MM", "+HHMM", "-HH", ".5+HH:MM"]
iso_fields = st.tuples(
    st.one_of(st.integers(0, 9999), st.sampled_from([1, 1900, 2000, 2023, 2024, 9999])),  # leap years or not
    st.one_of(st.integers(0, 13), st.just(2)),
    st.one_of(st.integers(0, 32), st.integers(28, 31)),
    st.integers(0, 25),
    st.integers(0, 61),
    st.integers(0, 61),
    st.integers(0, 25),
    st.integers(0, 61),
)
iso_shape_columns = st.tuples(
    st.sampled_from(["date"] + [f"{separator}{tail}" for separator in " Tt" for tail in ISO_TAILS]),
    st.lists(
        st.tuples(iso_fields, st.integers(0, 40), st.sampled_from(list("0123456789-:+. TtZz,/\x00é"))),
        min_size=1,
        max_size=30,
    ),
    st.booleans(),
)


def _iso_of_shape(shape: str, fields: tuple[int, ...]) -> str:
    year, month, day, hour, minute, second, offset_hours, offset_minutes = fields
    date = f"{year:04d}-{month:02d}-{day:02d}"
    if shape == "date":
        return date
    tail = shape[1:].replace("HH", f"{offset_hours:02d}").replace("MM", f"{offset_minutes:02d}")
    return f"{date}{shape[0]}{hour:02d}:{minute:02d}:{second:02d}{tail}"


@HYPOTHESIS
@given(iso_shape_columns)
def test_property_iso_text_of_one_shape_reads_as_the_element_rule(case) -> None:
    shape, drawn, mixed = case
    texts = []
    for index, (fields, position, character) in enumerate(drawn):
        text = _iso_of_shape(shape, fields)
        if index % 3 == 2:  # now and then one character swapped
            text = text[: position % len(text)] + character + text[position % len(text) + 1 :]
        texts.append(text)
    if mixed:  # another shape among them: the rows of each length are gathered on their own
        texts += ["2024-02-29", "2024-02-29 23:59:59", "2024-02-29T23:59:59+05:30"]
    series = pd.Series(texts, dtype=object)
    for type_name in ("datetime", "date"):
        assert_same(convert_column(series, type_name), _convert_column_slow(series, type_name))


# --------------------------------------------------------------------------------------------------
# an aware timestamp as text is UTC text; a `number` never rounds an integer silently

ABOVE = "has a magnitude above 2^53"


@pytest.mark.parametrize(
    "series",
    [
        pd.Series([dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=zone) for zone in (tz(2), tz(-9, 30), UTC)]),
        pd.Series(
            [
                pd.Timestamp("2024-01-02 01:04:05Z").tz_convert(zone)
                for zone in ("Asia/Tokyo", "America/Lima")
            ],
            dtype=object,
        ),
        pd.Series(pd.to_datetime(["2024-01-02 01:04:05Z"] * 2)).dt.tz_convert("Europe/Paris"),
    ],
    ids=["datetimes", "timestamps", "datetime64[ns, tz]"],
)
def test_an_aware_timestamp_as_a_string_is_the_same_utc_text_whatever_its_zone(series: pd.Series) -> None:
    """A connection's time zone decides the zone of the timestamptz values it returns: the text must not
    depend on it, or a time-zone change would resend every user."""
    res = convert_column(series, "string")
    assert_same(res, _convert_column_slow(series.astype(object), "string"))
    texts = {value for value, error in rows(res) if error is None}
    instants = {value.astimezone(UTC) for value in series.tolist()}
    assert texts == {instant.isoformat() for instant in instants} and len(res.errors.dropna()) == 0
    assert all(text.endswith("+00:00") for text in texts)


NUMBER_CASES: list[tuple[str, pd.Series, list[tuple[Any, Any]]]] = [
    (
        "python ints",
        pd.Series([1, 2**53, -(2**53), 2**53 + 1, -(2**80)], dtype=object),
        [
            (1.0, None),
            (2.0**53, None),
            (-(2.0**53), None),
            (None, f"9007199254740993 {ABOVE}"),
            (None, ABOVE),
        ],
    ),
    (
        "int64",
        pd.Series([7, 2**53, 2**53 + 1, -(2**62)], dtype="int64"),
        [(7.0, None), (2.0**53, None), (None, f"9007199254740993 {ABOVE}"), (None, ABOVE)],
    ),
    ("Int64", pd.Series([None, 2**53 + 2], dtype="Int64"), [(None, None), (None, ABOVE)]),
    ("uint64", pd.Series([3, 2**64 - 1], dtype="uint64"), [(3.0, None), (None, ABOVE)]),
    # a float is a double already: nothing is rounded, nothing rejected
    ("float64", pd.Series([2.0**60, 1e300, 0.1]), [(2.0**60, None), (1e300, None), (0.1, None)]),
    ("python floats", pd.Series([2.0**60, 1.5], dtype=object), [(2.0**60, None), (1.5, None)]),
    ("ints and floats", pd.Series([2.0**60, 2**60], dtype=object), [(2.0**60, None), (None, ABOVE)]),
    (
        "decimals",
        pd.Series(
            [
                Decimal("2.5"),
                Decimal(2**53 + 1),
                Decimal("12345678901234567890.0000000000"),  # numeric(38,10), integral
                Decimal("1234567890123456789.5"),  # not integral: the nearest double
            ],
            dtype=object,
        ),
        [(2.5, None), (None, ABOVE), (None, ABOVE), (1234567890123456789.5, None)],
    ),
    (
        "text",
        pd.Series(["12.5", "9007199254740993", "-12345678901234567890.00", "1e20", "123456789012345678.5"]),
        [(12.5, None), (None, ABOVE), (None, ABOVE), (1e20, None), (123456789012345678.5, None)],
    ),
]


@pytest.mark.parametrize(("label", "series", "expected"), NUMBER_CASES, ids=[c[0] for c in NUMBER_CASES])
def test_a_number_rejects_an_integral_value_above_2_53_on_every_path(
    label: str, series: pd.Series, expected: list[tuple[Any, Any]]
) -> None:
    res = convert_column(series, "number")
    as_objects = series.astype(object).where(series.notna(), None)
    assert_same(res, _convert_column_slow(as_objects, "number"))
    for (value, error), (wanted, reason) in zip(rows(res), expected, strict=True):
        assert value == wanted
        assert (error is None) if reason is None else (reason in error), (value, error)
