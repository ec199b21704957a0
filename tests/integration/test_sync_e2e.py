"""The whole users sync through Dagster, over real HTTP against the emulator, on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import decimal

import dagster as dg
import pytest
import sqlalchemy as sa

from tests.helpers import json_text, push_metadata, run_job, users_sync, write_spec, write_sqlite_table

GOOD = [
    # every type, in the forms the contract accepts
    dict(user_uid="u1", plan_name="gold", lifetime_value=12.5, order_count=3, is_vip=1,
         created_at="2024-01-02 03:04:05", birth_date="1990-05-06", updated_at="2024-05-01 00:00:00"),
    dict(user_uid="  u2  ", plan_name=42, lifetime_value="7", order_count="1e3", is_vip="No",
         created_at="2024-03-01T10:00:00+02:00", birth_date="2024-01-01T23:30:00-02:00"),
    dict(user_uid="u3"),  # every value null: nothing to send, no request
    dict(user_uid="u4", plan_name="", lifetime_value=0, order_count=42.0, is_vip="t",
         created_at="2024-06-01", birth_date="2000-02-29"),
    dict(user_uid="u5", plan_name=" spaced ", lifetime_value="-1.5e2", order_count=2**53, is_vip=0.0,
         created_at="0001-01-01 00:00:00.999", birth_date="9999-12-31"),
    dict(user_uid=12345, plan_name="numeric uid", is_vip="YES", created_at="2024-01-02T03:04:05.123456Z"),
]  # fmt: skip

EXPECTED = {
    "u1": {"plan": "gold", "ltv": 12.5, "orders": 3, "vip": True, "signup_at": "2024-01-02T03:04:05Z", "birthday": "1990-05-06"},
    "u2": {"plan": "42", "ltv": 7.0, "orders": 1000, "vip": False, "signup_at": "2024-03-01T08:00:00Z", "birthday": "2024-01-02"},
    "u4": {"plan": "", "ltv": 0.0, "orders": 42, "vip": True, "signup_at": "2024-06-01T00:00:00Z", "birthday": "2000-02-29"},
    "u5": {"plan": " spaced ", "ltv": -150.0, "orders": 2**53, "vip": False, "signup_at": "0001-01-01T00:00:00Z", "birthday": "9999-12-31"},
    "12345": {"plan": "numeric uid", "vip": True, "signup_at": "2024-01-02T03:04:05Z"},
}  # fmt: skip

BAD = [
    # (row, expected reason fragment)
    (dict(user_uid=None, plan_name="x"), "missing user uid"),
    (dict(user_uid="   ", plan_name="x"), "missing user uid"),
    (dict(user_uid="", plan_name="x"), "missing user uid"),
    (dict(user_uid="usér", plan_name="x"), "invalid user uid"),
    (dict(user_uid="x" * 257, plan_name="x"), "invalid user uid"),
    (dict(user_uid="tab\there", plan_name="x"), "invalid user uid"),
    (dict(user_uid="dup", plan_name="first"), "duplicate user uid"),
    (dict(user_uid=" dup ", plan_name="second"), "duplicate user uid"),
    (dict(user_uid="same", plan_name="x"), "duplicate user uid"),
    (dict(user_uid="same", plan_name="x"), "duplicate user uid"),  # identical rows are rejected all the same
    (dict(user_uid="b_ltv", lifetime_value="abc"), "ltv:"),
    (dict(user_uid="b_nan", lifetime_value="NaN"), "ltv:"),
    (dict(user_uid="b_inf", lifetime_value="inf"), "ltv:"),
    (dict(user_uid="b_frac", order_count=2.5), "orders:"),
    (dict(user_uid="b_big", order_count=2**53 + 1), "orders:"),
    (dict(user_uid="b_bool", is_vip="maybe"), "vip:"),
    (dict(user_uid="b_two", is_vip=2), "vip:"),
    (dict(user_uid="b_dt", created_at="yesterday"), "signup_at:"),
    (dict(user_uid="b_epoch", created_at=1700000000), "signup_at:"),
    (dict(user_uid="b_date", birth_date="31/12/1990"), "birthday:"),
    (dict(user_uid="b_bytes", plan_name=b"\x00\x01"), "plan:"),
]


def _assert_synced(emulator, result: dg.ExecuteInProcessResult) -> dict:
    assert result.success, result.all_events
    users = emulator.users()
    assert json_text(users) == json_text(EXPECTED)  # u3 had nothing to send; no rejected row reached the API
    metadata = push_metadata(result)
    assert metadata["rows_read"] == len(GOOD) + len(BAD)
    assert metadata["rows_rejected"] == len(BAD)
    assert metadata["users_delivered"] == len(EXPECTED)
    assert metadata["users_failed"] == 0
    # every user sent is delivered or failed; u3, with nothing to send, counts as unchanged (contract 7)
    assert metadata["users_changed"] == metadata["users_delivered"] + metadata["users_failed"]
    assert metadata["users_unchanged"] == 1
    assert metadata["requests_sent"] == len(EXPECTED)
    return metadata


def _rejections(state_url: str, run_id: str) -> dict[int, str]:
    from contentstack_assets.engine.state import StateStore, rejections

    store = StateStore(state_url)
    with store.engine.connect() as connection:
        rows = connection.execute(
            sa.select(rejections.c.row_number, rejections.c.reason).where(rejections.c.run_id == run_id)
        ).all()
    return dict(rows)


def test_every_type_and_every_rejection_class_sqlite(tmp_path, emulator, instance, monkeypatch):
    url = write_sqlite_table(tmp_path / "src.db", GOOD + [row for row, _ in BAD])
    spec = write_spec(tmp_path / "syncs.yaml", [users_sync(url, emulator.url)])
    result = run_job(spec, "users_sync", instance)
    _assert_synced(emulator, result)

    reasons = _rejections(f"sqlite:///{tmp_path / 'state.db'}", result.run_id)
    for offset, (_, fragment) in enumerate(BAD):
        row_number = len(GOOD) + offset + 1
        assert fragment in reasons[row_number], (row_number, reasons[row_number])
    # the reason names the value, shortened
    assert "'abc'" in reasons[len(GOOD) + 11]

    check = next(c for c in result.get_asset_check_evaluations() if c.check_name == "rows_valid")
    assert not check.passed and check.severity == dg.AssetCheckSeverity.WARN  # warns, never blocks valid rows
    assert check.metadata["num_failures"].value == len(BAD)


def test_postgres_source_with_native_types(tmp_path, emulator, instance, postgres_url):
    engine = sa.create_engine(postgres_url)
    with engine.begin() as connection:
        connection.execute(
            sa.text(
                "CREATE SCHEMA crm; CREATE TABLE crm.users (user_uid text, plan_name text, lifetime_value numeric, "
                "order_count bigint, is_vip boolean, created_at timestamptz, birth_date date, updated_at timestamp)"
            )
        )
        connection.execute(
            sa.text("INSERT INTO crm.users VALUES (:u, :p, :l, :o, :v, :c, :b, :up)"),
            [
                dict(u="p1", p="gold", l=decimal.Decimal("12.50"), o=3, v=True,
                     c=dt.datetime(2024, 1, 2, 5, 4, 5, tzinfo=dt.timezone(dt.timedelta(hours=2))),
                     b=dt.date(1990, 5, 6), up=dt.datetime(2024, 5, 1)),
                dict(u="p2", p=None, l=None, o=None, v=False, c=None, b=None, up=None),
                dict(u="p3", p="x", l=decimal.Decimal("NaN"), o=1, v=None, c=None, b=None, up=None),
            ],
        )  # fmt: skip
    engine.dispose()
    sync = users_sync(postgres_url, emulator.url)
    sync["source"]["schema"] = "crm"
    spec = write_spec(tmp_path / "syncs.yaml", [sync])
    result = run_job(spec, "users_sync", instance)
    assert result.success
    assert json_text(emulator.users()) == json_text({
        "p1": {"plan": "gold", "ltv": 12.5, "orders": 3, "vip": True, "signup_at": "2024-01-02T03:04:05Z", "birthday": "1990-05-06"},
        "p2": {"vip": False},
    })  # fmt: skip
    metadata = push_metadata(result)
    assert metadata["rows_rejected"] == 1  # the NaN numeric
    # Dagster's standard metadata of the source: its rows and its columns with their declared types
    source = push_metadata(result, asset="source_users")
    assert source["dagster/row_count"] == 3
    types = {column.name: column.type for column in source["dagster/column_schema"].columns}
    assert types["user_uid"] == "TEXT" and types["is_vip"] == "BOOLEAN" and types["birth_date"] == "DATE"
    assert types["created_at"].startswith("TIMESTAMP") and len(types) == 7


def test_postgres_state_store_end_to_end(tmp_path, emulator, instance, postgres_url, monkeypatch):
    monkeypatch.setenv("CONTENTSTACK_STATE_URL", postgres_url)
    url = write_sqlite_table(tmp_path / "src.db", GOOD + [row for row, _ in BAD])
    spec = write_spec(tmp_path / "syncs.yaml", [users_sync(url, emulator.url)])
    result = run_job(spec, "users_sync", instance)
    _assert_synced(emulator, result)
    assert len(_rejections(postgres_url, result.run_id)) == len(BAD)


def test_missing_table_and_column_fail_clearly_and_send_nothing(tmp_path, emulator, instance):
    url = write_sqlite_table(tmp_path / "src.db", GOOD)
    sync = users_sync(url, emulator.url)
    sync["source"]["table"] = "customers"
    spec = write_spec(tmp_path / "syncs.yaml", [sync])
    result = run_job(spec, "users_sync", instance)
    assert not result.success
    failure = _failure_text(result)
    assert "table 'customers' does not exist" in failure and "src.db" in failure

    sync = users_sync(url, emulator.url)
    sync["attributes"] = {**sync["attributes"], "tier": {"column": "tier_name", "type": "string"}}
    spec = write_spec(tmp_path / "syncs.yaml", [sync])
    result = run_job(spec, "users_sync", instance)
    failure = _failure_text(result)
    assert "no column 'tier_name'" in failure and "'users'" in failure
    assert emulator.stats()["requests_total"] == 0


def test_unreachable_database_masks_the_password(tmp_path, emulator, instance):
    sync = users_sync("postgresql+psycopg://etl:s3cr3t-pw@127.0.0.1:1/crm", emulator.url)
    spec = write_spec(tmp_path / "syncs.yaml", [sync])
    result = run_job(spec, "users_sync", instance)
    failure = _failure_text(result)
    assert "postgresql+psycopg://etl:***@127.0.0.1:1/crm" in failure
    assert "s3cr3t-pw" not in failure
    assert emulator.stats()["requests_total"] == 0


def _failure_text(result: dg.ExecuteInProcessResult) -> str:
    failures = [event for event in result.all_events if event.event_type == dg.DagsterEventType.STEP_FAILURE]
    assert failures, "expected a failed step"
    return "\n".join(event.step_failure_data.error.message for event in failures)


@pytest.mark.parametrize("concurrency", [1, 8])
def test_concurrency_bounds_requests_in_flight(tmp_path, instance, concurrency):
    from contentstack_assets.personalize.emulator import EmulatorConfig, run_emulator_in_thread

    rows = [dict(user_uid=f"c{index}", plan_name="p") for index in range(60)]
    url = write_sqlite_table(tmp_path / "src.db", rows)
    with run_emulator_in_thread(EmulatorConfig(latency_ms=20)) as emu:
        spec = write_spec(tmp_path / "syncs.yaml", [users_sync(url, emu.url, concurrency=concurrency)])
        result = run_job(spec, "users_sync", instance)
        assert result.success
        assert len(emu.users()) == 60
        assert 1 <= emu.stats()["max_in_flight"] <= concurrency
