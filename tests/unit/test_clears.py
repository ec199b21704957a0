"""`on_delete: clear` in the engine: `push_users` against the in-process fake Edge client with a state store on a
temporary SQLite file, no Dagster and no HTTP. Who left, what each is sent, the guards, and what the state keeps."""

from __future__ import annotations

import pandas as pd
import pytest

from contentstack_assets.engine.clears import TooManyClearsError
from contentstack_assets.engine.mapping import map_users
from contentstack_assets.engine.push import SourceShrankError, push_users
from contentstack_assets.engine.shards import shard_of
from contentstack_assets.engine.state import StateStore
from contentstack_assets.spec import UsersSync
from tests.helpers import write_sqlite_table
from tests.unit.fake_edge import FakeEdgeClient, failed, refused

SPEC = {
    "name": "users",
    "source": {"url": "sqlite:///unused.db", "table": "users"},
    "destination": {"project_uid": "p" * 24, "edge_url": "http://127.0.0.1:9"},
    "match": {"column": "user_uid"},
    "attributes": {
        "plan": {"column": "plan_name", "type": "string"},
        "orders": {"column": "order_count", "type": "integer"},
    },
    "on_delete": "clear",
    "max_clear_share": 0.5,
}
ROWS = [("u1", "gold", 3), ("u2", "silver", 1), ("u3", None, 7), ("u4", "free", 2), ("u5", "gold", 9)]


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


def _without(*uids: str) -> list[tuple]:
    return [row for row in ROWS if row[0] not in uids]


def test_keep_is_the_default_and_a_user_who_left_keeps_everything(store):
    sync = _sync(on_delete="keep")
    assert UsersSync.model_validate({k: v for k, v in SPEC.items() if k != "on_delete"}).on_delete == "keep"
    _push(sync, ROWS, store, FakeEdgeClient(), "run-1")
    client = FakeEdgeClient()
    result = _push(sync, _without("u2"), store, client, "run-2")
    assert client.calls == [] and result.counts["users_cleared"] == 0
    assert store.user_state(store.key_of(sync), "u2")["delivered"] == {"plan": "silver", "orders": 1}


def test_a_user_who_left_gets_exactly_the_keys_sent_to_them_nulled_and_is_forgotten(store):
    sync = _sync()
    _push(sync, ROWS, store, FakeEdgeClient(), "run-1")
    key = store.key_of(sync)
    client = FakeEdgeClient()
    result = _push(sync, _without("u3"), store, client, "run-2")
    # u3's plan was null (nulls: skip): never sent, so not cleared either
    assert client.bodies() == {"u3": {"orders": None}}
    assert (result.counts["users_cleared"], result.counts["users_clear_failed"]) == (1, 0)
    assert result.counts["requests_sent"] == 1
    assert store.user_state(key, "u3") is None
    logged = store.log_for_user("u3", "users")
    assert [(row["request"], row["keys"], row["error"]) for row in logged][0] == ("clear", "orders", None)

    # a user who comes back is new: sent everything
    back = FakeEdgeClient()
    again = _push(sync, ROWS, store, back, "run-3")
    assert back.bodies() == {"u3": {"orders": 7}} and again.counts["users_new"] == 1


def test_a_rejected_row_is_not_a_user_who_left(store):
    sync = _sync()
    _push(sync, ROWS, store, FakeEdgeClient(), "run-1")
    client = FakeEdgeClient()
    rows = [*_without("u2"), ("u2", "silver", "not a number")]
    result = _push(sync, rows, store, client, "run-2")
    assert client.calls == [] and result.counts["rows_rejected"] == 1 and result.counts["users_cleared"] == 0
    assert store.user_state(store.key_of(sync), "u2") is not None


