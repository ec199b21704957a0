"""MariaDB/MySQL as a source, on the real server: a server-side cursor, its types (DATETIME and TIMESTAMP,
TINYINT(1), DECIMAL, JSON, zero dates), a case-insensitive collation, backtick-quoted names, the window of a
partition and the sensor's per-day digests, and a users sync through Dagster to the emulator."""

from __future__ import annotations

import datetime as dt
import decimal

import pytest
import sqlalchemy as sa

from contentstack_assets.engine.convert import convert_column
from contentstack_assets.engine.source import SourceError, SourceReader, Window
from contentstack_assets.spec import SourceSpec
from tests.helpers import json_text, push_metadata, run_job, users_sync, write_spec
from tests.integration.warehouses import execute, mysql_database

MARCH_1 = Window(dt.datetime(2024, 3, 1, tzinfo=dt.UTC), dt.datetime(2024, 3, 2, tzinfo=dt.UTC))

USERS_DDL = (
    "CREATE TABLE users (user_uid VARCHAR(300), plan_name VARCHAR(50), lifetime_value DECIMAL(20,4), "
    "order_count BIGINT, is_vip TINYINT(1), created_at TIMESTAMP NULL, birth_date DATE, "
    "profile JSON, updated_at DATETIME(6))"
)


@pytest.fixture
def mysql_url() -> str:
    with mysql_database() as url:
        yield url


def _source(url: str, **keys) -> SourceSpec:
    return SourceSpec.model_validate({"url": url, "table": "users", **keys})


def _users(url: str, rows: list[dict]) -> None:
    columns = ["user_uid", "plan_name", "lifetime_value", "order_count", "is_vip", "created_at", "birth_date",
               "profile", "updated_at"]  # fmt: skip
    execute(
        url,
        # values written in UTC: the TIMESTAMP column converts from the session's zone
        "SET time_zone = '+00:00'",
        USERS_DDL,
        f"INSERT INTO users VALUES ({', '.join(':' + c for c in columns)})",
        rows=[{column: row.get(column) for column in columns} for row in rows],
    )


def test_the_read_streams_through_a_server_side_cursor(mysql_url):
    _users(mysql_url, [{"user_uid": f"u{i}", "plan_name": "free"} for i in range(1234)])
    source = _source(mysql_url, chunk_size=100)
    reader = SourceReader(source, ["user_uid", "plan_name"])
    # the cursor the read gets from SQLAlchemy with stream_results: PyMySQL's unbuffered SSCursor
    with reader._database_errors(), sa.create_engine(mysql_url).connect() as connection:
        result = connection.execution_options(stream_results=True).execute(sa.text("SELECT 1"))
        assert type(result.cursor).__name__ == "SSCursor"
        result.close()
    progress: list[int] = []
    frame = reader.read(on_progress=progress.append)
    assert sorted(frame["user_uid"]) == sorted(f"u{i}" for i in range(1234))
    assert progress[-1] == 1234


def test_native_types_come_back_as_the_contract_reads_them(mysql_url):
    _users(
        mysql_url,
        [
            dict(user_uid="m1", plan_name="gold", lifetime_value=decimal.Decimal("12.5"), order_count=2**53,
                 is_vip=1, created_at=dt.datetime(2024, 3, 1, 10, 0, 5), birth_date=dt.date(1990, 5, 6),
                 profile='{"tier": "gold"}', updated_at=dt.datetime(2024, 3, 1, 23, 59, 59, 999999)),
            dict(user_uid="m2", is_vip=0),
        ],
    )  # fmt: skip
    # another session, in another zone, writes the same instant as 12:00:05+02:00
    execute(mysql_url, "SET time_zone = '+02:00'",
            "UPDATE users SET created_at = '2024-03-01 12:00:05' WHERE user_uid = 'm2'")  # fmt: skip
    frame = SourceReader(_source(mysql_url), ["user_uid", "lifetime_value", "order_count", "is_vip",
                                              "created_at", "birth_date", "profile"]).read()  # fmt: skip
    m1, m2 = frame.sort_values("user_uid").to_dict("records")
    assert m1["lifetime_value"] == decimal.Decimal("12.5000")
    assert m1["is_vip"] == 1 and m2["is_vip"] == 0  # TINYINT(1): numbers, which boolean takes as 0/1
    # TIMESTAMP: the session is in UTC whatever the server's zone, so both rows hold one instant
    assert m1["created_at"] == m2["created_at"] == dt.datetime(2024, 3, 1, 10, 0, 5)
    assert m1["profile"] == '{"tier": "gold"}'  # JSON: its text
    wire = {
        "ltv": convert_column(frame["lifetime_value"], "number").values.tolist(),
        "vip": convert_column(frame["is_vip"], "boolean").values.tolist(),
        "orders": convert_column(frame["order_count"], "integer").values.tolist(),
        "signup": convert_column(frame["created_at"], "datetime").values.tolist(),
        "profile": convert_column(frame["profile"], "string").values.tolist(),
    }
    order = frame["user_uid"].tolist()
    m1_at = order.index("m1")
    assert wire["ltv"][m1_at] == 12.5 and wire["vip"][m1_at] is True and wire["orders"][m1_at] == 2**53
    assert wire["signup"] == ["2024-03-01T10:00:05Z"] * 2
    assert wire["profile"][m1_at] == '{"tier": "gold"}'


