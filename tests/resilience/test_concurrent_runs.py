"""Two runs of one sync at the same time, on overlapping partitions or shards, leave the state consistent.

The run queue keeps one run per sync (tag `contentstack/sync`), but a run started around it (a CLI
`dagster asset materialize`, a backfill next to a schedule tick, a retry) may overlap another. Here two
processes start the same sync together, Dagster's storage and the sync state on one PostgreSQL database,
and afterwards every user's state matches what the API holds: nothing lost, nothing claimed that was not
delivered, and a third run has nothing left to send.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
import sqlalchemy as sa

from contentstack_assets.engine.state import ItemOutcome, StateStore, UserOutcome, runs, sync_log, users
from contentstack_assets.personalize.emulator import EmulatorConfig, start_emulator_process
from tests.helpers import PROJECT_ROOT, PROJECT_UID, users_sync, write_spec, write_sqlite_table
from tests.integration.test_production import production_home

DAYS = ["2024-03-01", "2024-03-02", "2024-03-03", "2024-03-04"]
PER_DAY = 300

# One run in a process of its own: build the job and open the instance, say it is ready, wait for the signal
# file, run, report. Everything slow happens before the signal, so the runs really start together.
RUNNER = """
import json, sys, time
from pathlib import Path
import dagster as dg
from contentstack_assets.definitions import build_definitions
from contentstack_assets.spec import load_spec
from tests.helpers import fast_retries, push_metadata
spec, ready, go, first, last, retries, job_name, sync, asset = sys.argv[1:10]
job = build_definitions(load_spec(spec), resources=fast_retries(max_retries=int(retries))).resolve_job_def(job_name)
tags = {} if first == "-" else {
    "dagster/asset_partition_range_start": first, "dagster/asset_partition_range_end": last,
}
# Dagster's implicit asset job, as a backfill or "Materialize" runs it: the sync's assets, no sync tag
selection = [dg.AssetKey([sync, name]) for name in ("source_users", "mapped_attributes", asset)]
if job_name == "__ASSET_JOB":
    tags["dagster/backfill"] = "testbackfill"
with dg.DagsterInstance.get() as instance:
    Path(ready).touch()
    while not Path(go).exists():
        time.sleep(0.005)
    result = job.execute_in_process(
        instance=instance, tags=tags, raise_on_error=False,
        asset_selection=selection if job_name == "__ASSET_JOB" else None,
    )
    print(json.dumps({"success": result.success, "run_id": result.run_id, **{
        key: value for key, value in push_metadata(result, sync, asset).items() if isinstance(value, (int, float))
    }}))
