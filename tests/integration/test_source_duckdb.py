"""DuckDB as a source (duckdb-engine): a table read (its columns from information_schema), the window of a
partition and the sensor's per-day digests on each time type, a zoned column under a session in another zone,
and a partitioned users sync with its sensor through Dagster to the emulator."""

from __future__ import annotations

import datetime as dt

import dagster as dg
import pytest
import sqlalchemy as sa

from contentstack_assets.definitions import build_definitions
from contentstack_assets.engine.source import SourceError, SourceReader, Window, _engine
from contentstack_assets.spec import SourceSpec, load_spec
from tests.helpers import json_text, push_metadata, run_job, users_sync, write_spec
from tests.integration.warehouses import execute, require_modules

MARCH_1 = Window(dt.datetime(2024, 3, 1, tzinfo=dt.UTC), dt.datetime(2024, 3, 2, tzinfo=dt.UTC))


@pytest.fixture
def duckdb_url(tmp_path) -> str:
    require_modules("duckdb", "duckdb", "duckdb_engine")
    return f"duckdb:///{tmp_path / 'warehouse.duckdb'}"


def _source(url: str, **keys) -> SourceSpec:
    return SourceSpec.model_validate({"url": url, "table": "users", **keys})


def test_a_table_is_read_in_chunks_with_its_schema(duckdb_url):
    execute(duckdb_url, "CREATE SCHEMA crm",
            "CREATE TABLE crm.users AS SELECT 'u' || i AS user_uid, i AS order_count FROM range(2500) t(i)")  # fmt: skip
    source = _source(duckdb_url, schema="crm", chunk_size=100)
    progress: list[int] = []
    frame = SourceReader(source, ["user_uid", "order_count"]).read(on_progress=progress.append)
    assert len(frame) == 2500 and progress[-1] == 2500
    assert SourceReader(source, ["user_uid"]).count() == 2500
    with pytest.raises(SourceError, match=r"table 'users' does not exist"):
        SourceReader(_source(duckdb_url), ["user_uid"]).count()  # not in the default schema
    with pytest.raises(SourceError, match=r"has no column 'plan_name' \(it has: user_uid, order_count\)"):
        SourceReader(source, ["user_uid", "plan_name"]).count()


@pytest.mark.parametrize("column_type", ["TIMESTAMP", "TIMESTAMPTZ", "DATE", "VARCHAR"])
def test_the_window_and_the_day_digests_on_each_time_type(duckdb_url, column_type):
    values = ["2024-02-29 23:59:59.999999", "2024-03-01 00:00:00", "2024-03-01 23:59:59.5",
              "2024-03-02 00:00:00", None]  # fmt: skip
    if column_type == "DATE":
        values = ["2024-02-29", "2024-03-01", "2024-03-01", "2024-03-02", None]
    if column_type == "TIMESTAMPTZ":  # the same instants, written at another offset
        values = ["2024-03-01 01:59:59.999999+02", "2024-03-01 02:00:00+02", "2024-03-02 01:59:59.5+02",
                  "2024-03-02 02:00:00+02", None]  # fmt: skip
    execute(duckdb_url, f"CREATE TABLE users (user_uid VARCHAR, updated_at {column_type})",
            "INSERT INTO users VALUES (:u, :t)", rows=[{"u": f"u{i}", "t": v} for i, v in enumerate(values)])  # fmt: skip
    source = _source(duckdb_url, updated_at="updated_at", start_date="2024-01-01")
    reader = SourceReader(source, ["user_uid", "updated_at"])
    assert sorted(reader.read(MARCH_1)["user_uid"]) == ["u1", "u2"]
    digests = reader.day_digests()
    assert sorted(digests) == ["2024-02-29", "2024-03-01", "2024-03-02"]
    touched = "2024-03-01 02:00:01+02" if column_type == "TIMESTAMPTZ" else "2024-03-01 00:00:01"
    execute(duckdb_url, f"UPDATE users SET updated_at = '{touched}' WHERE user_uid = 'u1'")
    moved = SourceReader(source, ["user_uid", "updated_at"]).day_digests()
    assert moved["2024-02-29"] == digests["2024-02-29"] and moved["2024-03-02"] == digests["2024-03-02"]
    if column_type != "DATE":  # a DATE cannot move within its day
        assert moved["2024-03-01"] != digests["2024-03-01"]


