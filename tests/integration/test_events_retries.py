"""Events syncs over real HTTP, when deliveries fail: a refused event fails alone, failed shares and stuck events
are reported, failed events gone from the source free their re-read slot, ids stored as REAL are re-read."""

from __future__ import annotations

import sqlalchemy as sa

from contentstack_assets.engine import events as events_engine
from contentstack_assets.engine.resend import read_users_by_uid
from contentstack_assets.engine.state import StateStore, items
from contentstack_assets.personalize.emulator import EmulatorConfig, run_emulator_in_thread
from contentstack_assets.spec import load_spec
from tests.helpers import PROJECT_UID, fast_retries, run_job, users_sync, write_spec, write_sqlite_table
from tests.integration.test_events import _event, _keys, _metadata, _write, events_sync

KNOWN_EVENTS = ["purchase", "signup"]


def _item(item_id: str) -> dict | None:
    store = StateStore()
    with store.engine.connect() as connection:
        row = connection.execute(
            sa.select(items).where(items.c.sync == "purchases", items.c.item_id == item_id)
        ).first()
    return None if row is None else dict(row._mapping)


def _check(result, name: str = "delivery_failures"):
    return next(c for c in result.get_asset_check_evaluations() if c.check_name == name)


def test_a_refused_event_fails_alone_and_the_others_of_its_user_are_delivered(tmp_path, instance):
    # no management token: the keys are not checked up front, the Edge refuses the typo with a 400
    rows = [
        _event(1, "u1", "purchase"),
        _event(2, "u1", "purchse"),
        _event(3, "u1", "signup"),
        _event(4, "u1", "purchase"),
        _event(5, "u2", "signup"),
    ]
    url = _write(tmp_path, rows)
    with run_emulator_in_thread(EmulatorConfig(project_uid=PROJECT_UID, events=KNOWN_EVENTS)) as emulator:
        spec = write_spec(tmp_path / "syncs.yaml", [events_sync(url, emulator.url, max_failed_share=0.5)])
        first = run_job(spec, "purchases_sync", instance, resources=fast_retries(0))
        metadata = _metadata(first)
        assert metadata["events_delivered"] == 4 and metadata["events_failed"] == 1
        assert sorted(_keys(emulator, "u1")) == ["purchase", "purchase", "signup"]
        assert _keys(emulator, "u2") == ["signup"]
        refused = _item("2")
        assert refused["delivered"] is False or refused["delivered"] == 0
        assert refused["failed_runs"] == 1 and refused["last_status"] == 400
        assert "purchse" in refused["last_error"]  # the API's reason
        assert all(_item(str(event_id))["delivered"] for event_id in (1, 3, 4, 5))

        # the next run sends the refused event alone: nothing delivered is sent twice
        second = run_job(spec, "purchases_sync", instance, resources=fast_retries(0))
        metadata = _metadata(second)
        assert metadata["events_delivered"] == 0 and metadata["events_failed"] == 1
        assert metadata["requests_sent"] == 1
        assert sorted(_keys(emulator, "u1")) == ["purchase", "purchase", "signup"]
        assert _item("2")["failed_runs"] == 2


def test_a_failed_share_above_max_failed_share_turns_the_check_error(tmp_path, instance):
    rows = [_event(1, "u1", "purchse"), *(_event(n, f"u{n}", "purchase") for n in range(2, 6))]
    url = _write(tmp_path, rows)  # 1 of 5 events refused: a share of 0.2
    with run_emulator_in_thread(EmulatorConfig(project_uid=PROJECT_UID, events=KNOWN_EVENTS)) as emulator:
        lenient = write_spec(tmp_path / "syncs.yaml", [events_sync(url, emulator.url, max_failed_share=0.25)])
        result = run_job(lenient, "purchases_sync", instance, resources=fast_retries(0))
        check = _check(result)
        assert not check.passed and check.severity.value == "WARN"
        assert check.metadata["failed_share"].value == 0.2 and check.metadata["num_failures"].value == 1
        assert result.success  # below the share: the step goes on

        strict = write_spec(tmp_path / "syncs.yaml", [events_sync(url, emulator.url, max_failed_share=0.1)])
        result = run_job(strict, "purchases_sync", instance, resources=fast_retries(0))
        check = _check(result)  # the four others were delivered: 1 of 1 tried failed
        assert not check.passed and check.severity.value == "ERROR"
        assert not result.success


def test_an_event_failing_stuck_after_runs_runs_in_a_row_is_reported_stuck(tmp_path, instance):
    url = _write(tmp_path, [_event(1, "u1", "purchse"), _event(2, "u1", "purchase")])
    with run_emulator_in_thread(EmulatorConfig(project_uid=PROJECT_UID, events=KNOWN_EVENTS)) as emulator:
        spec = write_spec(tmp_path / "syncs.yaml", [events_sync(url, emulator.url, stuck_after_runs=2)])
        first = run_job(spec, "purchases_sync", instance, resources=fast_retries(0))
        assert not first.success and _metadata(first)["events_stuck"] == 0
        assert _keys(emulator, "u1") == ["purchase"]

        second = run_job(spec, "purchases_sync", instance, resources=fast_retries(0))
        metadata = _metadata(second)
        assert metadata["events_failed"] == 1 and metadata["events_stuck"] == 1
        sample = metadata["stuck_sample"]
        assert "| 1 | u1 | 2 | 400 |" in sample and "purchse" in sample
        check = _check(second)
        assert check.metadata["events_stuck"].value == 1 and check.metadata["failed_share"].value == 0.0
        assert second.success  # a stuck event is still retried, but no longer holds up every run