def test_zero_dates_are_rejected_with_a_reason_and_belong_to_no_partition(mysql_url):
    # MariaDB's default sql_mode (no NO_ZERO_DATE) stores them; PyMySQL returns them as text
    _users(mysql_url, [dict(user_uid="z1", birth_date="0000-00-00", updated_at="0000-00-00 00:00:00"),
                       dict(user_uid="z2", birth_date="2024-02-29", updated_at="2024-03-01 08:00:00")])  # fmt: skip
    source = _source(mysql_url, updated_at="updated_at", start_date="2024-01-01")
    frame = SourceReader(source, ["user_uid", "birth_date", "updated_at"]).read()
    assert sorted(frame["user_uid"]) == ["z1", "z2"]
    birthdays = convert_column(frame.set_index("user_uid")["birth_date"], "date")
    assert birthdays.errors["z1"] == "'0000-00-00' is not an ISO-8601 date"
    assert birthdays.values["z2"] == "2024-02-29"
    in_window = SourceReader(source, ["user_uid", "updated_at"]).read(MARCH_1)
    assert in_window["user_uid"].tolist() == ["z2"]
    assert list(SourceReader(source, ["user_uid", "updated_at"]).day_digests()) == ["2024-03-01"]


def test_uids_differing_only_in_case_are_two_users(mysql_url):
    """A case-insensitive collation (utf8mb4_general_ci, the server's default) makes 'Alice' = 'alice' in SQL;
    the sync compares uids in Python, byte for byte, as Personalize does: two users."""
    _users(mysql_url, [dict(user_uid="Alice", plan_name="gold"), dict(user_uid="alice", plan_name="free")])
    with sa.create_engine(mysql_url).connect() as connection:
        assert (
            connection.execute(sa.text("SELECT count(*) FROM users WHERE user_uid = 'ALICE'")).scalar() == 2
        )
    reader = SourceReader(_source(mysql_url), ["user_uid", "plan_name"])
    assert sorted(reader.read()["user_uid"]) == ["Alice", "alice"]
    # a read by uid (retries of failed users) matches both in SQL; its caller keeps the exact one
    assert sorted(reader.read(text_in=("user_uid", ["alice"]))["user_uid"]) == ["Alice", "alice"]


def test_reserved_and_odd_names_are_quoted_with_backticks(mysql_url):
    execute(mysql_url, "CREATE TABLE `order` (`select` VARCHAR(10), `group by` INT, `updated at` DATETIME)",
            "INSERT INTO `order` VALUES ('a', 1, '2024-03-01 10:00:00'), ('b', 2, '2024-03-02 10:00:00')")  # fmt: skip
    source = SourceSpec.model_validate(
        {"url": mysql_url, "table": "order", "updated_at": "updated at", "start_date": "2024-01-01"}
    )
    reader = SourceReader(source, ["select", "group by", "updated at"])
    assert reader.read(MARCH_1).to_dict("records") == [
        {"select": "a", "group by": 1, "updated at": dt.datetime(2024, 3, 1, 10)}
    ]
    assert reader.probe() == {"rows": 2, "max_updated": "2024-03-02 10:00:00"}
    assert sorted(reader.day_digests()) == ["2024-03-01", "2024-03-02"]