"""


def _rows() -> list[dict]:
    return [
        dict(user_uid=f"d{day}_{i:04d}", plan_name=f"plan{i % 5}", order_count=i, is_vip=i % 2,
             updated_at=f"{date} 12:00:00")
        for day, date in enumerate(DAYS)
        for i in range(PER_DAY)
    ]  # fmt: skip


def _expected(row: dict) -> dict:
    return {"plan": row["plan_name"], "orders": row["order_count"], "vip": bool(row["is_vip"])}


def _run_together(
    tmp_path: Path,
    env: dict[str, str],
    spec: Path,
    ranges: list[tuple[str, str]],
    retries: int = 5,
    job: tuple[str, str, str] = ("users_sync", "users", "personalize_users"),
    jobs: list[tuple[str, str, str]] | None = None,
) -> list[dict]:
    """Start one process per range (of `job`, or of the job of the same index in `jobs`), release them at
    once, and return what each reported."""
    go = tmp_path / "go"
    go.unlink(missing_ok=True)
    ready = [tmp_path / f"ready_{index}" for index in range(len(ranges))]
    for path in ready:
        path.unlink(missing_ok=True)
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", RUNNER, str(spec), str(ready_file), str(go), first, last, str(retries), *run_job],
            cwd=PROJECT_ROOT, env={**os.environ, **env, "PYTHONPATH": str(PROJECT_ROOT)},
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
        )
        for ready_file, (first, last), run_job in zip(ready, ranges, jobs or [job] * len(ranges), strict=True)
    ]  # fmt: skip
    try:
        deadline = time.monotonic() + 90
        while not all(path.exists() for path in ready):
            assert all(process.poll() is None for process in processes), (
                "a run process exited before the start"
            )
            assert time.monotonic() < deadline, "the run processes did not get ready within 90s"
            time.sleep(0.05)
        go.touch()
        outputs = [process.communicate(timeout=150) for process in processes]
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
    reports = []
    for process, (stdout, stderr) in zip(processes, outputs, strict=True):
        assert stdout.strip(), f"a run printed nothing (exit {process.returncode}):\n{stderr[-3000:]}"
        reports.append(json.loads(stdout.strip().splitlines()[-1]))
    return reports


def _assert_state_matches_the_api(state_url: str, emulator, expected: dict[str, dict]) -> None:
    store = StateStore(state_url)
    with store.engine.connect() as connection:
        rows = connection.execute(
            sa.select(users.c.user_uid, users.c.delivered, users.c.failed_runs, users.c.fingerprint).where(
                users.c.sync == "users"
            )
        ).all()
    state = {uid: json.loads(delivered) for uid, delivered, _, _ in rows}
    assert emulator.users() == expected
    assert state == expected  # what the state says each user holds is exactly what the API holds
    assert all(failed == 0 and fingerprint is not None for _, _, failed, fingerprint in rows)


def _overlapped(state_url: str, run_ids: list[str]) -> bool:
    """Whether the runs' pushes (from the first shard's start to the last shard's end) were under way at once."""
    windows = []
    with StateStore(state_url).engine.connect() as connection:
        for run_id in run_ids:
            rows = connection.execute(
                sa.select(runs.c.started_at, runs.c.finished_at).where(runs.c.run_id.like(f"{run_id}%"))
            ).all()
            windows.append((min(start for start, _ in rows), max(end for _, end in rows)))
    return max(start for start, _ in windows) < min(end for _, end in windows)


def _set_pool(slots: int) -> None:
    import dagster as dg

    with dg.DagsterInstance.get() as instance:
        instance.event_log_storage.set_concurrency_slots(f"personalize_{PROJECT_UID}", slots)


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.parametrize("pool_slots", [1, 4])
def test_overlapping_partition_ranges_at_once(tmp_path, monkeypatch, postgres_url, pool_slots):
    """With the project's pool at its production default (1 slot) the two pushes take turns, even from two
    processes; with more slots (as for a sharded sync) they overlap, and the state stays consistent either way."""
    env = production_home(tmp_path / "home", monkeypatch, postgres_url)
    _set_pool(pool_slots)
    rows = _rows()
    url = write_sqlite_table(tmp_path / "src.db", rows)
    with start_emulator_process(EmulatorConfig(project_uid=PROJECT_UID, latency_ms=25)) as emulator:
        sync = users_sync(url, emulator.url, concurrency=4)
        sync["source"].update(updated_at="updated_at", start_date=DAYS[0])
        spec = write_spec(tmp_path / "syncs.yaml", [sync])

        # days 1-3 and days 2-4 at once: the users of days 2 and 3 are in both runs
        reports = _run_together(tmp_path, env, spec, [(DAYS[0], DAYS[2]), (DAYS[1], DAYS[3])])
        assert all(report["success"] for report in reports), reports
        counts = emulator.stats()["patch_counts"]
        twice = {uid for uid, count in counts.items() if count > 1}
        if pool_slots == 1:
            # the second push planned after the first recorded its outcomes: nobody was sent twice
            assert not _overlapped(postgres_url, [report["run_id"] for report in reports])
            assert not twice and emulator.stats()["max_in_flight"] <= 4
        else:
            assert _overlapped(postgres_url, [report["run_id"] for report in reports])
            assert twice, "the runs should have raced on shared users"
            assert all(uid.startswith(("d1_", "d2_")) for uid in twice)  # only the days both runs read

        _assert_state_matches_the_api(
            postgres_url, emulator, {row["user_uid"]: _expected(row) for row in rows}
        )
        [again] = _run_together(tmp_path, env, spec, [(DAYS[0], DAYS[3])])
        assert again["success"] and again["requests_sent"] == 0 and again["users_unchanged"] == len(rows)


