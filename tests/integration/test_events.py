"""Events syncs over real HTTP: one POST /events per user, each event id once ever, every rejection class."""

from __future__ import annotations

import pandas as pd
import pytest
import sqlalchemy as sa

from contentstack_assets.engine.events import map_events, plan_events
from contentstack_assets.engine.mapping import valid_rows
from contentstack_assets.engine.state import ItemOutcome, StateStore, UserOutcome, rejections
from contentstack_assets.personalize.emulator import EmulatorConfig, run_emulator_in_thread
from contentstack_assets.spec import EventsSync
from tests.helpers import (
    PROJECT_UID,
    dry_run_plan,
    fast_retries,
    push_metadata,
    push_metadata_by_day,
    run_job,
    write_spec,
    write_sqlite_table,
)

EVENT_COLUMNS = ["purchase_id", "user_uid", "event_name", "purchased_at"]
TOKEN = "test-management-token"


def events_sync(url: str, edge_url: str, *, partitioned: bool = False, **overrides) -> dict:
    source = {"url": url, "table": "purchases"}
    if partitioned:
        source.update(occurred_at="purchased_at", start_date="2024-01-01")
    sync = {
        "name": "purchases",
        "kind": "events",
        "source": source,
        "destination": {"project_uid": PROJECT_UID, "edge_url": edge_url},
        "match": {"column": "user_uid"},
        "event": {"id_column": "purchase_id", "key_column": "event_name"},
        "concurrency": 4,
    }
    sync.update(overrides)
    return sync


def _event(purchase_id, user_uid, event_name="purchase", purchased_at="2024-01-01 10:00:00") -> dict:
    return dict(purchase_id=purchase_id, user_uid=user_uid, event_name=event_name, purchased_at=purchased_at)


def _write(tmp_path, rows: list[dict]) -> str:
    return write_sqlite_table(tmp_path / "src.db", rows, table="purchases", columns=EVENT_COLUMNS)


def _keys(emulator, uid: str) -> list[str]:
    user = emulator.user(uid)
    return [] if user is None else [event["eventKey"] for event in user["events"]]


def _metadata(result) -> dict:
    return push_metadata(result, "purchases", "personalize_events")


def _reasons(tmp_path, run_id: str) -> dict[int, str]:
    store = StateStore(f"sqlite:///{tmp_path / 'state.db'}")
    with store.engine.connect() as connection:
        rows = connection.execute(
            sa.select(rejections.c.row_number, rejections.c.reason).where(rejections.c.run_id == run_id)
        ).all()
    return dict(rows)


def test_events_go_out_as_one_array_per_user_and_once_ever(tmp_path, emulator, instance):
    rows = [
        _event(1, "u1", "purchase"),
        _event(2, "u2", "signup"),
        _event(3, " u1 ", " signup "),  # uid and key trimmed
        _event("  p-4 ", "u1", "purchase"),  # text ids are trimmed too
    ]
    spec = write_spec(tmp_path / "syncs.yaml", [events_sync(_write(tmp_path, rows), emulator.url)])

    dry = run_job(spec, "purchases_dry_run", instance)
    assert dry.success and dry_run_plan(dry, "purchases", "personalize_events")["events_new"] == 4
    assert emulator.user("u1") is None

    first = run_job(spec, "purchases_sync", instance)
    assert first.success
    assert _keys(emulator, "u1") == ["purchase", "signup", "purchase"]  # source order, one array
    assert _keys(emulator, "u2") == ["signup"]
    assert emulator.stats()["event_counts"] == {"u1": 1, "u2": 1}
    metadata = _metadata(first)
    assert metadata["rows_read"] == 4 and metadata["rows_rejected"] == 0
    assert metadata["events_delivered"] == 4 and metadata["events_failed"] == 0
    assert metadata["requests_sent"] == 2
    log = StateStore().run_log("purchases", first.run_id)
    assert sorted(log["request"]) == ["events", "events"]
    assert sorted(log["keys"]) == ["purchase,signup,purchase", "signup"]

    second = run_job(spec, "purchases_sync", instance)  # a rerun sends nothing
    assert second.success
    assert emulator.stats()["event_counts"] == {"u1": 1, "u2": 1}
    metadata = _metadata(second)
    assert metadata["events_delivered"] == 0 and metadata["requests_sent"] == 0
    assert metadata["events_already_delivered"] == 4

    # a new event (and the number 1 stored as text: the same id) sends only the new one
    rows[0]["purchase_id"] = "1"
    _write(tmp_path, [*rows, _event(5, "u2", "purchase")])
    third = run_job(spec, "purchases_sync", instance)
    assert _metadata(third)["events_delivered"] == 1
    assert _keys(emulator, "u2") == ["signup", "purchase"]
    assert emulator.stats()["event_counts"] == {"u1": 1, "u2": 2}


