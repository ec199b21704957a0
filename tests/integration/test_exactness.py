"""Every change reaches the destination, whatever changed: the spec, the destination, or the order of runs.

Each test here failed on the code before its fix (issue 12: a spec edit, a new destination and a stale frame
each ended in a green run and a wrong API).
"""

from __future__ import annotations

import datetime as dt
import json

import dagster as dg
import pytest

from contentstack_assets.definitions import build_definitions
from contentstack_assets.engine import state as state_module
from contentstack_assets.engine.state import StateStore, UserOutcome
from contentstack_assets.personalize.emulator import EmulatorConfig, run_emulator_in_thread
from contentstack_assets.spec import load_spec
from tests.helpers import push_metadata, run_job, users_sync, write_spec, write_sqlite_table

OTHER_PROJECT = "test0000000000000other01"


def _rows(n: int = 20, **changes) -> list[dict]:
    rows = [
        dict(user_uid=f"u{i:02d}", plan_name="free", lifetime_value=float(i), order_count=i, is_vip=i % 2,
             created_at="2024-01-02 03:04:05", birth_date="1990-01-01", updated_at="2024-03-01 10:00:00")
        for i in range(n)
    ]  # fmt: skip
    for uid, values in changes.items():
        rows[int(uid.removeprefix("u"))].update(values)
    return rows


def _attributes(**changes) -> dict:
    attributes = {
        "plan": {"column": "plan_name", "type": "string"},
        "vip": {"column": "is_vip", "type": "boolean"},
    }
    attributes.update(changes)
    return {key: value for key, value in attributes.items() if value is not None}


@pytest.fixture
def write(tmp_path, emulator):
    """write(rows, **sync overrides) -> spec path: the source table and the spec rewritten."""

    def write(rows: list[dict], **overrides):
        url = write_sqlite_table(tmp_path / "src.db", rows)
        overrides.setdefault("attributes", _attributes())
        return write_spec(tmp_path / "syncs.yaml", [users_sync(url, emulator.url, **overrides)])

    return write


# -- a spec edit re-examines every user ----------------------------------------------------------------
def test_a_renamed_attribute_key_reaches_every_user(write, emulator, instance):
    assert run_job(write(_rows()), "users_sync", instance).success
    # renamed in place: the same columns in the same order, only the key differs
    renamed = {
        "plan_tier": {"column": "plan_name", "type": "string"},
        "vip": {"column": "is_vip", "type": "boolean"},
    }
    result = run_job(write(_rows(), attributes=renamed), "users_sync", instance)
    metadata = push_metadata(result)
    assert metadata["requests_sent"] == 20
    assert all(user["plan_tier"] == "free" for user in emulator.users().values())
    # and only the new key went out: `vip` was already there with the same wire value
    assert set(StateStore().run_log("users", result.run_id)["keys"]) == {"plan_tier"}


def test_a_retyped_attribute_is_sent_with_its_new_wire_value(write, emulator, instance):
    assert run_job(write(_rows()), "users_sync", instance).success
    retyped = _attributes(vip={"column": "is_vip", "type": "integer"})
    result = run_job(write(_rows(), attributes=retyped), "users_sync", instance)
    assert push_metadata(result)["requests_sent"] == 20
    assert {json.dumps(user["vip"]) for user in emulator.users().values()} == {"0", "1"}


def test_nulls_mode_and_a_new_column_are_spec_changes_too(write, emulator, instance):
    rows = _rows(u03={"plan_name": None})
    assert run_job(write(rows), "users_sync", instance).success
    # the same values read from another column that holds the same text: nothing new to send
    rows = [{**row, "birth_date": row["plan_name"]} for row in rows]
    moved = _attributes(plan={"column": "birth_date", "type": "string"})
    assert push_metadata(run_job(write(rows, attributes=moved), "users_sync", instance))["requests_sent"] == 0
    # nulls: send now clears the null the API never received
    result = run_job(write(rows, attributes=moved, nulls="send"), "users_sync", instance)
    assert push_metadata(result)["requests_sent"] == 1
    assert emulator.users()["u03"]["plan"] is None


# -- the state is per destination ----------------------------------------------------------------------
def test_a_new_destination_gets_everything_and_switching_back_resends_nothing(write, emulator, instance):
    spec = write(_rows())
    assert run_job(spec, "users_sync", instance).success
    assert len(emulator.users()) == 20
    with run_emulator_in_thread(EmulatorConfig(project_uid=OTHER_PROJECT)) as other:
        moved = write(_rows(), destination={"project_uid": OTHER_PROJECT, "edge_url": other.url})
        metadata = push_metadata(run_job(moved, "users_sync", instance))
        assert metadata["users_new"] == 20 and metadata["users_delivered"] == 20
        assert other.users() == emulator.users()
    # back to the first project: it holds everything already
    metadata = push_metadata(run_job(write(_rows()), "users_sync", instance))
    assert metadata["requests_sent"] == 0 and metadata["users_unchanged"] == 20