@pytest.mark.slow
@pytest.mark.postgres
def test_a_backfill_beside_a_job_run_of_the_same_sync(tmp_path, monkeypatch, postgres_url):
    """A backfill (Dagster's implicit asset job over the sync's assets, no `contentstack/sync` tag, so the
    run queue does not hold it back) and a `users_sync` run over overlapping days at once: the project's
    pool makes the pushes take turns, nobody is sent twice, and the state is exact (docs/production.md)."""
    env = production_home(tmp_path / "home", monkeypatch, postgres_url)
    _set_pool(1)  # production's default_limit
    rows = _rows()
    url = write_sqlite_table(tmp_path / "src.db", rows)
    with start_emulator_process(EmulatorConfig(project_uid=PROJECT_UID, latency_ms=25)) as emulator:
        sync = users_sync(url, emulator.url, concurrency=4)
        sync["source"].update(updated_at="updated_at", start_date=DAYS[0])
        spec = write_spec(tmp_path / "syncs.yaml", [sync])
        jobs = [("__ASSET_JOB", "users", "personalize_users"), ("users_sync", "users", "personalize_users")]
        reports = _run_together(tmp_path, env, spec, [(DAYS[0], DAYS[3]), (DAYS[1], DAYS[2])], jobs=jobs)
        assert all(report["success"] for report in reports), reports
        assert not _overlapped(postgres_url, [report["run_id"] for report in reports])
        counts = emulator.stats()["patch_counts"]
        assert not {uid for uid, count in counts.items() if count > 1}
        assert emulator.stats()["max_in_flight"] <= 4
        _assert_state_matches_the_api(
            postgres_url, emulator, {row["user_uid"]: _expected(row) for row in rows}
        )


@pytest.mark.slow
@pytest.mark.postgres
def test_two_sharded_runs_at_once_with_failures(tmp_path, monkeypatch, postgres_url):
    """Every shard pushed by two runs at once while the API fails a share of requests: failures and
    deliveries of one user from two runs land in one consistent row."""
    env = production_home(tmp_path / "home", monkeypatch, postgres_url)
    _set_pool(4)  # both runs' shards push at once
    rows = [{key: value for key, value in row.items() if key != "updated_at"} for row in _rows()]
    url = write_sqlite_table(tmp_path / "src.db", rows)
    with start_emulator_process(
        EmulatorConfig(project_uid=PROJECT_UID, latency_ms=25, fail_rate=0.15, seed=3)
    ) as emulator:
        spec = write_spec(tmp_path / "syncs.yaml", [users_sync(url, emulator.url, concurrency=4, shards=2)])
        reports = _run_together(tmp_path, env, spec, [("-", "-"), ("-", "-")], retries=0)
        assert _overlapped(postgres_url, [report["run_id"] for report in reports])
        assert all(report["users_failed"] > 0 for report in reports), reports  # the failures really happened

        store = StateStore(postgres_url)
        state = {uid: store.user_state("users", uid) for uid in (row["user_uid"] for row in rows)}
        api = emulator.users()
        failing = {uid for uid, row in state.items() if row is not None and row["failed_runs"] > 0}
        for uid, row in state.items():
            if uid in failing:
                continue  # due again next run, whatever it holds
            # not due again: the state must say exactly what the API holds (nothing lost, nothing invented)
            assert row is not None and row["delivered"] == api.get(uid), (uid, row, api.get(uid))
        assert set(api) <= set(uid for uid, row in state.items() if row is not None)

        emulator.configure(fail_rate=0.0)
        [again] = _run_together(tmp_path, env, spec, [("-", "-")], retries=0)
        # due again: the users no run delivered get their request; those the other run delivered meanwhile
        # (the state kept its values) have nothing left to send
        missing = failing - set(api)
        assert (
            missing and again["success"] and again["requests_sent"] == len(missing) == again["users_retried"]
        )
        _assert_state_matches_the_api(
            postgres_url, emulator, {row["user_uid"]: _expected(row) for row in rows}
        )