def test_every_rejection_class_and_the_key_check(tmp_path, instance):
    good = [_event("g1", "u1", "purchase"), _event("g2", "u2", " signup ")]
    bad = [
        (_event(None, "u3"), "missing event id"),
        (_event("   ", "u3"), "missing event id"),
        (_event("dup", "u4"), "duplicate event id"),
        (_event("dup", "u5"), "duplicate event id"),  # every row of a repeated id
        (_event("g3", "u6", "   "), "empty event key"),
        (_event("g4", "u6", None), "empty event key"),
        (_event("g5", "u7", "refund"), "unknown event key 'refund'"),
        (_event("g6", None), "missing user uid"),
        (_event("g7", "usér"), "invalid user uid"),
    ]
    url = _write(tmp_path, good + [row for row, _ in bad])
    config = EmulatorConfig(project_uid=PROJECT_UID, events=["purchase", "signup"], management_token=TOKEN)
    with run_emulator_in_thread(config) as emulator:
        sync = events_sync(url, emulator.url)
        sync["destination"].update(management_url=emulator.url, management_token=TOKEN)
        spec = write_spec(tmp_path / "syncs.yaml", [sync])
        result = run_job(spec, "purchases_sync", instance)
        assert result.success  # rejected rows never stop the others
        assert _keys(emulator, "u1") == ["purchase"] and _keys(emulator, "u2") == ["signup"]
        assert set(emulator.stats()["event_counts"]) == {"u1", "u2"}

        metadata = _metadata(result)
        assert metadata["rows_read"] == len(good) + len(bad)
        assert metadata["rows_rejected"] == len(bad)
        assert metadata["events_delivered"] == 2 and metadata["keys_checked"] is True
        reasons = _reasons(tmp_path, result.run_id)
        for offset, (_, fragment) in enumerate(bad):
            assert fragment in reasons[len(good) + offset + 1]

        check = next(c for c in result.get_asset_check_evaluations() if c.check_name == "event_keys_exist")
        assert not check.passed and check.severity.value == "WARN"  # those rows are set aside; the rest goes
        assert check.metadata["missing_keys"].value == ["refund"]

        # a fixed key the project lacks blocks the push: nothing is sent
        sync["event"] = {"id_column": "purchase_id", "key": "subscription"}
        spec = write_spec(tmp_path / "syncs.yaml", [{**sync, "name": "fixed"}])
        before = emulator.stats()["by_endpoint"].get("POST /events")
        result = run_job(spec, "fixed_sync", instance)
        assert not result.success
        check = next(c for c in result.get_asset_check_evaluations() if c.check_name == "event_keys_exist")
        assert not check.passed and check.severity.value == "ERROR"
        assert emulator.stats()["by_endpoint"].get("POST /events") == before


def test_rerun_and_overlapping_backfill_send_no_event_twice(tmp_path, emulator, instance):
    rows = [_event(f"e{day}", "u1", "purchase", f"2024-01-0{day} 12:00:00") for day in range(1, 6)]
    rows += [_event(f"f{day}", "u2", "signup", f"2024-01-0{day} 23:59:59") for day in (2, 4)]
    spec = write_spec(
        tmp_path / "syncs.yaml", [events_sync(_write(tmp_path, rows), emulator.url, partitioned=True)]
    )

    first = run_job(spec, "purchases_sync", instance, partition_range=("2024-01-01", "2024-01-03"))
    assert first.success
    assert _metadata(first)["events_delivered"] == 4  # e1 e2 e3 f2
    # each day its own events, not the run's totals three times over
    by_day = push_metadata_by_day(first, "purchases", "personalize_events")
    assert {day: figures["events_delivered"] for day, figures in by_day.items()} == {
        "2024-01-01": 1,
        "2024-01-02": 2,
        "2024-01-03": 1,
    }
    assert {day: figures["rows_read"] for day, figures in by_day.items()} == {
        "2024-01-01": 1,
        "2024-01-02": 2,
        "2024-01-03": 1,
    }
    overlapping = run_job(spec, "purchases_sync", instance, partition_range=("2024-01-02", "2024-01-05"))
    assert overlapping.success
    metadata = _metadata(overlapping)
    assert metadata["events_delivered"] == 3 and metadata["events_already_delivered"] == 3  # e4 e5 f4 new
    rerun = run_job(spec, "purchases_sync", instance, partition_range=("2024-01-01", "2024-01-05"))
    assert _metadata(rerun)["requests_sent"] == 0

    assert _keys(emulator, "u1") == ["purchase"] * 5
    assert _keys(emulator, "u2") == ["signup"] * 2
    assert emulator.stats()["event_counts"] == {"u1": 2, "u2": 2}
    assert StateStore().count_items("purchases") == {"delivered": 7, "undelivered": 0}


