"""`on_delete: clear` through Dagster, over real HTTP against the emulator: a user who left the source gets
the keys this sync sent them set to null and is forgotten; a rejected row is not a user who left; runs over
some days never clear and a run over every day does; `max_clear_share` stops a run before anything is sent
and `allow_clear` lets it through; a dry run lists who would be cleared; shards clear their own users; the
state on SQLite and on PostgreSQL; the keys through the Component."""

from __future__ import annotations

import datetime as dt
import json
import re
import urllib.request

import dagster as dg
import pytest
from dagster.components.testing import create_defs_folder_sandbox

from contentstack_assets import PersonalizeSyncsComponent, cli
from contentstack_assets.engine.state import StateStore
from contentstack_assets.spec import load_spec
from tests.helpers import (
    dry_run_plan,
    push_config,
    push_metadata,
    run_job,
    users_sync,
    write_spec,
    write_sqlite_table,
)

ATTRIBUTES = {
    "plan": {"column": "plan_name", "type": "string"},
    "orders": {"column": "order_count", "type": "integer"},
}
ROWS = [
    dict(user_uid=f"u{index}", plan_name="gold" if index % 2 else None, order_count=index)
    for index in range(1, 11)
]  # the odd users have a plan; the even ones never get one sent (nulls: skip)


def _without(*uids: str, rows=ROWS) -> list[dict]:
    return [row for row in rows if row["user_uid"] not in uids]


def _spec(tmp_path, emulator, rows, **overrides):
    url = write_sqlite_table(tmp_path / "src.db", rows)
    sync = users_sync(url, emulator.url, attributes=ATTRIBUTES, on_delete="clear", **overrides)
    return write_spec(tmp_path / "syncs.yaml", [sync])


def _stored(emulator, uid: str) -> dict:
    """What the emulator holds for a user, read over HTTP as a user of the emulator would."""
    with urllib.request.urlopen(f"{emulator.url}/_emulator/users/{uid}") as response:
        return json.load(response)["attributes"]


def _patches(emulator) -> int:
    return emulator.stats()["applied"]["patch"]


def _failure_text(result: dg.ExecuteInProcessResult) -> str:
    failures = [event for event in result.all_events if event.event_type == dg.DagsterEventType.STEP_FAILURE]
    assert failures, "expected a failed step"
    return "\n".join(event.step_failure_data.error.message for event in failures)


@pytest.mark.parametrize("state", ["sqlite", "postgresql"])
def test_a_user_who_left_is_cleared_of_exactly_what_was_sent_and_forgotten(
    tmp_path, emulator, instance, monkeypatch, request, capsys, state
):
    if state == "postgresql":
        monkeypatch.setenv("CONTENTSTACK_STATE_URL", request.getfixturevalue("postgres_url"))
    assert run_job(_spec(tmp_path, emulator, ROWS), "users_sync", instance).success
    # the project holds a key this sync never sent to u1 and u2
    for uid in ("u1", "u2"):
        urllib.request.urlopen(
            urllib.request.Request(
                f"{emulator.url}/user-attributes",
                data=json.dumps({"crm_score": 5}).encode(),
                method="PATCH",
                headers={
                    "x-project-uid": "test0000000000000000proj",
                    "x-cs-personalize-user-uid": uid,
                    "content-type": "application/json",
                },
            )
        ).close()
    before = _patches(emulator)

    # u1 and u2 left; u3's row is rejected, which is not leaving
    rows = [*_without("u1", "u2", "u3"), dict(user_uid="u3", plan_name="gold", order_count="many")]
    result = run_job(_spec(tmp_path, emulator, rows), "users_sync", instance)
    assert result.success
    metadata = push_metadata(result)
    assert (metadata["users_cleared"], metadata["users_clear_failed"], metadata["rows_rejected"]) == (2, 0, 1)
    assert "u1" in metadata["clear_sample"] and "u3" not in metadata["clear_sample"]
    assert _patches(emulator) - before == 2 and metadata["requests_sent"] == 2
    # exactly the keys this sync sent: u2 never got a plan; crm_score was never this sync's
    assert _stored(emulator, "u1") == {"plan": None, "orders": None, "crm_score": 5}
    assert _stored(emulator, "u2") == {"orders": None, "crm_score": 5}
    assert _stored(emulator, "u3") == {"plan": "gold", "orders": 3}

    store = StateStore()
    key = store.key_of(load_spec(tmp_path / "syncs.yaml").get("users"))
    assert store.user_state(key, "u1") is None and store.user_state(key, "u3") is not None
    logged = store.log_for_user("u1", "users")
    assert (logged[0]["request"], logged[0]["keys"], logged[0]["error"]) == ("clear", "plan,orders", None)
    assert cli.main(["log", "u1", "--sync", "users"]) == 0  # the sync log, as a user reads it
    assert "clear keys=[plan,orders] status=200" in capsys.readouterr().out

    # nothing left to clear: the next run sends nothing
    again = run_job(_spec(tmp_path, emulator, rows), "users_sync", instance)
    assert again.success and push_metadata(again)["users_cleared"] == 0 and _patches(emulator) - before == 2

    # a user who comes back is new and gets everything
    back = run_job(_spec(tmp_path, emulator, [*rows, ROWS[0]]), "users_sync", instance)
    assert back.success and push_metadata(back)["users_new"] == 1
    assert _stored(emulator, "u1") == {"plan": "gold", "orders": 1, "crm_score": 5}


