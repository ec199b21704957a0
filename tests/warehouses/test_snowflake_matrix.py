"""The type matrix (tests/integration/type_matrix.py) on Snowflake via fakesnow: the table in Snowflake's own
types, upper-case unquoted names (the spec's lower-case names find them), the same rows inserted through
snowflake-sqlalchemy, read by the source reader over the real connector: the same wire values and the same
rejections as SQLite, PostgreSQL, DuckDB and MariaDB."""

from __future__ import annotations

import sqlalchemy as sa

from contentstack_assets.spec import SourceSpec
from tests.integration.type_matrix import COLUMNS, ROWS, check_wire_values, insert_rows

# Snowflake's types for the matrix's columns (BIGINT and the other integer names are NUMBER(38,0) there)
SNOWFLAKE_TYPES = {
    "big": "NUMBER(38,0)",
    "num": "NUMBER(30,10)",
    "flt": "FLOAT",
    "flag": "BOOLEAN",
    "naive": "TIMESTAMP_NTZ",
    "zoned": "TIMESTAMP_TZ",
    "day": "DATE",
    "txt": "VARCHAR",
}


def test_the_matrix_rows_give_the_same_wire_values_on_snowflake(snowflake_url):
    engine = sa.create_engine(snowflake_url, poolclass=sa.pool.NullPool)
    columns = ", ".join(f"{name.upper()} {SNOWFLAKE_TYPES[name]}" for name in COLUMNS)
    with engine.begin() as connection:
        connection.execute(sa.text(f"CREATE TABLE USERS (USER_UID VARCHAR(20), {columns})"))
        # lower-case names: SQLAlchemy's case-insensitive ones, left unquoted, so USERS, USER_UID, BIG...
        users = sa.table("users", sa.column("user_uid"), *(sa.column(name) for name in COLUMNS))
        # the connector binds client-side, a float NaN as the bare word `nan` (an unknown column to Snowflake as
        # to fakesnow): the NaN is written as Snowflake's literal
        insert_rows(connection, users, {**ROWS, "nan": {}})
        connection.execute(sa.text("UPDATE USERS SET FLT = 'NaN'::FLOAT WHERE USER_UID = 'nan'"))
    engine.dispose()
    source = SourceSpec.model_validate({"url": snowflake_url, "table": "users"})
    check_wire_values(source, ROWS, "snowflake")