def test_failed_events_are_sent_by_the_next_run_whatever_its_days(tmp_path, emulator, instance):
    # integer ids: the re-read by id compares the column's text
    rows = [
        _event(101, "u1", "purchase", "2024-01-01 08:00:00"),
        _event(102, "u1", "signup", "2024-01-01 09:00:00"),
    ]
    rows.append(_event("c", "u2", "purchase", "2024-01-02 08:00:00"))
    spec = write_spec(
        tmp_path / "syncs.yaml", [events_sync(_write(tmp_path, rows), emulator.url, partitioned=True)]
    )

    emulator.configure(faults={"500": 1.0})
    failed = run_job(
        spec,
        "purchases_sync",
        instance,
        partition_range=("2024-01-01", "2024-01-01"),
        resources=fast_retries(0),
    )
    assert not failed.success  # the step fails after every user was tried
    metadata = _metadata(failed)
    assert (
        metadata["events_failed"] == 2
        and metadata["events_delivered"] == 0
        and metadata["requests_sent"] == 1
    )
    assert StateStore().count_items("purchases") == {"delivered": 0, "undelivered": 2}

    emulator.configure(faults={})
    # the next run covers only the 2nd; the failed events of the 1st are re-read by id and sent with it
    retried = run_job(
        spec,
        "purchases_sync",
        instance,
        partition_range=("2024-01-02", "2024-01-02"),
        resources=fast_retries(0),
    )
    assert retried.success
    metadata = _metadata(retried)
    assert metadata["rows_reread"] == 2 and metadata["events_delivered"] == 3
    assert _keys(emulator, "u1") == ["purchase", "signup"] and _keys(emulator, "u2") == ["purchase"]

    again = run_job(spec, "purchases_sync", instance, partition_range=("2024-01-01", "2024-01-02"))
    assert _metadata(again)["requests_sent"] == 0
    assert emulator.stats()["event_counts"] == {"u1": 1, "u2": 1}


# -- the engine alone --------------------------------------------------------------------------------------
def _sync(**event) -> EventsSync:
    return EventsSync.model_validate(
        {
            "name": "ev",
            "kind": "events",
            "source": {"url": "sqlite://", "table": "t"},
            "destination": {"project_uid": PROJECT_UID, "edge_url": "http://127.0.0.1:1"},
            "match": {"column": "uid"},
            "event": event or {"id_column": "id", "key_column": "key"},
        }
    )


def test_ids_as_text_keys_fixed_and_requests_capped():
    raw = pd.DataFrame(
        {"uid": ["u1", "u1", "u1", "u2"], "id": [7, 8.0, b"\x00", float("nan")], "key": ["k", "k", "k", "k"]},
        dtype=object,
    )
    frame = map_events(raw, _sync())
    assert list(frame["event_id"][:2]) == ["7", "8"]  # 8.0 from a NULL-holding integer column is "8"
    assert (
        frame["_rejection"][2].startswith("invalid event id") and frame["_rejection"][3] == "missing event id"
    )

    fixed = map_events(raw.iloc[:2], _sync(id_column="id", key=" purchase "))
    assert list(fixed["event_key"]) == ["purchase", "purchase"]

    plan = plan_events(valid_rows(frame), delivered={"8"}, max_per_request=1)
    assert [(r.user_uid, r.event_ids) for r in plan.requests] == [("u1", ("7",))]
    assert plan.events_already_delivered == 1
    many = pd.DataFrame({"uid": ["u1"] * 5, "id": list(range(5)), "key": ["k"] * 5}, dtype=object)
    plan = plan_events(valid_rows(map_events(many, _sync())), delivered=set(), max_per_request=2)
    assert [len(r.event_ids) for r in plan.requests] == [2, 2, 1]


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_a_late_failure_never_undoes_a_delivery(tmp_path, request, backend):
    url = (
        f"sqlite:///{tmp_path / 'items.db'}"
        if backend == "sqlite"
        else request.getfixturevalue("postgres_url")
    )
    store = StateStore(url)

    def outcome(ok: bool) -> tuple[list[ItemOutcome], UserOutcome]:
        logged = UserOutcome("u1", ("k",), ok, 200 if ok else 500, 1, 1.0, None, None, None, request="events")
        return [ItemOutcome("e1", "u1", ok, 200 if ok else 500, None if ok else "HTTP 500")], logged

    store.record_item_requests("ev", "run1", [outcome(False)])
    store.record_item_requests("ev", "run2", [outcome(False)])
    assert store.undelivered_items("ev")[0]["failed_runs"] == 2
    store.record_item_requests("ev", "run3", [outcome(True)])
    store.record_item_requests("ev", "run4", [outcome(False)])  # e.g. an overlapping run that read earlier
    assert store.delivered_items("ev", ["e1"]) == {"e1"}
    assert store.count_items("ev") == {"delivered": 1, "undelivered": 0}
    assert len(store.log_for_user("u1", "ev")) == 4
