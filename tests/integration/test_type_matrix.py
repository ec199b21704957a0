"""One type matrix over every source reachable here (SQLite, PostgreSQL, DuckDB, MariaDB): the same logical
rows, written through SQLAlchemy's generic types, read by the source reader and converted by the contract's
type table, give the same wire values and the same rejections. Where a warehouse cannot hold a value (NaN in
MariaDB's DOUBLE, in SQLite's REAL) the row is left out there; docs/sources.md lists the differences."""

from __future__ import annotations

import datetime as dt
import decimal
import math

import pandas as pd
import pytest
import sqlalchemy as sa

from contentstack_assets.engine.convert import convert_column
from contentstack_assets.engine.source import SourceReader, _engine
from contentstack_assets.spec import SourceSpec
from tests.integration.warehouses import mysql_database, require_modules

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
NO_NAN = {"sqlite", "mysql"}  # SQLite stores a NaN REAL as NULL; MariaDB's DOUBLE refuses NaN


@pytest.fixture(params=["sqlite", "postgres", "duckdb", "mysql"])
def source_url(request, tmp_path):
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'matrix.db'}"
    elif request.param == "postgres":
        require_modules("postgres", "psycopg")
        yield request.getfixturevalue("postgres_url")
    elif request.param == "duckdb":
        require_modules("duckdb", "duckdb", "duckdb_engine")
        yield f"duckdb:///{tmp_path / 'matrix.duckdb'}"
    else:
        with mysql_database() as url:
            yield url


def test_the_same_rows_give_the_same_wire_values_everywhere(source_url):
    engine = sa.create_engine(source_url, poolclass=sa.pool.NullPool)
    backend = engine.dialect.name
    meta = sa.MetaData()
    users = sa.Table(
        "users", meta, sa.Column("user_uid", sa.String(20)),
        *(sa.Column(name, kind()) for name, (kind, _) in COLUMNS.items()),
    )  # fmt: skip
    meta.create_all(engine)
    rows = {uid: row for uid, row in ROWS.items() if not (uid == "nan" and backend in NO_NAN)}
    with engine.begin() as connection:
        if backend == "mysql":
            connection.execute(sa.text("SET time_zone = '+00:00'"))
        connection.execute(
            users.insert(),
            [{"user_uid": uid, **{c: row.get(c) for c in COLUMNS}} for uid, row in rows.items()],
        )
    engine.dispose()

    source = SourceSpec.model_validate({"url": source_url, "table": "users"})
    frame = SourceReader(source, ["user_uid", *COLUMNS]).read().set_index("user_uid")
    _engine(source_url).dispose()
    wire: dict[str, dict] = {uid: {} for uid in rows}
    rejected: dict[str, set] = {}
    for name, (_, type_name) in COLUMNS.items():
        converted = convert_column(frame[name], type_name)
        for uid in rows:
            if converted.errors[uid] is not None:
                rejected.setdefault(uid, set()).add(name)
            elif not pd.isna(converted.values[uid]):  # a null converts to None, NaN or NA by type
                wire[uid][name] = converted.values[uid]
    expected = {uid: EXPECTED[uid] for uid in rows}
    assert {uid: _plain(values) for uid, values in wire.items()} == expected, backend
    assert rejected == {uid: names for uid, names in REJECTED.items() if uid in rows}, backend


def _plain(values: dict) -> dict:
    return {
        key: (bool(v) if isinstance(v, bool) or type(v).__name__ == "bool_" else v)
        for key, v in values.items()
    }
