"""SQL safety: table, schema and column names from the spec are quoted identifiers, never SQL text.

A table, a schema and columns named like injections (`users"; DROP TABLE canary; --` and friends) are
created for real on SQLite and PostgreSQL, then synced end to end and read through every statement the
source reader builds (the read, a time window, the sensor's probe and watermark reads). Every statement
that reached the database is captured: each hostile name appears in it only as a correctly quoted
identifier, the canary table is still there, and the users arrive with the right values.
"""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa

from contentstack_assets.engine.source import SourceError, SourceReader, Window
from contentstack_assets.spec import SourceSpec
from tests.helpers import push_metadata, run_job, users_sync, write_spec

TABLE = 'users"; DROP TABLE canary; --'
SCHEMA = 'crm"; DROP TABLE canary; --'
COLUMNS = {
    "uid": 'uid"); DELETE FROM canary; --',
    "plan": "plan'; DROP TABLE canary; --",
    "ltv": "ltv %(x)s :p ? %s",  # looks like bind parameters to every DBAPI paramstyle
    "vip": "select",  # a reserved word
    "orders": "Orders Count",  # a space and capitals
    "updated": 'updated"at; DROP TABLE canary',
}
HOSTILE = [TABLE, SCHEMA, *COLUMNS.values()]


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


@pytest.fixture(params=["sqlite", "postgres"])
def database(request, tmp_path) -> tuple[str, str | None]:
    """(URL, schema): a database holding the hostile table and a canary table."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'hostile.db'}", None
    return request.getfixturevalue("postgres_url"), SCHEMA


def _create(url: str, schema: str | None) -> None:
    engine = sa.create_engine(url)
    meta = sa.MetaData()
    canary = sa.Table("canary", meta, sa.Column("alive", sa.Integer))
    users = sa.Table(
        TABLE,
        meta,
        sa.Column(COLUMNS["uid"], sa.Text),
        sa.Column(COLUMNS["plan"], sa.Text),
        sa.Column(COLUMNS["ltv"], sa.Float),
        sa.Column(COLUMNS["vip"], sa.Boolean),
        sa.Column(COLUMNS["orders"], sa.Integer),
        sa.Column(COLUMNS["updated"], sa.DateTime),
        schema=schema,
    )
    with engine.begin() as connection:
        if schema:
            connection.execute(sa.schema.CreateSchema(schema))
        meta.create_all(connection)
        connection.execute(canary.insert(), [{"alive": 1}])
        connection.execute(
            users.insert(),
            [
                {
                    COLUMNS["uid"]: f"q{index}",
                    COLUMNS["plan"]: "'; DROP TABLE canary; --" if index == 0 else "gold",
                    COLUMNS["ltv"]: index + 0.5,
                    COLUMNS["vip"]: index % 2 == 0,
                    COLUMNS["orders"]: index,
                    COLUMNS["updated"]: dt.datetime(2024, 5, 1 + index),
                }
                for index in range(5)
            ],
        )
    engine.dispose()


@pytest.fixture
def statements():
    """Every SQL statement any engine sends while the test runs."""
    captured: list[str] = []

    def capture(connection, cursor, statement, parameters, context, executemany):  # noqa: ANN001
        captured.append(statement)

    sa.event.listen(sa.engine.Engine, "before_cursor_execute", capture)
    yield captured
    sa.event.remove(sa.engine.Engine, "before_cursor_execute", capture)


def _assert_only_quoted(statements: list[str]) -> int:
    """Each hostile name is present only as a quoted identifier: removing those leaves no 'canary'."""
    touching = [statement for statement in statements if "canary" in statement]
    for statement in touching:
        stripped = statement
        for name in sorted(HOSTILE, key=len, reverse=True):
            stripped = stripped.replace(_quoted(name), '"<identifier>"')
        assert "canary" not in stripped, statement
    return len(touching)


def _canary_alive(url: str) -> bool:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            return connection.execute(sa.text("SELECT alive FROM canary")).scalar_one() == 1
    finally:
        engine.dispose()


def test_hostile_names_sync_end_to_end_as_quoted_identifiers(
    database, tmp_path, emulator, instance, statements
):
    url, schema = database
    _create(url, schema)
    statements.clear()  # only what the sync sends from here on
    sync = users_sync(
        url,
        emulator.url,
        match={"column": COLUMNS["uid"]},
        attributes={
            "plan": {"column": COLUMNS["plan"], "type": "string"},
            "ltv": {"column": COLUMNS["ltv"], "type": "number"},
            "vip": {"column": COLUMNS["vip"], "type": "boolean"},
            "orders": {"column": COLUMNS["orders"], "type": "integer"},
        },
    )
    sync["source"] = {"url": url, "table": TABLE, **({"schema": schema} if schema else {})}
    result = run_job(write_spec(tmp_path / "syncs.yaml", [sync]), "users_sync", instance)
    assert result.success
    assert push_metadata(result)["users_delivered"] == 5
    assert emulator.users() == {
        f"q{index}": {
            "plan": "'; DROP TABLE canary; --" if index == 0 else "gold",
            "ltv": index + 0.5,
            "vip": index % 2 == 0,
            "orders": index,
        }
        for index in range(5)
    }
    assert _assert_only_quoted(statements) >= 1  # the read named the hostile table, quoted
    assert _canary_alive(url)


def test_every_statement_of_the_source_reader_quotes_hostile_names(database, statements):
    """The window filter, the sensor's probe and its watermark read, on a hostile partition column."""
    url, schema = database
    _create(url, schema)
    statements.clear()  # only what the sync sends from here on
    source = SourceSpec.model_validate(
        {
            "url": url,
            "table": TABLE,
            "schema": schema,
            "updated_at": COLUMNS["updated"],
            "start_date": "2024-05-01",
        }
    )
    reader = SourceReader(source, [COLUMNS["uid"], COLUMNS["plan"], COLUMNS["updated"]])
    window = Window(dt.datetime(2024, 5, 2, tzinfo=dt.UTC), dt.datetime(2024, 5, 4, tzinfo=dt.UTC))
    frame = reader.read(window)
    assert sorted(frame[COLUMNS["uid"]]) == ["q1", "q2"]
    probe = reader.probe()
    assert probe["rows"] == 5 and probe["max_updated"].startswith("2024-05-05")
    lowest, highest = reader.partition_range_since(dt.datetime(2024, 5, 3, 12))
    assert str(lowest).startswith("2024-05-04") and str(highest).startswith("2024-05-05")
    assert _assert_only_quoted(statements) >= 3
    assert _canary_alive(url)


def test_a_missing_hostile_table_is_reported_with_its_name_not_executed(database, statements):
    url, schema = database
    _create(url, schema)
    statements.clear()  # only what the sync sends from here on
    source = SourceSpec.model_validate({"url": url, "table": TABLE + " (missing)", "schema": schema})
    with pytest.raises(SourceError, match="does not exist"):
        SourceReader(source, [COLUMNS["uid"]]).read()
    assert _canary_alive(url)