def test_failed_events_gone_from_the_source_free_their_reread_slots(
    tmp_path, emulator, instance, monkeypatch
):
    monkeypatch.setattr(events_engine, "MAX_REREAD", 2)
    old = [
        _event("a1", "u1", "purchase", "2024-01-01 08:00:00"),
        _event("a2", "u1", "signup", "2024-01-01 09:00:00"),
    ]
    newer = [
        _event("b", "u2", "purchase", "2024-01-02 08:00:00"),
        _event("c", "u3", "purchase", "2024-01-03 08:00:00"),
    ]
    url = _write(tmp_path, old + newer)
    spec = write_spec(tmp_path / "syncs.yaml", [events_sync(url, emulator.url, partitioned=True)])

    def run(day: str, faults: dict):
        emulator.configure(faults=faults)
        return run_job(
            spec, "purchases_sync", instance, partition_range=(day, day), resources=fast_retries(0)
        )

    assert _metadata(run("2024-01-01", {"500": 1.0}))["events_failed"] == 2
    _write(tmp_path, newer)  # the two failed events are deleted from the source
    second = run("2024-01-02", {"500": 1.0})  # b fails; the re-read does not find a1 and a2 any more
    metadata = _metadata(second)
    assert metadata["events_failed"] == 1 and metadata["rows_reread"] == 0 and metadata["events_gone"] == 2
    assert StateStore().count_items("purchases") == {"delivered": 0, "undelivered": 1}
    assert _item("a1") is None

    # the oldest failures no longer take the two re-read slots: b (of the 2nd) is re-read by a run of the 3rd
    third = run("2024-01-03", {})
    metadata = _metadata(third)
    assert metadata["rows_reread"] == 1 and metadata["events_delivered"] == 2 and metadata["events_gone"] == 0
    assert _keys(emulator, "u2") == ["purchase"] and _keys(emulator, "u3") == ["purchase"]
    assert StateStore().count_items("purchases") == {"delivered": 2, "undelivered": 0}


def test_failed_events_with_ids_stored_as_real_are_reread_on_sqlite(tmp_path, emulator, instance):
    # an id column holding REAL 42.0 (SQLite keeps each value's type): its event id is "42", its text "42.0"
    rows = [
        _event(42.0, "u1", "purchase", "2024-01-01 08:00:00"),
        _event(7, "u2", "purchase", "2024-01-02 08:00:00"),
    ]
    url = _write(tmp_path, rows)
    spec = write_spec(tmp_path / "syncs.yaml", [events_sync(url, emulator.url, partitioned=True)])
    emulator.configure(faults={"500": 1.0})
    failed = run_job(
        spec, "purchases_sync", instance, partition_range=("2024-01-01",) * 2, resources=fast_retries(0)
    )
    assert _metadata(failed)["events_failed"] == 1 and _item("42")["failed_runs"] == 1

    emulator.configure(faults={})
    retried = run_job(
        spec, "purchases_sync", instance, partition_range=("2024-01-02",) * 2, resources=fast_retries(0)
    )
    metadata = _metadata(retried)
    assert metadata["rows_reread"] == 1 and metadata["events_gone"] == 0 and metadata["events_delivered"] == 2
    assert _keys(emulator, "u1") == ["purchase"]
    assert StateStore().count_items("purchases") == {"delivered": 2, "undelivered": 0}


def test_reads_by_id_match_numbers_stored_as_real_and_text_exactly(tmp_path):
    # the users re-read (a merge's resend mark) goes through the same read by text
    rows = [
        {"user_uid": 42.0, "plan_name": "real"},
        {"user_uid": "42.00", "plan_name": "text, another uid"},
        {"user_uid": " abc ", "plan_name": "text"},
        {"user_uid": 7, "plan_name": "integer"},
        {"user_uid": "v1.10", "plan_name": "dotted text"},
    ]
    url = write_sqlite_table(tmp_path / "src.db", rows)
    sync = load_spec(write_spec(tmp_path / "syncs.yaml", [users_sync(url, "http://127.0.0.1:1")])).get(
        "users"
    )
    found = read_users_by_uid(sync, ["42", "abc", "7", "v1.10", "v1.1"])
    assert sorted(found["plan_name"]) == ["dotted text", "integer", "real", "text"]
    assert sorted(read_users_by_uid(sync, ["42.00"])["plan_name"]) == ["text, another uid"]

    events = _write(tmp_path, [_event(42.0, "u1"), _event("42.0", "u2"), _event(-3.0, "u3")])
    events_spec = write_spec(tmp_path / "syncs.yaml", [events_sync(events, "http://127.0.0.1:1")])
    found = events_engine.read_events_by_id(load_spec(events_spec).get("purchases"), ["42", "-3"])
    assert sorted(found["user_uid"]) == ["u1", "u3"]