@pytest.mark.parametrize("column_type", ["DATETIME(6)", "TIMESTAMP(6) NULL", "DATE", "VARCHAR(40)"])
def test_the_window_and_the_day_digests_on_each_time_type(mysql_url, column_type):
    values = ["2024-02-29 23:59:59.999999", "2024-03-01 00:00:00", "2024-03-01 23:59:59.5",
              "2024-03-02 00:00:00", None]  # fmt: skip
    if column_type == "DATE":
        values = ["2024-02-29", "2024-03-01", "2024-03-01", "2024-03-02", None]
    execute(mysql_url, "SET time_zone = '+00:00'",
            f"CREATE TABLE users (user_uid VARCHAR(10), updated_at {column_type})",
            "INSERT INTO users VALUES (:u, :t)",
            rows=[{"u": f"u{i}", "t": value} for i, value in enumerate(values)])  # fmt: skip
    source = _source(mysql_url, updated_at="updated_at", start_date="2024-01-01")
    reader = SourceReader(source, ["user_uid", "updated_at"])
    assert sorted(reader.read(MARCH_1)["user_uid"]) == ["u1", "u2"]
    digests = reader.day_digests()
    assert sorted(digests) == ["2024-02-29", "2024-03-01", "2024-03-02"]
    # a row touched within its day moves that day's digest only (where the dialect sums the instants)
    execute(mysql_url, "UPDATE users SET updated_at = '2024-03-01 00:00:01' WHERE user_uid = 'u1'")
    moved = SourceReader(source, ["user_uid", "updated_at"]).day_digests()
    assert moved["2024-02-29"] == digests["2024-02-29"] and moved["2024-03-02"] == digests["2024-03-02"]
    if column_type != "DATE":  # a DATE cannot move within its day; text moves by its min and max only
        assert moved["2024-03-01"] != digests["2024-03-01"]


# -- a users sync through Dagster ---------------------------------------------------------------------
def test_users_sync_from_mariadb_to_the_emulator(tmp_path, mysql_url, emulator, instance):
    _users(
        mysql_url,
        [
            dict(user_uid="m1", plan_name="gold", lifetime_value=decimal.Decimal("12.5"), order_count=3,
                 is_vip=1, created_at=dt.datetime(2024, 1, 2, 3, 4, 5), birth_date=dt.date(1990, 5, 6),
                 updated_at=dt.datetime(2024, 3, 1, 10)),
            dict(user_uid="  m2 ", plan_name="free", is_vip=0, updated_at=dt.datetime(2024, 3, 2, 10)),
            dict(user_uid="m3", plan_name="x", birth_date="0000-00-00", updated_at=dt.datetime(2024, 3, 1, 11)),
            dict(user_uid="Case", plan_name="upper"), dict(user_uid="case", plan_name="lower"),
        ],
    )  # fmt: skip
    spec = write_spec(tmp_path / "syncs.yaml", [users_sync(mysql_url, emulator.url)])
    result = run_job(spec, "users_sync", instance)
    assert result.success
    assert json_text(emulator.users()) == json_text({
        "m1": {"plan": "gold", "ltv": 12.5, "orders": 3, "vip": True, "signup_at": "2024-01-02T03:04:05Z",
               "birthday": "1990-05-06"},
        "m2": {"plan": "free", "vip": False},
        "Case": {"plan": "upper"},
        "case": {"plan": "lower"},
    })  # fmt: skip
    metadata = push_metadata(result)
    assert metadata["rows_read"] == 5 and metadata["rows_rejected"] == 1  # m3's zero date


