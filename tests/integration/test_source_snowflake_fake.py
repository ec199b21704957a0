"""Snowflake through snowflake-sqlalchemy against fakesnow (a Snowflake connector backed by DuckDB), where
fakesnow installs: it pins sqlglot below what dagster-dbt's compiled sqlglot needs, so the project's own
environment does not hold it, and this test skips there (on CI too). Run it in an environment with
`pip install fakesnow 'snowflake-connector-python<5' -e '.[snowflake,dev]'` (fakesnow 0.12 imports a module
connector 5 removed)."""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa

from contentstack_assets.engine.source import SourceReader, Window, _engine
from contentstack_assets.spec import SourceSpec
from tests.integration.warehouses import optional_modules

MARCH_1 = Window(dt.datetime(2024, 3, 1, tzinfo=dt.UTC), dt.datetime(2024, 3, 2, tzinfo=dt.UTC))
URL = "snowflake://user:pw@account/db1/schema1"


@pytest.fixture
def snowflake():
    optional_modules("snowflake", "fakesnow", "snowflake.sqlalchemy")
    import fakesnow

    with fakesnow.patch():
        _engine.cache_clear()
        yield URL
    _engine.cache_clear()


def test_a_table_of_snowflake_types_its_window_probe_and_digests(snowflake):
    engine = sa.create_engine(snowflake)
    with engine.begin() as connection:
        connection.execute(sa.text("CREATE SCHEMA IF NOT EXISTS schema1"))
        connection.execute(sa.text(
            "CREATE TABLE users (user_uid VARCHAR, orders NUMBER(38,0), signup TIMESTAMP_TZ, "
            "profile VARIANT, updated_at TIMESTAMP_NTZ)"
        ))  # fmt: skip
        connection.execute(sa.text(
            "INSERT INTO users SELECT 'a', 9007199254740993, '2024-03-02 01:30:00 +0200'::TIMESTAMP_TZ, "
            "PARSE_JSON('[1, 2]'), '2024-03-01 10:00:00'"
        ))  # fmt: skip
    source = SourceSpec.model_validate(
        {"url": snowflake, "table": "users", "updated_at": "updated_at", "start_date": "2024-01-01"}
    )
    reader = SourceReader(source, ["user_uid", "orders", "signup", "profile", "updated_at"])
    (row,) = reader.read(MARCH_1).to_dict("records")
    assert row["orders"] == 9007199254740993  # NUMBER(38,0): an int, which `integer` rejects above 2^53
    assert row["signup"] == dt.datetime(2024, 3, 1, 23, 30, tzinfo=dt.UTC)
    assert row["profile"] == "[1,2]"  # VARIANT: its JSON text
    assert reader.probe() == {"rows": 1, "max_updated": "2024-03-01 10:00:00"}
    assert list(reader.day_digests()) == ["2024-03-01"]
