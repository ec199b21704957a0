"""Delivery against the in-process fake Edge client: `deliver` on its own, then `push_users` with a state store
on a temporary SQLite file (plan, write-ahead, outcomes, guards), no Dagster and no HTTP."""

from __future__ import annotations

import pandas as pd
import pytest

from contentstack_assets.engine.deliver import deliver
from contentstack_assets.engine.mapping import map_users
from contentstack_assets.engine.push import SourceShrankError, push_users
from contentstack_assets.engine.state import StateStore
from contentstack_assets.spec import UsersSync
from tests.unit.fake_edge import OK, UNREACHABLE, Call, FakeEdgeClient, failed, refused


def _deliver(client: FakeEdgeClient, uids: list[str], **options):
    recorded: list[tuple[str, bool]] = []
    report = deliver(
        uids,
        lambda uid: client.update_attributes(uid, {"plan": "gold"}),
        client=client,
        record=lambda batch: recorded.extend((uid, response.ok) for uid, response in batch),
        **{"concurrency": 4, **options},
    )
    return report, recorded


# -- deliver -----------------------------------------------------------------------------------------
def test_every_request_is_sent_once_and_every_outcome_recorded_once():
    uids = [f"u{i}" for i in range(300)]  # more than one write-ahead batch
    client = FakeEdgeClient({"u7": [failed(attempts=3)], "u8": [failed(503, attempts=6)]})
    report, recorded = _deliver(client, uids)
    assert sorted(call.user_uid for call in client.calls) == sorted(uids)
    assert sorted(recorded) == sorted((uid, uid not in ("u7", "u8")) for uid in uids)
    assert (report.delivered, report.failed) == (298, 2)
    assert report.requests_sent == 298 + 3 + 6  # every attempt counts
    assert [request for request, _ in report.failures] == ["u7", "u8"]
    assert report.stopped is None
    assert (client.opened, client.closed) == (1, 1)


@pytest.mark.parametrize("concurrency", [1, 3, 8])
def test_no_more_than_concurrency_requests_are_in_flight(concurrency):
    client = FakeEdgeClient(latency_s=0.002)
    _deliver(client, [f"u{i}" for i in range(40)], concurrency=concurrency)
    assert client.most_in_flight == concurrency


def test_a_batch_is_written_ahead_before_any_of_its_requests_goes_out():
    forgotten: set[str] = set()

    def check(call: Call) -> None:
        assert call.user_uid in forgotten, f"{call.user_uid} sent before its write-ahead"

    client = FakeEdgeClient(before_each=check)
    uids = [f"u{i}" for i in range(600)]
    _deliver(client, uids, before_send=forgotten.update)
    assert forgotten == set(uids) and len(client.calls) == 600


def test_a_destination_that_refuses_everything_stops_delivery():
    client = FakeEdgeClient(default=refused(404))
    report, recorded = _deliver(client, [f"u{i}" for i in range(1000)], stop_after_refusals=10, total=1000)
    assert 10 <= len(client.calls) < 100  # what was in flight lands; no more are taken
    assert len(recorded) == len(client.calls)  # the refusals are recorded: those users are retried
    assert "the first 10 answers were all refusals (HTTP 404)" in report.stopped
    assert f"after {len(client.calls)} of 1000 users" in report.stopped


def test_refusals_after_a_delivery_are_per_user_failures():
    client = FakeEdgeClient({"u0": [OK]}, default=refused(404))
    report, _ = _deliver(client, [f"u{i}" for i in range(50)], concurrency=1, stop_after_refusals=5)
    assert report.stopped is None and len(client.calls) == 50
    assert (report.delivered, report.failed) == (1, 49)


def test_an_unreachable_destination_stops_delivery_and_says_so():
    client = FakeEdgeClient(default=UNREACHABLE)
    report, _ = _deliver(client, [f"u{i}" for i in range(200)], stop_after_unreachable=5, concurrency=2)
    assert len(client.calls) < 10
    assert "could not reach the destination" in report.stopped and "connection refused" in report.stopped


def test_an_error_while_recording_stops_delivery_and_is_raised():
    client = FakeEdgeClient(latency_s=0.001)

    def record(batch):
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        deliver(
            [f"u{i}" for i in range(2000)],
            lambda uid: client.update_attributes(uid, {}),
            client=client,
            concurrency=4,
            record=record,
        )
    assert len(client.calls) < 2000
    assert client.closed == 1


def test_progress_is_reported_at_the_end_with_the_totals():
    seen = []
    client = FakeEdgeClient()
    _deliver(
        client, ["a", "b", "c"], total=3, on_progress=lambda done, total, report: seen.append((done, total))
    )
    assert seen[-1] == (3, 3)


# -- push_users --------------------------------------------------------------------------------------
SPEC = {
    "name": "users",
    "source": {"url": "sqlite:///unused.db", "table": "users"},
    "destination": {"project_uid": "p" * 24, "edge_url": "http://127.0.0.1:9"},
    "match": {"column": "user_uid"},
    "attributes": {
        "plan": {"column": "plan_name", "type": "string"},
        "orders": {"column": "order_count", "type": "integer"},
    },
    "stuck_after_runs": 2,
}


@pytest.fixture
def store(tmp_path) -> StateStore:
    return StateStore(f"sqlite:///{tmp_path / 'state.db'}")


