"""The source reader on valid but awkward sources, on SQLite and PostgreSQL: partition columns of epoch
numbers (or of values no window can compare), `query:` text ending in a comment or semicolons, and queries
whose result names a column twice."""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa

from contentstack_assets.engine.source import SourceError, SourceReader, Window
from contentstack_assets.spec import SourceSpec
from tests.helpers import write_sqlite_table

MARCH_1 = Window(dt.datetime(2024, 3, 1, tzinfo=dt.UTC), dt.datetime(2024, 3, 2, tzinfo=dt.UTC))


@pytest.fixture(params=["sqlite", "postgres"])
def url(request, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'src.db'}"
    return request.getfixturevalue("postgres_url")


def _table(url: str, updated_type: sa.types.TypeEngine, updated: list[object]) -> None:
    """users(user_uid, plan_name, updated_at) and plans(user_uid, plan_name), one plan per user."""
    engine = sa.create_engine(url)
    meta = sa.MetaData()
    users = sa.Table(
        "users",
        meta,
        sa.Column("user_uid", sa.Text),
        sa.Column("plan_name", sa.Text),
        sa.Column("updated_at", updated_type),
    )
    plans = sa.Table("plans", meta, sa.Column("user_uid", sa.Text), sa.Column("plan_name", sa.Text))
    meta.create_all(engine)
    with engine.begin() as connection:
        connection.execute(
            users.insert(),
            [
                {"user_uid": f"u{i}", "plan_name": "free", "updated_at": value}
                for i, value in enumerate(updated)
            ],
        )
        connection.execute(
            plans.insert(), [{"user_uid": f"u{i}", "plan_name": "pro"} for i in range(len(updated))]
        )
    engine.dispose()


def _source(url: str, **keys) -> SourceSpec:
    return SourceSpec.model_validate({"url": url, "table": "users", **keys})


# -- epoch numbers in the partition column ----------------------------------------------------------
@pytest.mark.parametrize("scale", [1, 1000])
def test_a_window_on_epoch_numbers_reads_its_rows(url, scale):
    _table(url, sa.BigInteger, [(1709287200 + i) * scale for i in range(5)])  # 2024-03-01 10:00:0i UTC
    source = _source(url, updated_at="updated_at", start_date="2024-01-01")
    reader = SourceReader(source, ["user_uid", "updated_at"])
    assert sorted(reader.read(MARCH_1)["user_uid"]) == [f"u{i}" for i in range(5)]
    day_before = Window(dt.datetime(2024, 2, 29, tzinfo=dt.UTC), MARCH_1.start)
    assert len(reader.read(day_before)) == 0
    # the sensor's range read: UTC instants, from a watermark the probe gave as text
    lowest, highest = reader.partition_range_since(reader.probe()["max_updated"])
    assert lowest == highest == dt.datetime(2024, 3, 1, 10, 0, 4, tzinfo=dt.UTC)
    lowest, highest = reader.partition_range_since(None)
    assert (lowest, highest) == (
        dt.datetime(2024, 3, 1, 10, tzinfo=dt.UTC),
        dt.datetime(2024, 3, 1, 10, 0, 4, tzinfo=dt.UTC),
    )
    assert reader.partition_range_since(dt.datetime(2024, 3, 1, 10, 0, 2)) == (
        dt.datetime(2024, 3, 1, 10, 0, 2, tzinfo=dt.UTC),
        highest,
    )


@pytest.mark.parametrize(
    ("values", "reason"),
    [
        ([1709287200, "2024-03-01 10:00:00"], "holds both numbers (1709287200) and text"),
        (["1709287200", "1709287201"], "holds numbers as text ('1709287200')"),
        ([1709287200 * 10**6], "only epoch seconds or milliseconds are supported"),
    ],
    ids=["numbers_and_text", "numbers_as_text", "microseconds"],
)
def test_a_partition_column_no_window_can_compare_is_refused(tmp_path, values, reason):
    rows = [{"user_uid": f"u{i}", "updated_at": value} for i, value in enumerate(values)]
    url = write_sqlite_table(tmp_path / "src.db", rows, columns=["user_uid", "updated_at"])  # untyped
    source = _source(url, updated_at="updated_at", start_date="2024-01-01")
    reader = SourceReader(source, ["user_uid", "updated_at"])
    for attempt in (lambda: reader.read(MARCH_1), lambda: reader.partition_range_since(None)):
        with pytest.raises(SourceError) as raised:
            attempt()
        message = str(raised.value)
        assert message.startswith(f"source {source.display_url} (users): the partition column 'updated_at' ")
        assert reason in message and "\n" not in message
    assert len(reader.read()) == len(values)  # a read of everything needs no window