def test_a_zoned_column_keeps_utc_days_under_a_session_in_another_zone(duckdb_url):
    """DuckDB casts a TIMESTAMPTZ to a date in the session's TimeZone (the machine's zone by default)."""
    execute(duckdb_url, "CREATE TABLE users (user_uid VARCHAR, updated_at TIMESTAMPTZ)",
            "INSERT INTO users VALUES ('late', '2024-03-02 01:30:00+00'), ('early', '2024-03-01 12:00:00+00')")  # fmt: skip
    engine = _engine(duckdb_url)
    listener = lambda connection, _record: connection.execute("SET TimeZone = 'America/New_York'")  # noqa: E731
    sa.event.listen(engine, "connect", listener)
    try:
        source = _source(duckdb_url, updated_at="updated_at", start_date="2024-01-01")
        reader = SourceReader(source, ["user_uid", "updated_at"])
        assert sorted(reader.day_digests()) == ["2024-03-01", "2024-03-02"]  # New York's dates: both 03-01
        assert reader.read(MARCH_1)["user_uid"].tolist() == ["early"]
    finally:
        sa.event.remove(engine, "connect", listener)


def test_a_partitioned_users_sync_from_duckdb_and_its_sensor(tmp_path, duckdb_url, emulator, instance):
    execute(
        duckdb_url,
        "CREATE TABLE users (user_uid VARCHAR, plan_name VARCHAR, lifetime_value DOUBLE, "
        "order_count HUGEINT, is_vip BOOLEAN, created_at TIMESTAMPTZ, birth_date DATE, updated_at TIMESTAMP)",
        "INSERT INTO users VALUES "
        "('d1', 'gold', 12.50, 9007199254740992, true, '2024-01-02 05:04:05+02', '1990-05-06', '2024-03-01 10:00'), "
        "('d2', 'free', NULL, NULL, false, NULL, NULL, '2024-03-02 10:00'), "
        "('d3', 'x', 'NaN'::DOUBLE, 2, NULL, NULL, NULL, '2024-03-01 11:00')",
    )
    sync = users_sync(duckdb_url, emulator.url)
    sync["source"].update(updated_at="updated_at", start_date="2024-03-01")
    spec = write_spec(tmp_path / "syncs.yaml", [sync])
    result = run_job(spec, "users_sync", instance, partition_range=("2024-03-01", "2024-03-01"))
    assert result.success
    assert json_text(emulator.users()) == json_text({
        "d1": {"plan": "gold", "ltv": 12.5, "orders": 2**53, "vip": True, "signup_at": "2024-01-02T03:04:05Z",
               "birthday": "1990-05-06"},
    })  # fmt: skip
    assert push_metadata(result)["rows_rejected"] == 1  # d3: a NaN ltv

    defs = build_definitions(load_spec(spec))
    sensor = defs.resolve_sensor_def("users_source_changed")
    with dg.build_sensor_context(instance=instance, definitions=defs) as context:
        first = sensor(context)
    assert first.run_requests
    execute(
        duckdb_url,
        "INSERT INTO users (user_uid, plan_name, updated_at) VALUES ('d0', 'c', '2024-03-02 09:00')",
    )
    with dg.build_sensor_context(instance=instance, definitions=defs, cursor=first.cursor) as context:
        second = sensor(context)
    assert second.run_requests


def _base_table_mib(connection: sa.Connection) -> float:
    """What DuckDB's buffer pool holds of tables' blocks (`duckdb_memory()`), in MiB."""
    query = "SELECT memory_usage_bytes FROM duckdb_memory() WHERE tag = 'BASE_TABLE'"
    return connection.execute(sa.text(query)).scalar() / 2**20