def test_keep_is_the_default_and_sends_nothing_for_a_user_who_left(tmp_path, emulator, instance):
    url = write_sqlite_table(tmp_path / "src.db", ROWS)
    spec = write_spec(tmp_path / "syncs.yaml", [users_sync(url, emulator.url, attributes=ATTRIBUTES)])
    assert load_spec(spec).get("users").on_delete == "keep"
    assert run_job(spec, "users_sync", instance).success
    before = _patches(emulator)
    write_sqlite_table(tmp_path / "src.db", _without("u1"))
    result = run_job(spec, "users_sync", instance)
    assert result.success and push_metadata(result)["users_cleared"] == 0
    assert _patches(emulator) == before and _stored(emulator, "u1") == {"plan": "gold", "orders": 1}


def test_max_clear_share_stops_the_run_before_anything_is_sent_and_allow_clear_lets_it_through(
    tmp_path, emulator, instance
):
    assert run_job(_spec(tmp_path, emulator, ROWS), "users_sync", instance).success
    before = _patches(emulator)
    rows = [*_without("u1", "u2", "u3"), dict(user_uid="u11", plan_name="new", order_count=11)]
    spec = _spec(tmp_path, emulator, rows)  # 3 of 10 left: above the default 0.2

    refused = run_job(spec, "users_sync", instance)
    assert not refused.success
    message = _failure_text(refused)
    assert "would clear 3 of the 10 users" in message and "max_clear_share=0.2" in message, message
    assert "allow_clear: true" in message and "Traceback" not in message
    assert _patches(emulator) == before  # not even the new user was sent

    # a dry run lists them, and sends nothing
    dry = dry_run_plan(run_job(spec, "users_dry_run", instance))
    assert dry["users_to_clear"] == 3 and all(uid in dry["clear_sample"] for uid in ("u1", "u2", "u3"))
    assert _patches(emulator) == before

    allowed = run_job(spec, "users_sync", instance, run_config=push_config(allow_clear=True))
    assert allowed.success and push_metadata(allowed)["users_cleared"] == 3
    assert _stored(emulator, "u3") == {"plan": None, "orders": None}

    # or the spec allows a larger share
    assert run_job(_spec(tmp_path, emulator, ROWS[5:], max_clear_share=0.8), "users_sync", instance).success


def test_a_partitioned_sync_clears_only_in_a_run_over_every_day(tmp_path, emulator, instance):
    today = dt.datetime.now(dt.UTC).date()
    first = today - dt.timedelta(days=3)
    rows = [{**row, "updated_at": f"{first} 10:00:00"} for row in ROWS[:5]]
    source = {"table": "users", "updated_at": "updated_at", "start_date": first.isoformat()}

    def spec(rows):
        url = write_sqlite_table(tmp_path / "src.db", rows)
        sync = users_sync(url, emulator.url, attributes=ATTRIBUTES, on_delete="clear", max_clear_share=0.5)
        return write_spec(tmp_path / "syncs.yaml", [{**sync, "source": {**source, "url": url}}])

    days = (first.isoformat(), today.isoformat())
    assert run_job(spec(rows), "users_sync", instance, partition_range=days).success
    before = _patches(emulator)
    left = spec(_without("u1", rows=rows))
    one_day = run_job(left, "users_sync", instance, partition_range=(days[0], days[0]))
    assert one_day.success and push_metadata(one_day)["users_cleared"] == 0 and _patches(emulator) == before
    two_days = (days[0], (first + dt.timedelta(days=1)).isoformat())
    some_days = run_job(left, "users_sync", instance, partition_range=two_days)
    assert some_days.success and _patches(emulator) == before
    every_day = run_job(left, "users_sync", instance, partition_range=days)
    assert every_day.success and push_metadata(every_day)["users_cleared"] == 1
    assert _stored(emulator, "u1") == {"plan": None, "orders": None}


