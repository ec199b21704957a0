"""One type matrix over every source reachable in the project's environment (SQLite, PostgreSQL, DuckDB,
MariaDB; Snowflake via fakesnow runs the same rows in tests/warehouses/, in the Makefile's second
environment): the same logical rows, written through SQLAlchemy's generic types, read by the source reader
and converted by the contract's type table (tests/integration/type_matrix.py), give the same wire values and
the same rejections. Where a warehouse cannot hold a value (NaN in MariaDB's DOUBLE, in SQLite's REAL) the
row is left out there; docs/sources.md lists the differences."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from contentstack_assets.spec import SourceSpec
from tests.integration.type_matrix import COLUMNS, ROWS, check_wire_values, insert_rows
from tests.integration.warehouses import mysql_database, require_modules

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
        insert_rows(connection, users, rows)
    engine.dispose()
    check_wire_values(SourceSpec.model_validate({"url": source_url, "table": "users"}), rows, backend)