def test_a_scan_leaves_no_more_of_the_table_in_memory_than_the_bound(duckdb_url, monkeypatch):
    """DuckDB keeps every block a read touched (up to 80% of the machine by default); the sync's reads bound it.
    Here the bound is 16 MB and the table's blocks are about three times that."""
    from contentstack_assets.engine.source import dialects

    monkeypatch.setattr(dialects, "DUCKDB_READ_MEMORY_MIB", 16)
    monkeypatch.setattr(dialects, "DUCKDB_THREAD_MEMORY_MIB", 1)
    execute(duckdb_url, "CREATE TABLE users AS SELECT md5(i::VARCHAR) AS user_uid, "
            "md5((i + 1)::VARCHAR) AS plan_name FROM range(1000000) t(i)")  # fmt: skip
    reader = SourceReader(_source(duckdb_url), ["user_uid", "plan_name"])
    with _engine(duckdb_url).connect() as held:  # the database stays open (with its pool) after the read
        assert held.execute(sa.text("SELECT current_setting('memory_limit')")).scalar().startswith("15.")
        assert sum(len(chunk) for chunk in reader.read_digest_chunks("prefix")) == 1_000_000
        assert _base_table_mib(held) <= 16
        held.execute(sa.text("SET memory_limit = '1GB'"))  # as DuckDB does by default: everything stays
        assert sum(len(chunk) for chunk in reader.read_digest_chunks("prefix")) == 1_000_000
        assert _base_table_mib(held) > 32


def test_a_url_that_sets_memory_limit_keeps_it(duckdb_url):
    execute(duckdb_url, "CREATE TABLE users AS SELECT 'u1' AS user_uid")
    url = f"{duckdb_url}?memory_limit=300MB"
    with _engine(url).connect() as connection:
        assert connection.execute(sa.text("SELECT current_setting('memory_limit')")).scalar() == "286.1 MiB"
    assert SourceReader(_source(url), ["user_uid"]).read()["user_uid"].tolist() == ["u1"]


def test_a_file_this_process_holds_open_through_sqlalchemy_is_read_with_its_settings(duckdb_url):
    """DuckDB refuses a second connection to a file open in the process with other settings: with the file
    open through an engine of the same URL (a user's own asset's, say), the read connects as that engine did
    (the bound left out), and reads."""
    execute(duckdb_url, "CREATE TABLE users AS SELECT 'u1' AS user_uid")
    own = sa.create_engine(duckdb_url, poolclass=sa.pool.NullPool)
    with own.connect() as connection:
        assert SourceReader(_source(duckdb_url), ["user_uid"]).read()["user_uid"].tolist() == ["u1"]
        assert connection.execute(sa.text("SELECT count(*) FROM users")).scalar() == 1
    own.dispose()


def test_the_bound_grows_with_duckdbs_threads(duckdb_url):
    """A scan pins a block per column and thread: 8 columns on 64 threads fail under 96 MB."""
    from contentstack_assets.engine.source.dialects import duckdb_read_memory

    assert duckdb_read_memory(2) == "64MB" and duckdb_read_memory("64") == "1024MB"
    execute(duckdb_url, "CREATE TABLE users AS SELECT 'u1' AS user_uid")
    with _engine(f"{duckdb_url}?threads=64").connect() as connection:
        assert connection.execute(sa.text("SELECT current_setting('memory_limit')")).scalar() == "976.5 MiB"


def test_duckdb_out_of_its_memory_is_one_paragraph_naming_the_fix(duckdb_url, monkeypatch):
    from contentstack_assets.engine.source import dialects

    monkeypatch.setattr(dialects, "DUCKDB_READ_MEMORY_MIB", 1)
    monkeypatch.setattr(dialects, "DUCKDB_THREAD_MEMORY_MIB", 0)
    execute(duckdb_url, "CREATE TABLE users AS SELECT md5(i::VARCHAR) AS user_uid, "
            "md5((i + 1)::VARCHAR) AS plan_name FROM range(1000000) t(i)")  # fmt: skip
    reader = SourceReader(_source(f"{duckdb_url}?threads=8"), ["user_uid", "plan_name"])
    with pytest.raises(SourceError, match=r"Out of Memory.*memory_limit=2GB") as raised:
        list(reader.read_digest_chunks("prefix"))
    assert "\n" not in str(raised.value)
