"""Snowflake through snowflake-sqlalchemy and the real connector, against a fakesnow server over HTTP (see
conftest.py): Snowflake's own types and what each becomes on the wire, upper-case unquoted names found by
the spec's lower-case ones, the window, the probe and the per-day digests on TIMESTAMP_NTZ and TIMESTAMP_TZ
partition columns, and a partitioned users sync through Dagster to the emulator with its sensor."""

from __future__ import annotations

import datetime as dt
import decimal

import dagster as dg
import pytest

from contentstack_assets.definitions import build_definitions
from contentstack_assets.engine.convert import convert_column
from contentstack_assets.engine.source import SourceError, SourceReader, Window
from contentstack_assets.spec import SourceSpec, load_spec
from tests.helpers import json_text, push_metadata, run_job, users_sync, write_spec
from tests.integration.warehouses import execute

MARCH_1 = Window(dt.datetime(2024, 3, 1, tzinfo=dt.UTC), dt.datetime(2024, 3, 2, tzinfo=dt.UTC))
# created unquoted, so upper case (USERS, USER_UID, ...), but for "Plan Name", created quoted
USERS = (
    "CREATE TABLE USERS (USER_UID VARCHAR, ORDERS NUMBER(38,0), PRICE NUMBER(10,2), SIGNUP TIMESTAMP_TZ, "
    'SEEN TIMESTAMP_NTZ, LOCAL_SEEN TIMESTAMP_LTZ, PROFILE VARIANT, VIP BOOLEAN, "Plan Name" VARCHAR, '
    "UPDATED_AT TIMESTAMP_NTZ)"
)
ROW_A = (
    "SELECT 'a', 9007199254740992, 12.50, '2024-03-02 01:30:00 +02:00'::TIMESTAMP_TZ, "
    "'2024-03-10 02:30:00.123456'::TIMESTAMP_NTZ, '2024-03-02 01:30:00 +02:00'::TIMESTAMP_LTZ, "
    "PARSE_JSON('{\"k\": [1, 2], \"s\": \"é\"}'), TRUE, 'gold', '2024-03-01 10:00:00'::TIMESTAMP_NTZ"
)
COLUMNS = ["user_uid", "orders", "price", "signup", "seen", "local_seen", "profile", "vip", "Plan Name"]


def _source(url: str, **keys) -> SourceSpec:
    return SourceSpec.model_validate({"url": url, "table": "users", **keys})


def test_snowflake_types_as_read_and_as_sent(snowflake_url):
    execute(
        snowflake_url,
        USERS,
        f"INSERT INTO USERS {ROW_A}",
        "INSERT INTO USERS (USER_UID, ORDERS) VALUES ('big', 9007199254740993)",
    )
    reader = SourceReader(_source(snowflake_url), COLUMNS)
    frame = reader.read().set_index("user_uid")
    a = frame.loc["a"].to_dict()
    assert reader.column_types == {
        "user_uid": "VARCHAR(16777216)", "orders": "DECIMAL(38, 0)", "price": "DECIMAL(10, 2)",
        "signup": "TIMESTAMP_TZ", "seen": "TIMESTAMP_NTZ",
        "local_seen": "TIMESTAMP_TZ",  # fakesnow keeps a TIMESTAMP_LTZ as a TIMESTAMP_TZ
        "profile": "VARIANT", "vip": "BOOLEAN", "Plan Name": "VARCHAR(16777216)",
    }  # fmt: skip
    # what the connector returns: NUMBER(38,0) an int, NUMBER(10,2) a Decimal, the zoned types aware
    # datetimes (fakesnow gives them in UTC, Snowflake with their own offset: the same instant), NTZ naive,
    # VARIANT its JSON text
    assert a == {
        "orders": 2**53, "price": decimal.Decimal("12.50"),
        "signup": dt.datetime(2024, 3, 1, 23, 30, tzinfo=dt.UTC),
        "seen": dt.datetime(2024, 3, 10, 2, 30, 0, 123456),
        "local_seen": dt.datetime(2024, 3, 1, 23, 30, tzinfo=dt.UTC),
        "profile": '{"k":[1,2],"s":"é"}', "vip": True, "Plan Name": "gold",
    }  # fmt: skip
    types = {"orders": "integer", "price": "number", "signup": "datetime", "seen": "datetime",
             "local_seen": "datetime", "profile": "string", "vip": "boolean", "Plan Name": "string"}  # fmt: skip
    sent = {name: convert_column(frame[name], kind) for name, kind in types.items()}
    assert {name: converted.values["a"] for name, converted in sent.items()} == {
        "orders": 2**53, "price": 12.5, "signup": "2024-03-01T23:30:00Z",
        "seen": "2024-03-10T02:30:00Z",  # the contract's datetimes are whole seconds
        "local_seen": "2024-03-01T23:30:00Z", "profile": '{"k":[1,2],"s":"é"}', "vip": True, "Plan Name": "gold",
    }  # fmt: skip
    # NUMBER(38,0) above 2^53: an int the `integer` type rejects, as on every warehouse
    assert sent["orders"].errors["big"] is not None and "2^53" in str(sent["orders"].errors["big"])