def test_a_run_over_some_days_never_clears_and_one_given_the_whole_read_does(store, tmp_path):
    url = write_sqlite_table(tmp_path / "src.db", [{"user_uid": uid} for uid, *_ in _without("u2")])
    sync = _sync(
        source={"url": url, "table": "users", "updated_at": "updated_at", "start_date": "2024-01-01"}
    )
    _push(sync, ROWS, store, FakeEdgeClient(), "run-1", scope="2024-01-01...2024-01-09")
    client = FakeEdgeClient()
    result = _push(sync, ROWS[:1], store, client, "run-2", scope="2024-01-02")
    assert client.calls == [] and result.leavers is None and result.counts["users_cleared"] == 0
    # the run over every day is told the uids of the whole source (syncs/push.py `present_uids`)
    result = _push(
        sync,
        ROWS[:1],
        store,
        client,
        "run-3",
        scope="2024-01-01...2024-01-09",
        present=["u1", "u3", "u4", "u5"],
    )
    assert client.bodies() == {"u2": {"plan": None, "orders": None}}
    assert result.counts["users_cleared"] == 1 and result.by_day.as_dict()[None]["users_cleared"] == 1


def test_more_leavers_than_max_clear_share_stops_before_anything_is_sent(store):
    sync = _sync(max_clear_share=0.2)
    _push(sync, ROWS, store, FakeEdgeClient(), "run-1")
    key = store.key_of(sync)
    client = FakeEdgeClient()
    with pytest.raises(TooManyClearsError) as refused:
        _push(sync, _without("u1", "u2"), store, client, "run-2")
    message = str(refused.value)
    assert "2 of the 5 users" in message and "allow_clear: true" in message and "max_clear_share" in message
    assert client.calls == [] and store.count_users(key) == 5
    assert store.last_finished_run(key)["run_id"] == "run-1"  # the refused run recorded nothing

    # a dry run lists them and says a real run would stop, and sends nothing
    lines: list[str] = []
    dry = push_users(
        sync, _mapped(sync, _without("u1", "u2")), client=None, store=store, run_id="dry", dry_run=True,
        log=lines.append,
    )  # fmt: skip
    assert dry.leavers.uids == ["u1", "u2"] and dry.counts["users_to_clear"] == 2
    assert dry.counts["users_cleared"] == 0 and store.count_users(key) == 5
    assert any("u1, u2" in line for line in lines) and any("a real run would stop" in line for line in lines)

    allowed = _push(sync, _without("u1", "u2"), store, client, "run-3", allow_clear=True)
    assert set(client.bodies()) == {"u1", "u2"} and allowed.counts["users_cleared"] == 2


def test_the_empty_source_guard_runs_before_any_clear(store):
    sync = _sync(max_clear_share=1.0)
    _push(sync, ROWS, store, FakeEdgeClient(), "run-1")
    client = FakeEdgeClient()
    with pytest.raises(SourceShrankError):
        _push(sync, [], store, client, "run-2")
    assert client.calls == [] and store.count_users(store.key_of(sync)) == 5


def test_a_failed_clear_keeps_the_user_and_the_next_run_clears_the_same_keys(store):
    sync = _sync()
    _push(sync, ROWS, store, FakeEdgeClient(), "run-1")
    key = store.key_of(sync)
    result = _push(sync, _without("u2"), store, FakeEdgeClient({"u2": [failed(500)]}), "run-2")
    assert (result.counts["users_cleared"], result.counts["users_clear_failed"]) == (0, 1)
    assert store.user_state(key, "u2")["delivered"] == {"plan": "silver", "orders": 1}
    assert store.log_for_user("u2", "users")[0]["error"] is not None
    client = FakeEdgeClient()
    result = _push(sync, _without("u2"), store, client, "run-3")
    assert client.bodies() == {"u2": {"plan": None, "orders": None}} and result.counts["users_cleared"] == 1
    assert store.user_state(key, "u2") is None


def test_a_user_whose_last_delivery_is_unconfirmed_is_cleared_of_what_it_may_hold(store):
    sync = _sync()
    _push(sync, ROWS, store, FakeEdgeClient(), "run-1")
    key = store.key_of(sync)
    # u3 gets a plan, but the request fails: what the API holds of it is unknown
    moved = [row if row[0] != "u3" else ("u3", "gold", 7) for row in ROWS]
    _push(sync, moved, store, FakeEdgeClient({"u3": [failed(504)]}), "run-2")
    client = FakeEdgeClient()
    # with on_delete: clear a user who is gone and unconfirmed stays in the state for the clear (not dropped)
    result = _push(sync, _without("u3"), store, client, "run-3", gone=["u3"])
    assert client.bodies() == {"u3": {"orders": None, "plan": None}}
    assert result.counts["users_cleared"] == 1 and store.user_state(key, "u3") is None


