"""A rejected row names what finds it in the source: its table's primary key (`source_key`, `id=7`) when the
table has one, beside its uid; `row_number` stays its place in the run's read. A `query:` has no key."""

import csv
import io
import sqlite3

import dagster as dg
import sqlalchemy as sa

from contentstack_assets import cli
from tests.helpers import USER_COLUMNS, run_job, users_sync, write_spec

ROWS = [
    (1, "u1", "free", "12.5"),
    (7, None, "free", "1"),  # no uid: only its key finds it
    (9, "u9", "pro", "abc"),  # not a number
    (12, "u12", "pro", "3"),
]


def _table(path, key: str = "id INTEGER PRIMARY KEY", constraint: str = "") -> str:
    """The users table of the tests (USER_COLUMNS) with an `id` and the given key."""
    with sqlite3.connect(path) as connection:
        connection.execute(f"CREATE TABLE users ({key}, {', '.join(USER_COLUMNS)}{constraint})")
        connection.executemany(
            "INSERT INTO users (id, user_uid, plan_name, lifetime_value) VALUES (?, ?, ?, ?)", ROWS
        )
    return f"sqlite:///{path}"


def _rejected(capsys, run_id: str) -> list[dict]:
    capsys.readouterr()
    assert cli.main(["rejected", "--sync", "users", "--run", run_id]) == 0
    return list(csv.DictReader(io.StringIO(capsys.readouterr().out)))


def _sample(result: dg.ExecuteInProcessResult) -> str:
    [event] = [
        event
        for event in result.get_asset_materialization_events()
        if event.materialization.asset_key == dg.AssetKey(["users", "mapped_attributes"])
    ]
    return event.materialization.metadata["rejected_sample"].value


def test_a_rejected_row_of_a_table_with_a_primary_key_names_it(tmp_path, instance, emulator, capsys):
    spec = write_spec(tmp_path / "syncs.yaml", [users_sync(_table(tmp_path / "src.db"), emulator.url)])
    result = run_job(spec, "users_sync", instance)
    assert result.success
    rejected = _rejected(capsys, result.run_id)
    assert [(row["source_key"], row["user_uid"]) for row in rejected] == [("id=7", ""), ("id=9", "u9")]
    assert list(rejected[0]) == ["sync", "run_id", "source_key", "row_number", "user_uid", "reason", "at"]
    sample = _sample(result)
    assert "| source_key |" in sample and "| id=7 |" in sample and "| id=9 |" in sample


def test_a_composite_key_names_every_column_and_a_query_has_none(tmp_path, instance, emulator, capsys):
    url = _table(tmp_path / "src.db", "id INTEGER, region TEXT DEFAULT 'eu'", ", PRIMARY KEY (region, id)")
    spec = write_spec(tmp_path / "syncs.yaml", [users_sync(url, emulator.url)])
    result = run_job(spec, "users_sync", instance)
    assert [row["source_key"] for row in _rejected(capsys, result.run_id)] == [
        "region=eu, id=7",
        "region=eu, id=9",
    ]

    source = {"url": url, "query": f"SELECT {', '.join(USER_COLUMNS)} FROM users"}
    spec = write_spec(tmp_path / "query.yaml", [users_sync(url, emulator.url, source=source)])
    result = run_job(spec, "users_sync", instance)
    rejected = _rejected(capsys, result.run_id)
    assert [(row["source_key"], row["user_uid"]) for row in rejected] == [("", ""), ("", "u9")]
    assert "source_key" not in _sample(result)  # no key to show: the table keeps to uid and reason


def test_a_postgresql_table_in_a_schema_gives_its_key(postgres_url, instance, emulator, capsys, tmp_path):
    """PostgreSQL's key, read through the inspector in the table's own schema."""
    with sa.create_engine(postgres_url).begin() as connection:
        connection.execute(sa.text("CREATE SCHEMA crm"))
        connection.execute(
            sa.text(
                f"CREATE TABLE crm.users (account TEXT, id INTEGER, {' TEXT, '.join(USER_COLUMNS)} TEXT, "
                "PRIMARY KEY (account, id))"
            )
        )
        connection.execute(
            sa.text(
                "INSERT INTO crm.users (account, id, user_uid, plan_name, lifetime_value) "
                "VALUES ('a', 1, 'u1', 'free', '2'), ('a', 2, NULL, 'free', '3'), ('b', 1, 'u3', 'pro', 'abc')"
            )
        )
    source = {"url": postgres_url, "table": "users", "schema": "crm"}
    spec = write_spec(tmp_path / "syncs.yaml", [users_sync(postgres_url, emulator.url, source=source)])
    result = run_job(spec, "users_sync", instance)
    rejected = _rejected(capsys, result.run_id)
    assert sorted(row["source_key"] for row in rejected) == ["account=a, id=2", "account=b, id=1"]