# -- a stale frame never overwrites a newer value --------------------------------------------------------
def test_an_old_frame_pushed_alone_does_not_overwrite_a_newer_value(tmp_path, emulator, instance):
    def spec_for(rows):
        url = write_sqlite_table(tmp_path / "src.db", rows)
        sync = users_sync(url, emulator.url, attributes=_attributes())
        sync["source"].update(updated_at="updated_at", start_date="2024-03-01")
        return write_spec(tmp_path / "syncs.yaml", [sync])

    silver = _rows(2, u01={"plan_name": "silver", "updated_at": "2024-03-01 10:00:00"})
    spec = spec_for(silver)
    assert run_job(spec, "users_sync", instance, partition_range=("2024-03-01", "2024-03-01")).success
    gold = _rows(2, u01={"plan_name": "gold", "updated_at": "2024-03-02 10:00:00"})
    spec = spec_for(gold)
    assert run_job(spec, "users_sync", instance, partition_range=("2024-03-02", "2024-03-02")).success
    assert emulator.users()["u01"]["plan"] == "gold"

    # the push alone for the first day loads that day's stored frame, read before gold was delivered
    emulator.reset()
    defs = build_definitions(load_spec(spec))
    push = dg.AssetKey(["users", "personalize_users"])
    result = defs.resolve_implicit_global_asset_job_def().execute_in_process(
        instance=instance, partition_key="2024-03-01", asset_selection=[push]
    )
    assert result.success
    metadata = push_metadata(result)
    assert metadata["users_stale_skipped"] == 1
    assert "u01" not in emulator.users()


# -- a renamed sync keeps its state ----------------------------------------------------------------------
def test_a_renamed_sync_carries_its_state_over(write, emulator, instance):
    assert run_job(write(_rows()), "users_sync", instance).success
    spec = write(_rows(), name="customers", renamed_from="users")
    result = run_job(spec, "customers_sync", instance)
    metadata = push_metadata(result, sync="customers")
    assert metadata["requests_sent"] == 0 and metadata["users_unchanged"] == 20
    # the sync log of the earlier runs is the renamed sync's now
    assert StateStore().log_for_user("u01", "customers")
    # without renamed_from a new name starts afresh
    spec = write(_rows(), name="members")
    assert push_metadata(run_job(spec, "members_sync", instance), sync="members")["users_new"] == 20


# -- run order, not the clock ----------------------------------------------------------------------------
def test_a_run_with_the_clock_ahead_prunes_nothing_and_does_not_become_the_last_run(tmp_path, monkeypatch):
    store = StateStore(f"sqlite:///{tmp_path / 'clock.db'}")
    outcome = UserOutcome("u1", ("plan",), True, 200, 1, 1.0, None, {"plan": "free"}, 1)
    store.start_run("users", "run-1", "all", dry_run=False)
    store.record_user_outcomes("users", "run-1", [outcome])
    store.finish_run("users", "run-1", {"rows_read": 100})

    real = state_module.database.utcnow
    monkeypatch.setattr(state_module.database, "utcnow", lambda: real() + dt.timedelta(days=400))
    store.start_run("users", "run-2", "all", dry_run=False)
    assert store.prune("users", retention_days=30) == 0  # run-1's log is 1 run old, not 400 days
    store.finish_run("users", "run-2", {"rows_read": 100})
    monkeypatch.setattr(state_module.database, "utcnow", real)

    store.start_run("users", "run-3", "all", dry_run=False)
    store.finish_run("users", "run-3", {"rows_read": 10})
    # the guard compares with the run that came last, whatever its clock said
    assert store.last_finished_run("users")["run_id"] == "run-3"
    assert len(store.run_log("users", "run-1")) == 1


# -- a state store that cannot be used ------------------------------------------------------------------
@pytest.mark.parametrize("problem", ["corrupt", "read-only"])
def test_an_unusable_state_store_fails_with_one_paragraph_and_sends_nothing(
    problem, write, emulator, instance, tmp_path, monkeypatch
):
    path = tmp_path / "broken_state.db"
    if problem == "corrupt":
        path.write_bytes(b"this is not a SQLite database at all" * 100)
        url = f"sqlite:///{path}"
    else:
        StateStore(f"sqlite:///{path}")  # a valid store, opened read-only
        url = f"sqlite:///file:{path}?mode=ro&uri=true"
    monkeypatch.setenv("CONTENTSTACK_STATE_URL", url)
    result = run_job(write(_rows()), "users_sync", instance)
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    error = failure.event_specific_data.error
    assert error.cls_name == "Failure", error.message
    assert "sync state store" in error.message and str(path) in error.message
    expected = "not a SQLite database" if problem == "corrupt" else "read-only"
    assert expected in error.message and "Traceback" not in error.message
    assert emulator.users() == {}


def test_events_go_to_a_new_destination_too_and_not_twice_to_the_old_one(tmp_path, emulator, instance):
    from tests.integration.test_events import _event, _metadata, events_sync
    from tests.integration.test_events import _write as write_events

    url = write_events(tmp_path, [_event(1, "u1"), _event(2, "u2", "signup")])
    spec = write_spec(tmp_path / "syncs.yaml", [events_sync(url, emulator.url)])
    assert _metadata(run_job(spec, "purchases_sync", instance))["events_delivered"] == 2
    with run_emulator_in_thread(EmulatorConfig(project_uid=OTHER_PROJECT)) as other:
        moved = events_sync(url, other.url, destination={"project_uid": OTHER_PROJECT, "edge_url": other.url})
        spec = write_spec(tmp_path / "syncs.yaml", [moved])
        assert _metadata(run_job(spec, "purchases_sync", instance))["events_delivered"] == 2
        assert other.stats()["event_counts"] == {"u1": 1, "u2": 1}
    spec = write_spec(tmp_path / "syncs.yaml", [events_sync(url, emulator.url)])
    metadata = _metadata(run_job(spec, "purchases_sync", instance))
    assert metadata["events_delivered"] == 0 and metadata["events_already_delivered"] == 2
    assert emulator.stats()["event_counts"] == {"u1": 1, "u2": 1}
