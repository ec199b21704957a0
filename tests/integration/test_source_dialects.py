"""The statements the source reader issues, compiled with each warehouse's SQLAlchemy dialect where its
package installs (Snowflake, BigQuery, Redshift in the project's environment; Databricks, and Snowflake's
snowflake-sqlalchemy 1.11 again, in the Makefile's .venv-warehouses): the table read, the window filter, the
read by uid, the count, the probe and the per-day digests. Quoting is the dialect's and every function is one
the warehouse has; no server is reached."""

from __future__ import annotations

import datetime as dt
import importlib.util
import re

import pytest
import sqlalchemy as sa

from contentstack_assets.engine.source import SourceReader, Window
from contentstack_assets.spec import SourceSpec
from tests.integration.warehouses import require_warehouses_venv

WINDOW = Window(dt.datetime(2024, 3, 1, tzinfo=dt.UTC), dt.datetime(2024, 3, 2, tzinfo=dt.UTC))

# dialect: (its package, the URL form, its identifier quote, the functions the statements may call)
DIALECTS = {
    "snowflake": ("snowflake.sqlalchemy", "snowflake://", '"', {"CONVERT_TIMEZONE", "DATE_PART"}),
    "bigquery": ("sqlalchemy_bigquery", "bigquery://", "`", {"UNNEST"}),  # IN UNNEST(@ids)
    "redshift": ("sqlalchemy_redshift", "redshift+psycopg2://", '"', set()),
    "databricks": ("databricks.sqlalchemy", "databricks://", "`", set()),
}
COMMON_FUNCTIONS = {"COUNT", "MIN", "MAX", "SUM", "TRIM", "RTRIM", "CAST", "IN", "LIKE", "CASE", "WHEN"}


def _dialect(name: str) -> sa.Dialect:
    package, url, _, _ = DIALECTS[name]
    if name == "databricks":
        # its connector brings pyarrow, which the project's environment must not hold (see the Makefile):
        # compiled in .venv-warehouses, where CI fails without it
        require_warehouses_venv(name, package)
    elif importlib.util.find_spec(package.split(".")[0]) is None or importlib.util.find_spec(package) is None:
        pytest.skip(f"{package} is not installed: pip install 'contentstack_assets[{name}]'")
    return sa.engine.make_url(url).get_dialect()()


def _reader(dialect: str, partition_type: sa.types.TypeEngine) -> tuple[SourceReader, sa.FromClause]:
    source = SourceSpec.model_validate({
        "url": "sqlite://", "table": "users", "schema": "analytics", "updated_at": "updated_at",
        "start_date": "2024-01-01",
    })  # fmt: skip
    reader = SourceReader(source, ["user_uid", "Plan Name", "updated_at"])
    reader._dialect = dialect
    reader._window_column_type = partition_type
    reader._window_column_has_tz = bool(getattr(partition_type, "timezone", False))
    return reader, reader._table()


def _statements(reader: SourceReader, relation: sa.FromClause, dialect: str) -> dict[str, sa.Select]:
    return {
        "read": reader._statement(relation, None),
        "window": reader._statement(relation, WINDOW),
        "by uid": reader._statement(relation, None, ("user_uid", ["u1", "42"]), dialect),
        "count": reader._count_statement(relation),
        "probe": reader._probe_statement(relation),
        "digests": reader._digest_statement(relation),
    }


def _functions(sql: str) -> set[str]:
    return {name.upper() for name in re.findall(r"\b([A-Za-z_]+)\s*\(", sql)} - {"AS", "VALUES"}