@pytest.mark.parametrize("partition_type", ["TIMESTAMP_NTZ", "TIMESTAMP_TZ"])
def test_the_window_the_probe_and_the_day_digests(snowflake_url, partition_type):
    execute(
        snowflake_url,
        f"CREATE TABLE USERS (USER_UID VARCHAR, UPDATED_AT {partition_type})",
        # 00:30 at +02:00 on March 2 is 22:30 UTC on March 1: its UTC day, where the window reads it (a
        # TIMESTAMP_NTZ keeps the wall time only: March 2)
        f"INSERT INTO USERS SELECT 'b', '2024-03-02 00:30:00 +02:00'::{partition_type}",
        "INSERT INTO USERS VALUES ('a', '2024-03-01 10:00:00'), ('c', '2024-03-02 10:00:00'), ('n', NULL)",
    )
    reader = SourceReader(
        _source(snowflake_url, updated_at="updated_at", start_date="2024-01-01"), ["user_uid", "updated_at"]
    )
    in_march_1 = ["a", "b"] if partition_type == "TIMESTAMP_TZ" else ["a"]
    assert sorted(reader.read(MARCH_1)["user_uid"]) == in_march_1
    assert reader.probe()["rows"] == 4
    assert sorted(reader.day_digests()) == ["2024-03-01", "2024-03-02"]
    before = reader.day_digests()
    execute(snowflake_url, "UPDATE USERS SET UPDATED_AT = '2024-03-01 11:00:00' WHERE USER_UID = 'a'")
    after = reader.day_digests()
    assert after["2024-03-01"] != before["2024-03-01"] and after["2024-03-02"] == before["2024-03-02"]


def test_a_missing_table_or_column_is_one_paragraph(snowflake_url, recwarn):
    execute(snowflake_url, "CREATE TABLE USERS (USER_UID VARCHAR)")
    with pytest.raises(SourceError) as raised:
        SourceReader(
            SourceSpec.model_validate({"url": snowflake_url, "table": "people"}), ["user_uid"]
        ).read()
    # the paragraph alone: not beside it the dialect's warning about the DESC TABLE it failed
    assert not [w for w in recwarn if "Failed to reflect table" in str(w.message)]
    assert str(raised.value) == (
        "source snowflake://fake:***@fakesnow/"
        + snowflake_url.rsplit("@fakesnow/", 1)[1]
        + ": table 'people' does not exist"
    )
    with pytest.raises(SourceError) as raised:
        SourceReader(_source(snowflake_url), ["user_uid", "plan"]).read()
    assert "has no column 'plan' (it has: user_uid)" in str(raised.value) and "snow@" not in str(raised.value)
    # the name as Snowflake shows it: SQLAlchemy's names are lower case for Snowflake's unquoted ones, an
    # upper-case one is quoted (a column created as "USER_UID"): the message lists the names to write
    with pytest.raises(SourceError) as raised:
        SourceReader(_source(snowflake_url), ["USER_UID"]).read()
    assert "has no column 'USER_UID' (it has: user_uid)" in str(raised.value)


def test_a_partitioned_users_sync_from_snowflake_and_its_sensor(tmp_path, snowflake_url, emulator, instance):
    execute(
        snowflake_url,
        "CREATE TABLE USERS (USER_UID VARCHAR, PLAN_NAME VARCHAR, LIFETIME_VALUE NUMBER(10,2), "
        "ORDER_COUNT NUMBER(38,0), IS_VIP BOOLEAN, CREATED_AT TIMESTAMP_TZ, BIRTH_DATE DATE, "
        "UPDATED_AT TIMESTAMP_NTZ)",
        "INSERT INTO USERS SELECT 's1', 'gold', 12.50, 9007199254740992, TRUE, "
        "'2024-01-02 05:04:05 +02:00'::TIMESTAMP_TZ, '1990-05-06'::DATE, '2024-03-01 10:00:00'::TIMESTAMP_NTZ",
        "INSERT INTO USERS VALUES ('s2', 'free', NULL, NULL, FALSE, NULL, NULL, '2024-03-02 10:00:00'), "
        "('s3', 'x', 1, 9007199254740993, NULL, NULL, NULL, '2024-03-01 11:00:00')",
    )
    sync = users_sync(snowflake_url, emulator.url)
    sync["source"].update(updated_at="updated_at", start_date="2024-03-01")
    spec = write_spec(tmp_path / "syncs.yaml", [sync])
    result = run_job(spec, "users_sync", instance, partition_range=("2024-03-01", "2024-03-01"))
    assert result.success
    assert json_text(emulator.users()) == json_text({
        "s1": {"plan": "gold", "ltv": 12.5, "orders": 2**53, "vip": True, "signup_at": "2024-01-02T03:04:05Z",
               "birthday": "1990-05-06"},
    })  # fmt: skip
    assert push_metadata(result)["rows_rejected"] == 1  # s3: its order count above 2^53

    defs = build_definitions(load_spec(spec))
    sensor = defs.resolve_sensor_def("users_source_changed")
    with dg.build_sensor_context(instance=instance, definitions=defs) as context:
        first = sensor(context)
    assert first.run_requests
    execute(
        snowflake_url,
        "INSERT INTO USERS (USER_UID, PLAN_NAME, UPDATED_AT) VALUES ('s0', 'c', '2024-03-02 09:00')",
    )
    with dg.build_sensor_context(instance=instance, definitions=defs, cursor=first.cursor) as context:
        second = sensor(context)
    assert second.run_requests