def test_a_partitioned_sync_reads_its_days_and_the_sensor_sees_a_late_row(
    tmp_path, mysql_url, emulator, instance
):
    import dagster as dg

    from contentstack_assets.definitions import build_definitions
    from contentstack_assets.spec import load_spec

    _users(mysql_url, [dict(user_uid="d1", plan_name="a", updated_at=dt.datetime(2024, 3, 1, 10)),
                       dict(user_uid="d2", plan_name="b", updated_at=dt.datetime(2024, 3, 2, 10))])  # fmt: skip
    sync = users_sync(mysql_url, emulator.url)
    sync["source"].update(updated_at="updated_at", start_date="2024-03-01")
    spec = write_spec(tmp_path / "syncs.yaml", [sync])
    result = run_job(spec, "users_sync", instance, partition_range=("2024-03-01", "2024-03-01"))
    assert result.success
    assert sorted(emulator.users()) == ["d1"]

    defs = build_definitions(load_spec(spec))
    sensor = defs.resolve_sensor_def("users_source_changed")
    with dg.build_sensor_context(instance=instance, definitions=defs) as context:
        first = sensor(context)
    assert {r.tags["dagster/asset_partition_range_start"] for r in first.run_requests} == {"2024-03-01"}
    # a row loaded late with an old updated_at moves its own day's digest
    execute(
        mysql_url,
        "INSERT INTO users (user_uid, plan_name, updated_at) VALUES ('d0', 'c', '2024-03-01 09:00')",
    )
    with dg.build_sensor_context(instance=instance, definitions=defs, cursor=first.cursor) as context:
        second = sensor(context)
    assert second.run_requests and all(
        r.tags["dagster/asset_partition_range_start"]
        <= "2024-03-01"
        <= r.tags["dagster/asset_partition_range_end"]
        for r in second.run_requests
    )


# -- bad input: one paragraph each, the URL without its password, nothing sent -------------------------
def test_a_wrong_password_is_one_masked_paragraph(tmp_path, mysql_url, emulator, instance):
    execute(mysql_url, "CREATE USER IF NOT EXISTS 'cs_etl'@'%' IDENTIFIED BY 'right-pw'")
    try:
        url = sa.engine.make_url(mysql_url).set(username="cs_etl", password="wr0ng-s3cret")
        shown = url.render_as_string(hide_password=False)
        spec = write_spec(tmp_path / "syncs.yaml", [users_sync(shown, emulator.url)])
        result = run_job(spec, "users_sync", instance)
        failure = _failure_text(result)
        assert "Access denied for user 'cs_etl'" in failure
        assert "cs_etl:***@127.0.0.1" in failure and "wr0ng-s3cret" not in failure
        assert emulator.stats()["requests_total"] == 0
    finally:
        execute(mysql_url, "DROP USER IF EXISTS 'cs_etl'@'%'")


def test_an_unreachable_server_a_missing_table_and_column_fail_clearly(
    tmp_path, mysql_url, emulator, instance
):
    sync = users_sync("mysql+pymysql://etl:s3cr3t-pw@127.0.0.1:1/crm", emulator.url)
    failure = _failure_text(run_job(write_spec(tmp_path / "a.yaml", [sync]), "users_sync", instance))
    assert "Can't connect to MySQL server on '127.0.0.1'" in failure
    assert "mysql+pymysql://etl:***@127.0.0.1:1/crm" in failure and "s3cr3t-pw" not in failure

    sync = users_sync(mysql_url, emulator.url)
    failure = _failure_text(run_job(write_spec(tmp_path / "b.yaml", [sync]), "users_sync", instance))
    assert "table 'users' does not exist" in failure

    _users(mysql_url, [dict(user_uid="m1")])
    sync["attributes"] = {**sync["attributes"], "tier": {"column": "tier_name", "type": "string"}}
    failure = _failure_text(run_job(write_spec(tmp_path / "c.yaml", [sync]), "users_sync", instance))
    assert "has no column 'tier_name'" in failure
    assert emulator.stats()["requests_total"] == 0


def _failure_text(result) -> str:
    import dagster as dg

    assert not result.success
    failures = [event for event in result.all_events if event.event_type == dg.DagsterEventType.STEP_FAILURE]
    return "\n".join(event.step_failure_data.error.message for event in failures)


def test_a_missing_driver_names_the_extra(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def without_pymysql(name, *args, **kwargs):
        if name == "pymysql" or name.startswith("pymysql."):
            raise ModuleNotFoundError("No module named 'pymysql'", name="pymysql")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", without_pymysql)
    source = _source("mysql+pymysql://etl:pw@db.internal:3306/crm")
    with pytest.raises(SourceError) as raised:
        SourceReader(source, ["user_uid"]).count()
    message = str(raised.value)
    assert "pip install 'contentstack_assets[mysql]'" in message
    assert "mysql+pymysql://etl:***@db.internal:3306/crm" in message

    with pytest.raises(SourceError) as raised:
        SourceReader(_source("mysql://etl:pw@db.internal/crm"), ["user_uid"]).count()
    assert "mysql+pymysql://" in str(raised.value)  # the extra brings PyMySQL: the URL must name it