def test_each_shard_clears_its_own_users_and_not_a_user_whose_row_another_shard_rejects(
    tmp_path, emulator, instance
):
    assert run_job(_spec(tmp_path, emulator, ROWS, shards=2), "users_sync", instance).success
    before = _patches(emulator)
    # too many leavers: every shard judges the sync's share, so every shard stops and none sends anything
    too_many = [*_without("u1", "u2", "u3"), dict(user_uid="u11", plan_name="new", order_count=11)]
    refused = run_job(_spec(tmp_path, emulator, too_many, shards=2), "users_sync", instance)
    assert not refused.success and "would clear 3 of the 10 users" in _failure_text(refused)
    assert _patches(emulator) == before
    # rejected rows all go to the first shard: u4's shard must still see that u4 did not leave
    rows = [*_without("u1", "u2", "u4"), dict(user_uid="u4", plan_name="x", order_count="bad")]
    result = run_job(_spec(tmp_path, emulator, rows, shards=2), "users_sync", instance)
    assert result.success
    metadata = push_metadata(result)
    assert (metadata["users_cleared"], metadata["rows_rejected"]) == (2, 1)
    assert _patches(emulator) - before == 2
    assert _stored(emulator, "u1") == {"plan": None, "orders": None}
    assert _stored(emulator, "u2") == {"orders": None}
    assert _stored(emulator, "u4") == {"orders": 4}


COMPONENT = """\
type: contentstack_assets.PersonalizeSyncsComponent
attributes:
  syncs:
    - name: pro_audience
      source: {url: "sqlite:///w.db", query: "SELECT user_uid FROM users WHERE plan = 'pro'"}
      destination: {project_uid: p1}
      match: {column: user_uid}
      attributes:
        is_pro: {value: true, type: boolean}
      on_delete: clear
      max_clear_share: 0.5
"""


def test_on_delete_through_the_component():
    with create_defs_folder_sandbox() as sandbox:
        path = sandbox.defs_folder_path / "personalize"
        path.mkdir(parents=True)
        (path / "defs.yaml").write_text(COMPONENT)
        with sandbox.load_component_and_build_defs(defs_path=path) as (component, defs):
            assert isinstance(component, PersonalizeSyncsComponent)
            sync = component.spec.get("pro_audience")
            assert (sync.on_delete, sync.max_clear_share) == ("clear", 0.5)
            assert defs.resolve_job_def("pro_audience_sync") is not None


def test_the_demo_audience_sync_clears_a_user_who_leaves_the_audience(tmp_path, instance, monkeypatch):
    """The demo spec's `pro_audience` (syncs.yaml at the root) on the demo database, against an emulator
    with the demo's attribute keys and management token (so the key check runs and knows `is_pro`)."""
    import sqlite3

    from contentstack_assets.demo import create_demo_database, demo_emulator_config, demo_env
    from contentstack_assets.personalize.emulator import run_emulator_in_thread
    from tests.helpers import PROJECT_ROOT

    database = create_demo_database(tmp_path / "users.db", users=60)
    with sqlite3.connect(database) as connection:
        pro = [
            uid
            for (uid,) in connection.execute(
                "SELECT user_uid FROM users WHERE plan_name IN ('pro', 'enterprise') ORDER BY user_uid"
            )
            if uid and re.fullmatch(r"usr_\d{6}", uid)  # the demo's bad rows are rejected, never sent
        ]
    assert len(pro) >= 6  # one leaver stays within max_clear_share (0.2)
    with run_emulator_in_thread(demo_emulator_config()) as emulator:
        for name, value in {**demo_env(emulator.url), "SOURCE_DATABASE_URL": f"sqlite:///{database}"}.items():
            monkeypatch.setenv(name, value)
        spec = PROJECT_ROOT / "syncs.yaml"
        first = run_job(spec, "pro_audience_sync", instance)
        assert first.success
        assert {
            uid for uid, attributes in emulator.users().items() if attributes.get("is_pro") is True
        } == set(pro)

        leaver = pro[0]
        with sqlite3.connect(database) as connection:
            connection.execute("UPDATE users SET plan_name = 'free' WHERE user_uid = ?", (leaver,))
        second = run_job(spec, "pro_audience_sync", instance)
        assert second.success and push_metadata(second, sync="pro_audience")["users_cleared"] == 1
        assert _stored(emulator, leaver) == {"is_pro": None}  # IS_TRUE no longer holds: out of the audience
        assert all(emulator.user(uid)["attributes"]["is_pro"] is True for uid in pro[1:])