@pytest.mark.parametrize("name", sorted(DIALECTS))
@pytest.mark.parametrize(
    "partition_type",
    [sa.TIMESTAMP(), sa.TIMESTAMP(timezone=True), sa.Date(), sa.String()],
    ids=["timestamp", "zoned", "date", "text"],
)
def test_every_statement_compiles_with_the_dialect(name, partition_type):
    dialect = _dialect(name)
    _, _, quote, own_functions = DIALECTS[name]
    reader, relation = _reader(name, partition_type)
    for purpose, statement in _statements(reader, relation, name).items():
        sql = str(statement.compile(dialect=dialect))
        # names quoted by the dialect: the odd one quoted, the plain ones (case-insensitive) bare
        if purpose in ("read", "window", "by uid"):
            assert f"{quote}Plan Name{quote}" in sql, (purpose, sql)
        assert "analytics.users" in sql or f"{quote}analytics{quote}.{quote}users{quote}" in sql, sql
        assert "'" not in sql.replace("'UTC'", "").replace("'%.%'", "").replace("'0'", "").replace("'.'", "")
        unknown = _functions(sql) - COMMON_FUNCTIONS - own_functions - {"DATE", "COALESCE"}
        assert not unknown, (name, purpose, unknown, sql)
    window_sql = str(_statements(reader, relation, name)["window"].compile(dialect=dialect))
    assert re.search(
        r"updated_at\S* >= \S*window_start\S* AND \S*updated_at\S* < \S*window_end", window_sql
    ), window_sql


def test_snowflake_zoned_days_are_utc_and_lowercase_names_stay_unquoted():
    dialect = _dialect("snowflake")
    from snowflake.sqlalchemy import TIMESTAMP_TZ

    source = SourceSpec.model_validate(
        {"url": "snowflake://", "table": "users", "updated_at": "updated_at", "start_date": "2024-01-01"}
    )
    reader = SourceReader(source, ["user_uid", "updated_at"])
    reader._dialect, reader._window_column_type, reader._window_column_has_tz = (
        "snowflake",
        TIMESTAMP_TZ(),
        True,
    )
    sql = str(reader._digest_statement(reader._table()).compile(dialect=dialect))
    # a lower-case name is Snowflake's unquoted (upper-case) identifier: USER_UID, UPDATED_AT
    assert "FROM users" in sql and '"' not in sql
    assert "CAST(convert_timezone(" in sql and "date_part(epoch_microsecond, users.updated_at)" in sql


def test_a_missing_dialect_names_the_extra_to_install():
    if importlib.util.find_spec("databricks") is not None:
        pytest.skip("databricks-sqlalchemy is installed here: nothing is missing")
    from contentstack_assets.engine.source import SourceError

    url = "databricks://token:dapi-s3cret@adb-1.azuredatabricks.net?http_path=/sql/1.0/warehouses/a1&catalog=main"
    source = SourceSpec.model_validate({"url": url, "table": "users"})
    with pytest.raises(SourceError) as raised:
        SourceReader(source, ["user_uid"]).count()
    message = str(raised.value)
    assert "pip install 'contentstack_assets[databricks]'" in message
    assert "token:***@adb-1.azuredatabricks.net" in message and "dapi-s3cret" not in message


def test_snowflake_reads_more_uids_than_one_in_list_holds():
    """Snowflake refuses an IN list of more than 16,384 values (a rerun reads 20,000 moved uids at a time):
    the read by uid splits its list into IN lists of at most that many, joined by OR, and keeps every value."""
    dialect = _dialect("snowflake")
    from contentstack_assets.engine.source.dialects import text_in_condition

    values = [str(number) for number in range(40_000)]
    compiled = text_in_condition(sa.column("user_uid"), values, "snowflake").compile(dialect=dialect)
    lists = [held for held in compiled.params.values() if isinstance(held, list)]  # one per IN
    assert [len(held) for held in lists] == [16_384, 16_384, 7_232] * 2  # as text, and as whole numbers
    assert sum(lists[:3], []) == values and sum(lists[3:], []) == values
    # elsewhere one list, as before
    assert str(text_in_condition(sa.column("user_uid"), values, "postgresql")).count(" IN ") == 2


def test_snowflakes_row_digest_is_a_bigint_of_hash_over_each_value_and_its_text():
    dialect = _dialect("snowflake")
    from contentstack_assets.engine.source.digests import row_digest

    digest = row_digest([sa.column("user_uid"), sa.column("plan")], "snowflake", "p")
    sql = str(digest.compile(dialect=dialect))
    assert sql.startswith("CAST(bitand(hash(") and sql.endswith(", 9223372036854775807) AS BIGINT)"), sql
    assert sql.count("to_binary(to_varchar(") == 2 and "'UTF-8'" in sql