EVENT_COLUMNS = ["purchase_id", "user_uid", "event_name", "purchased_at"]
EVENT_USERS = 120


def _events() -> list[dict]:
    # one event per user and day, its key its own id: the API's events of a user name the ids it holds
    return [
        dict(purchase_id=f"p{day}_{i:03d}", user_uid=f"e{i:03d}", event_name=f"p{day}_{i:03d}",
             purchased_at=f"{date} 12:00:00")
        for day, date in enumerate(DAYS)
        for i in range(EVENT_USERS)
    ]  # fmt: skip


def _events_in_api(emulator) -> Counter:
    users = (emulator.user(f"e{i:03d}") for i in range(EVENT_USERS))
    return Counter(event["eventKey"] for user in users if user is not None for event in user["events"])


@pytest.mark.slow
@pytest.mark.postgres
def test_two_events_runs_over_overlapping_days_at_once_with_failures(tmp_path, monkeypatch, postgres_url):
    """An events sync run twice at once over overlapping days while the API fails a share of requests: an
    event one run delivered stays delivered whatever the other run reports about it, the state claims
    exactly the events the API holds, and a later run sends just the rest."""
    env = production_home(tmp_path / "home", monkeypatch, postgres_url)
    _set_pool(4)  # both pushes at once
    rows = _events()
    url = write_sqlite_table(tmp_path / "src.db", rows, table="purchases", columns=EVENT_COLUMNS)
    events_sync = {
        "name": "purchases",
        "kind": "events",
        "source": {"url": url, "table": "purchases", "occurred_at": "purchased_at", "start_date": DAYS[0]},
        "destination": {"project_uid": PROJECT_UID},
        "match": {"column": "user_uid"},
        "event": {"id_column": "purchase_id", "key_column": "event_name"},
        "concurrency": 4,
    }
    job = ("purchases_sync", "purchases", "personalize_events")
    with start_emulator_process(
        EmulatorConfig(project_uid=PROJECT_UID, latency_ms=25, fail_rate=0.15, seed=5)
    ) as emulator:
        events_sync["destination"]["edge_url"] = emulator.url
        spec = write_spec(tmp_path / "syncs.yaml", [events_sync])

        # days 1-3 and days 2-4 at once: every user's events of days 2 and 3 are in both runs
        reports = _run_together(tmp_path, env, spec, [(DAYS[0], DAYS[2]), (DAYS[1], DAYS[3])], 0, job)
        assert _overlapped(postgres_url, [report["run_id"] for report in reports])
        assert all(report["events_failed"] > 0 for report in reports), reports  # the failures happened
        assert sum(report["events_delivered"] for report in reports) > 0

        store = StateStore(postgres_url)
        ids = [row["purchase_id"] for row in rows]
        in_api = _events_in_api(emulator)
        assert set(in_api) <= set(ids) and max(in_api.values()) <= 2  # at most once by each run
        delivered = store.delivered_items("purchases", ids)
        assert delivered == set(in_api)  # nothing lost, nothing claimed that the API does not hold
        undelivered = store.undelivered_items("purchases")
        assert {item["item_id"] for item in undelivered} == set(ids) - delivered
        assert all(item["failed_runs"] >= 1 for item in undelivered)

        emulator.configure(fail_rate=0.0)
        [again] = _run_together(tmp_path, env, spec, [(DAYS[0], DAYS[3])], 0, job)
        assert again["success"] and again["events_delivered"] == len(ids) - len(delivered)
        assert again["events_already_delivered"] == len(delivered)
        assert set(_events_in_api(emulator)) == set(ids)
        assert store.count_items("purchases") == {"delivered": len(ids), "undelivered": 0}
        [last] = _run_together(tmp_path, env, spec, [(DAYS[0], DAYS[3])], 0, job)
        assert last["success"] and last["requests_sent"] == 0


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_store_writes_of_overlapping_runs_at_once(tmp_path, request, backend):
    """The store's writes from several runs at once over the same users and items, each run's batches in
    an order of its own: new rows inserted by several runs at once, write-ahead next to outcomes, failures
    next to deliveries. No deadlock or unique-key error reaches a run, and no write is lost: every failure
    is counted exactly once, and an item delivered once stays delivered."""
    url = (
        f"sqlite:///{tmp_path / 'state.db'}"
        if backend == "sqlite"
        else request.getfixturevalue("postgres_url")
    )
    StateStore(url)
    n_runs, rounds = 4, 5
    failing = [f"f{i:03d}" for i in range(150)]  # every run fails these users, every round
    delivering = [f"d{i:03d}" for i in range(150)]  # every run delivers these, the same values
    items_failing = [f"x{i:03d}" for i in range(150)]  # every run fails these events
    items_delivered = [
        f"y{i:03d}" for i in range(150)
    ]  # run 0 delivers these in round 1; the others fail them
    values = {uid: {"a": uid, "b": len(uid)} for uid in delivering}
    barrier = threading.Barrier(n_runs)
    errors: list[BaseException] = []

    def user(uid: str) -> UserOutcome:
        ok = uid in values
        return UserOutcome(uid, ("a", "b"), ok, 200 if ok else 500, 1, 1.0, None if ok else "HTTP 500",
                           values.get(uid), hash(uid) if ok else None)  # fmt: skip

    def event(item_id: str, ok: bool) -> tuple[list[ItemOutcome], UserOutcome]:
        uid = "u" + item_id
        logged = UserOutcome(uid, (item_id,), ok, 200 if ok else 500, 1, 1.0, None, None, None, "events")
        return [ItemOutcome(item_id, uid, ok, 200 if ok else 500, None if ok else "HTTP 500")], logged

    def run(index: int) -> None:
        store = StateStore(url)  # an engine of its own, as in a process of its own
        shuffle = random.Random(index).sample
        try:
            barrier.wait(timeout=30)
            for round_ in range(rounds):
                order = shuffle(failing + delivering, len(failing) + len(delivering))
                # write-ahead in two key sets (two statements), then the outcomes of the batch
                store.forget_in_flight(
                    "users", [(uid, ("a",) if k % 2 else ("a", "b")) for k, uid in enumerate(order)]
                )
                store.record_user_outcomes("users", f"run{index}", [user(uid) for uid in order])
                delivers = index == 0 and round_ == 1
                outcomes = [event(item_id, False) for item_id in items_failing]
                outcomes += [event(item_id, delivers) for item_id in items_delivered]
                store.record_item_requests("events", f"run{index}", shuffle(outcomes, len(outcomes)))
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)
            barrier.abort()

    threads = [threading.Thread(target=run, args=(index,)) for index in range(n_runs)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert not errors, errors
    assert not any(thread.is_alive() for thread in threads)

    store = StateStore(url)
    with store.engine.connect() as connection:
        rows = {
            row.user_uid: row for row in connection.execute(sa.select(users).where(users.c.sync == "users"))
        }
        log_rows = connection.execute(sa.select(sa.func.count()).select_from(sync_log)).scalar_one()
    assert set(rows) == set(failing) | set(delivering)
    for uid in failing:
        assert rows[uid].failed_runs == n_runs * rounds and rows[uid].fingerprint is None, rows[uid]
    for uid in delivering:  # every run's last write to a user is an outcome, after its write-ahead
        row = rows[uid]
        assert (json.loads(row.delivered), row.fingerprint, row.failed_runs) == (values[uid], hash(uid), 0)
    items_state = {item["item_id"]: item for item in store.undelivered_items("events")}
    assert set(items_state) == set(items_failing)
    assert all(item["failed_runs"] == n_runs * rounds for item in items_state.values())
    assert store.delivered_items("events", items_delivered) == set(items_delivered)
    per_round = len(failing) + len(delivering) + len(items_failing) + len(items_delivered)
    assert log_rows == n_runs * rounds * per_round