def test_a_gone_unconfirmed_user_of_a_partitioned_run_waits_for_the_whole_read(store, tmp_path):
    url = write_sqlite_table(tmp_path / "src.db", [{"user_uid": uid} for uid, *_ in _without("u3")])
    sync = _sync(
        source={"url": url, "table": "users", "updated_at": "updated_at", "start_date": "2024-01-01"}
    )
    _push(sync, ROWS, store, FakeEdgeClient(), "run-1", scope="2024-01-01")
    moved = [row if row[0] != "u3" else ("u3", "gold", 7) for row in ROWS]
    _push(sync, moved, store, FakeEdgeClient({"u3": [failed(504)]}), "run-2", scope="2024-01-01")
    key = store.key_of(sync)
    _push(sync, ROWS[:1], store, FakeEdgeClient(), "run-3", scope="2024-01-02", gone=["u3"])
    state = store.user_state(key, "u3")
    assert state is not None and state["failed_runs"] == 0  # kept, not counted as failing or stuck
    keep = _sync(on_delete="keep", source=sync.source.model_dump(exclude_none=True))
    _push(keep, ROWS[:1], store, FakeEdgeClient(), "run-4", scope="2024-01-02", gone=["u3"])
    assert store.user_state(key, "u3") is None  # keep: dropped, as before


def test_each_shard_clears_only_its_own_users(store):
    sync = _sync(max_clear_share=1.0)
    rows = [(f"u{i}", "gold", i) for i in range(20)]
    _push(sync, rows, store, FakeEdgeClient(), "run-1")
    remaining = rows[:10]
    present = [uid for uid, *_ in remaining]
    owners = dict(zip([uid for uid, *_ in rows], shard_of([uid for uid, *_ in rows], 2), strict=True))
    cleared: set[str] = set()
    for index in range(2):
        client = FakeEdgeClient()
        mine = [row for row in remaining if owners[row[0]] == index]
        _push(sync, mine, store, client, "run-2", shard=(index, 2), present=present, allow_source_shrink=True)
        assert all(owners[uid] == index for uid in client.bodies())
        cleared |= set(client.bodies())
    assert cleared == {f"u{i}" for i in range(10, 20)}
    # a shard not told the whole read's uids clears nobody (its rows lack other shards' rejected rows)
    result = _push(sync, rows[:1], store, FakeEdgeClient(), "run-3", shard=(0, 2), allow_source_shrink=True)
    assert result.leavers is None


def test_a_frame_read_before_a_users_last_delivery_does_not_clear_them(store):
    sync = _sync()
    old = _mapped(sync, _without("u5"))
    old.attrs["read_at"] = 1_000  # an old frame (a stored one pushed again): u5 was not in it yet
    newer = _mapped(sync, ROWS)
    newer.attrs["read_at"] = 2_000
    push_users(sync, newer, client=FakeEdgeClient(), store=store, run_id="run-1", log=lambda _: None)
    client = FakeEdgeClient()
    result = push_users(sync, old, client=client, store=store, run_id="run-2", log=lambda _: None)
    assert client.calls == [] and result.leavers.newer == 1 and result.counts["users_cleared"] == 0
    assert store.user_state(store.key_of(sync), "u5") is not None


def test_no_clear_is_sent_to_a_destination_that_refused_every_update(store):
    sync = _sync()
    rows = [(f"u{i}", "gold", i) for i in range(40)]
    _push(sync, rows, store, FakeEdgeClient(), "run-1")
    client = FakeEdgeClient(default=refused(404))
    moved = [(uid, "silver", orders) for uid, _, orders in rows[1:]]
    result = _push(sync, moved, store, client, "run-2")
    assert result.report.stopped and result.counts["users_cleared"] == 0
    assert "u0" not in {call.user_uid for call in client.calls}
    assert store.user_state(store.key_of(sync), "u0") is not None  # the next run clears it