def _sync(**changes) -> UsersSync:
    return UsersSync.model_validate({**SPEC, **changes})


def _mapped(sync: UsersSync, rows: list[tuple]) -> pd.DataFrame:
    return map_users(pd.DataFrame(rows, columns=["user_uid", "plan_name", "order_count"], dtype=object), sync)


def _push(sync, rows, store, client, run_id, **options):
    return push_users(
        sync, _mapped(sync, rows), client=client, store=store, run_id=run_id, log=lambda _: None, **options
    )


ROWS = [("u1", "gold", 3), ("u2", "silver", 1), ("u3", None, 7)]


def test_a_first_push_sends_everyone_and_a_second_push_sends_nothing(store):
    sync, first = _sync(), FakeEdgeClient()
    result = _push(sync, ROWS, store, first, "run-1")
    assert first.bodies() == {"u1": {"plan": "gold", "orders": 3}, "u2": {"plan": "silver", "orders": 1},
                              "u3": {"orders": 7}}  # fmt: skip
    assert result.counts["users_delivered"] == 3 and result.counts["requests_sent"] == 3
    key = store.key_of(sync)
    assert store.load_delivered(key, ["u1", "u3"]) == {
        "u1": {"plan": "gold", "orders": 3},
        "u3": {"orders": 7},
    }
    assert store.last_finished_run(key)["counts"]["users_delivered"] == 3

    second = FakeEdgeClient()
    result = _push(sync, ROWS, store, second, "run-2")
    assert second.calls == [] and result.counts["users_unchanged"] == 3


def test_a_changed_value_sends_only_its_key(store):
    sync = _sync()
    _push(sync, ROWS, store, FakeEdgeClient(), "run-1")
    client = FakeEdgeClient()
    _push(sync, [("u1", "gold", 4), *ROWS[1:]], store, client, "run-2")
    assert client.bodies() == {"u1": {"orders": 4}}


def test_a_failed_user_is_retried_next_run_and_reported_stuck(store):
    sync = _sync()
    _push(sync, ROWS, store, FakeEdgeClient({"u2": [failed(), failed()]}), "run-1")
    result = _push(sync, ROWS, store, (client := FakeEdgeClient({"u2": [failed()]})), "run-2")
    assert client.bodies() == {"u2": {"plan": "silver", "orders": 1}}
    assert result.counts["users_retried"] == 1 and result.counts["users_failed"] == 1
    assert result.stuck_total == 1 and result.stuck_sample[0]["user_uid"] == "u2"  # stuck_after_runs: 2

    result = _push(sync, ROWS, store, (client := FakeEdgeClient()), "run-3")
    assert list(client.bodies()) == ["u2"] and result.stuck_total == 0


def test_the_state_forgets_the_keys_in_flight_before_they_are_sent(store):
    sync = _sync()
    _push(sync, ROWS, store, FakeEdgeClient(), "run-1")
    key = store.key_of(sync)
    seen = {}
    client = FakeEdgeClient(
        before_each=lambda call: seen.setdefault(call.user_uid, store.user_state(key, call.user_uid))
    )
    _push(sync, [("u1", "platinum", 3), *ROWS[1:]], store, client, "run-2")
    assert seen["u1"]["delivered"] == {"orders": 3} and seen["u1"]["fingerprint"] is None
    assert store.user_state(key, "u1")["delivered"] == {"plan": "platinum", "orders": 3}


def test_a_dry_run_sends_nothing_and_records_no_run(store):
    sync = _sync()
    client = FakeEdgeClient()
    result = _push(sync, ROWS, store, client, "run-1", dry_run=True)
    assert client.calls == [] and result.dry_run and result.plan.counts["new"] == 3
    assert store.last_finished_run(store.key_of(sync)) is None


def test_rejected_rows_are_recorded_and_not_sent(store):
    sync = _sync()
    client = FakeEdgeClient()
    result = _push(sync, [*ROWS, ("u4", "gold", "many"), (None, "gold", 1)], store, client, "run-1")
    assert set(client.bodies()) == {"u1", "u2", "u3"}
    assert result.counts["rows_rejected"] == 2
    assert store.rejections_for_user("u4", sync="users")[0]["reason"].startswith("orders: ")


def test_a_source_that_shrank_stops_the_push_before_any_request(store):
    sync = _sync()
    rows = [(f"u{i}", "gold", i) for i in range(10)]
    _push(sync, rows, store, FakeEdgeClient(), "run-1")
    client = FakeEdgeClient()
    with pytest.raises(SourceShrankError, match="returned 4 rows where the last run read 10"):
        _push(sync, rows[:4], store, client, "run-2")
    assert client.calls == []
    _push(sync, rows[:4], store, client, "run-3", allow_source_shrink=True)  # waived: the push goes on
    _push(sync, rows[:5], store, FakeEdgeClient(), "run-4")  # 5 of 4 is fine: compared with the last run


def test_a_spec_edit_sends_what_the_api_does_not_hold_yet(store):
    _push(_sync(), ROWS, store, FakeEdgeClient(), "run-1")
    renamed = {"tier": SPEC["attributes"]["plan"], "orders": SPEC["attributes"]["orders"]}
    client = FakeEdgeClient()
    _push(_sync(attributes=renamed), ROWS, store, client, "run-2")
    assert client.bodies() == {"u1": {"tier": "gold"}, "u2": {"tier": "silver"}}
