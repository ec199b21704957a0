"""The type matrix's rows and its check, shared by `test_type_matrix.py` (SQLite, PostgreSQL, DuckDB, MariaDB,
in the project's environment) and `tests/warehouses/test_snowflake_matrix.py` (Snowflake via fakesnow, in
the second environment the Makefile builds): the same logical rows, read by the source reader and converted
by the contract's type table, must give the same wire values and the same rejections everywhere."""

from __future__ import annotations

import datetime as dt
import decimal
import math

import pandas as pd
import sqlalchemy as sa

from contentstack_assets.engine.convert import convert_column
from contentstack_assets.engine.source import SourceReader, _engine
from contentstack_assets.spec import SourceSpec

COLUMNS = {
    "big": (sa.BigInteger, "integer"),
    "num": (lambda: sa.Numeric(30, 10), "number"),
    "flt": (sa.Float, "number"),
    "flag": (sa.Boolean, "boolean"),
    "naive": (sa.DateTime, "datetime"),
    "zoned": (lambda: sa.DateTime(timezone=True), "datetime"),
    "day": (sa.Date, "date"),
    "txt": (sa.Text, "string"),
}
UTC = dt.UTC
ROWS = {
    "r1": dict(big=2**53, num=decimal.Decimal("12.50"), flt=1.5, flag=True,
               naive=dt.datetime(2024, 3, 10, 1, 59, 59), zoned=dt.datetime(2024, 3, 10, 6, 59, 59, tzinfo=UTC),
               day=dt.date(2024, 2, 29), txt="Zürich ✓ 日本"),
    "r2": dict(big=-(2**53), num=decimal.Decimal("-0.0010"), flt=-2.25, flag=False,
               naive=dt.datetime(2024, 11, 3, 1, 30, 0, 999999), zoned=dt.datetime(2024, 11, 3, 5, 30, tzinfo=UTC),
               day=dt.date(1999, 12, 31), txt=""),
    "r3": {},  # every value null
    "r4": dict(big=2**53 + 1, txt="big above 2^53"),
    "nan": dict(flt=math.nan),
}  # fmt: skip
EXPECTED = {
    "r1": dict(big=2**53, num=12.5, flt=1.5, flag=True, naive="2024-03-10T01:59:59Z",
               zoned="2024-03-10T06:59:59Z", day="2024-02-29", txt="Zürich ✓ 日本"),
    "r2": dict(big=-(2**53), num=-0.001, flt=-2.25, flag=False, naive="2024-11-03T01:30:00Z",
               zoned="2024-11-03T05:30:00Z", day="1999-12-31", txt=""),
    "r3": {},
    "r4": dict(txt="big above 2^53"),
    "nan": {},
}  # fmt: skip
REJECTED = {"r4": {"big"}, "nan": {"flt"}}


def insert_rows(connection: sa.Connection, table: sa.Table, rows: dict[str, dict]) -> None:
    connection.execute(
        table.insert(), [{"user_uid": uid, **{c: row.get(c) for c in COLUMNS}} for uid, row in rows.items()]
    )


def check_wire_values(source: SourceSpec, rows: dict[str, dict], backend: str) -> None:
    """Read the matrix's table of `source` and convert it: the wire values and the rejections must be the
    contract's (for the rows this backend holds)."""
    frame = SourceReader(source, ["user_uid", *COLUMNS]).read().set_index("user_uid")
    _engine(source.url.get_secret_value()).dispose()
    wire: dict[str, dict] = {uid: {} for uid in rows}
    rejected: dict[str, set] = {}
    for name, (_, type_name) in COLUMNS.items():
        converted = convert_column(frame[name], type_name)
        for uid in rows:
            if converted.errors[uid] is not None:
                rejected.setdefault(uid, set()).add(name)
            elif not pd.isna(converted.values[uid]):  # a null converts to None, NaN or NA by type
                wire[uid][name] = converted.values[uid]
    # (a helper module: no assertion rewriting, so the values are in the messages)
    got, expected = (
        {uid: _plain(values) for uid, values in wire.items()},
        {uid: EXPECTED[uid] for uid in rows},
    )
    assert got == expected, (
        backend,
        {uid: (got[uid], expected[uid]) for uid in rows if got[uid] != expected[uid]},
    )
    expected_rejected = {uid: names for uid, names in REJECTED.items() if uid in rows}
    assert rejected == expected_rejected, (backend, rejected, expected_rejected)


def _plain(values: dict) -> dict:
    return {
        key: (bool(v) if isinstance(v, bool) or type(v).__name__ == "bool_" else v)
        for key, v in values.items()
    }