# -- query text -------------------------------------------------------------------------------------
def _query(url: str, query: str) -> SourceSpec:
    return SourceSpec.model_validate({"url": url, "query": query})


@pytest.mark.parametrize(
    "query",
    [
        "SELECT user_uid, plan_name FROM users -- every user",
        "SELECT user_uid, plan_name FROM users;",
        "SELECT user_uid, plan_name FROM users ; ;\n  \n",
        "SELECT user_uid, plan_name FROM users; -- every user",
        "SELECT user_uid, plan_name FROM users /* every user */;\n",
        "SELECT user_uid, 'a;b' AS plan_name FROM users -- a ';' in a literal",
        'SELECT user_uid, plan_name AS "x;y", plan_name FROM users',
    ],
    ids=[
        "line_comment",
        "semicolon",
        "semicolons_and_blanks",
        "semicolon_comment",
        "block_comment",
        "literal",
        "name",
    ],
)
def test_a_query_ending_in_a_comment_or_semicolons_is_read(url, query):
    _table(url, sa.Text, ["2024-03-01 10:00:00"] * 3)
    reader = SourceReader(_query(url, query), ["user_uid", "plan_name"])
    frame = reader.read()
    assert sorted(frame["user_uid"]) == ["u0", "u1", "u2"]
    assert reader.count() == 3 and reader.probe()["rows"] == 3


def test_a_query_ending_in_a_comment_is_read_within_a_window(url):
    _table(url, sa.BigInteger, [1709287200, 1709287200 - 86400])
    query = "SELECT user_uid, updated_at FROM users; -- the users"
    source = SourceSpec.model_validate(
        {"url": url, "query": query, "updated_at": "updated_at", "start_date": "2024-01-01"}
    )
    assert list(SourceReader(source, ["user_uid", "updated_at"]).read(MARCH_1)["user_uid"]) == ["u0"]


@pytest.mark.parametrize(
    "query",
    ["SELECT user_uid FROM users; DROP TABLE plans", "SELECT user_uid FROM users;\nSELECT 1;"],
    ids=["drop", "two_selects"],
)
def test_a_query_of_more_than_one_statement_is_refused(url, query):
    _table(url, sa.Text, ["2024-03-01"])
    source = _query(url, query)
    with pytest.raises(SourceError) as raised:
        SourceReader(source, ["user_uid"]).read()
    message = str(raised.value)
    assert message.startswith(f"source {source.display_url}: the query holds more than one statement")
    assert "one statement only" in message and "\n" not in message
    assert sa.inspect(sa.create_engine(url)).has_table("plans")


# -- duplicated column names ------------------------------------------------------------------------
JOINED = "SELECT u.*, p.plan_name FROM users u JOIN plans p ON p.user_uid = u.user_uid"


def test_a_duplicated_column_the_sync_reads_is_refused(url):
    _table(url, sa.Text, ["2024-03-01"] * 2)
    source = _query(url, JOINED)
    reader = SourceReader(source, ["user_uid", "plan_name"])
    for attempt in (reader.read, reader.count, reader.probe):
        with pytest.raises(SourceError) as raised:
            attempt()
        message = str(raised.value)
        assert message.startswith(
            f"source {source.display_url}: the query returns more than one column named"
        )
        assert "'plan_name'" in message and "alias" in message and "\n" not in message


def test_a_duplicated_column_the_sync_does_not_read_is_allowed(url):
    _table(url, sa.Text, ["2024-03-01"] * 2)
    frame = SourceReader(_query(url, JOINED), ["user_uid", "updated_at"]).read()
    assert sorted(frame["user_uid"]) == ["u0", "u1"]
