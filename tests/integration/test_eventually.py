"""Every change is delivered eventually, whatever the order in which rows arrive and runs go (issue 13).

Each test drives the sync's own sensor and schedule (`evaluate_tick`), executes the runs they ask for as
the daemon would (their tags, their partitions) against the emulator, and checks what the API holds. Each
failed on the code before its fix: the sensor asked only for days at or after its watermark and moved its
cursor when it asked, and a scheduled run covered only the previous tick's day through today.
"""

from __future__ import annotations

import datetime as dt
import random
import sqlite3
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa

from contentstack_assets.definitions import build_definitions
from contentstack_assets.spec import load_spec
from contentstack_assets.syncs.partitions import RANGE_END_TAG, RANGE_START_TAG
from contentstack_assets.syncs.schedules import LOOKBACK, scheduled_days
from tests.helpers import push_metadata, users_sync, write_spec

UTC = dt.UTC
TODAY = dt.datetime.now(UTC).date()


def _day(days_ago: int) -> str:
    return (TODAY - dt.timedelta(days=days_ago)).isoformat()


def _at(days_ago: int, time: str = "10:00:00") -> str:
    return f"{_day(days_ago)} {time}"


class Source:
    """A SQLite users table whose rows carry an `updated_at` a number of days before today."""

    def __init__(self, path: Path):
        self.path = path
        with sqlite3.connect(path) as connection:
            connection.execute("CREATE TABLE users (user_uid, plan_name, updated_at)")

    @property
    def url(self) -> str:
        return f"sqlite:///{self.path}"

    def upsert(self, uid: str, plan: str, updated_at: str) -> None:
        with sqlite3.connect(self.path) as connection:
            connection.execute("DELETE FROM users WHERE user_uid = ?", (uid,))
            connection.execute("INSERT INTO users VALUES (?, ?, ?)", (uid, plan, updated_at))


def _sync(url: str, edge_url: str, **overrides) -> dict:
    source = {"url": url, "table": "users", "updated_at": "updated_at", "start_date": _day(20)}
    sync = users_sync(url, edge_url, source=source, **overrides)
    sync["attributes"] = {"plan": {"column": "plan_name", "type": "string"}}
    return sync


class Daemon:
    """What the daemon does with a sensor or schedule: evaluate a tick, launch the runs it asks for."""

    def __init__(self, spec: Path, instance: dg.DagsterInstance):
        self.defs = build_definitions(load_spec(spec))
        self.instance = instance
        self.cursor: str | None = None

    def sense(self) -> list[dg.RunRequest]:
        context = dg.build_sensor_context(instance=self.instance, cursor=self.cursor, definitions=self.defs)
        data = self.defs.resolve_sensor_def("users_source_changed").evaluate_tick(context)
        self.cursor = data.cursor
        return list(data.run_requests or [])

    def tick(self, when: dt.datetime, name: str = "users_schedule") -> list[dg.RunRequest]:
        context = dg.build_schedule_context(
            instance=self.instance,
            scheduled_execution_time=when,
            repository_def=self.defs.get_repository_def(),
        )
        data = self.defs.resolve_schedule_def(name).evaluate_tick(context)
        return list(data.run_requests or [])

    def launch(self, request: dg.RunRequest) -> dg.ExecuteInProcessResult:
        job = self.defs.resolve_job_def("users_sync")
        return job.execute_in_process(
            instance=self.instance,
            tags=request.tags,
            partition_key=request.partition_key,
            raise_on_error=False,
        )


def _days(request: dg.RunRequest) -> tuple[str, str]:
    if request.partition_key:
        return request.partition_key, request.partition_key
    return request.tags[RANGE_START_TAG], request.tags[RANGE_END_TAG]


@pytest.fixture
def world(tmp_path, emulator, instance):
    source = Source(tmp_path / "src.db")
    source.upsert("u1", "free", _at(5))
    spec = write_spec(tmp_path / "syncs.yaml", [_sync(source.url, emulator.url, schedule="0 * * * *")])
    daemon = Daemon(spec, instance)
    # the first tick asks for everything; its run delivers it
    [request] = daemon.sense()
    assert daemon.launch(request).success and emulator.users() == {"u1": {"plan": "free"}}
    return source, daemon


# -- 1. late rows, moved timestamps -----------------------------------------------------------------
def test_a_row_arriving_late_with_an_old_updated_at_is_requested_and_delivered(world, emulator):
    source, daemon = world
    source.upsert("u2", "pro", _at(1))
    [request] = daemon.sense()
    assert daemon.launch(request).success
    # an ELT load keeping the upstream timestamp: three days back, behind everything delivered so far
    source.upsert("late", "gold", _at(3))
    requests = daemon.sense()
    assert [_days(request) for request in requests] == [(_day(3), _day(3))]
    assert daemon.launch(requests[0]).success
    assert emulator.users()["late"] == {"plan": "gold"}
    assert daemon.sense() == []  # delivered: nothing more to ask


def test_a_row_whose_updated_at_moves_backwards_is_delivered(world, emulator):
    source, daemon = world
    source.upsert("u1", "pro", _at(8))  # the value changed, its timestamp went back three days
    [request] = daemon.sense()
    assert _days(request)[0] <= _day(8) and daemon.launch(request).success
    assert emulator.users()["u1"] == {"plan": "pro"}


# -- 2. a future-dated row -------------------------------------------------------------------------
def test_a_future_dated_row_does_not_blind_the_sensor(world, emulator):
    source, daemon = world
    source.upsert("future", "free", "2099-01-01 00:00:00")
    assert daemon.sense() == []  # its day has no partition yet: nothing to run
    source.upsert("u3", "pro", _at(2))
    [request] = daemon.sense()
    assert _days(request) == (_day(2), _day(2)) and daemon.launch(request).success
    assert emulator.users()["u3"] == {"plan": "pro"}


# -- 3. the cursor moves when the run got through ----------------------------------------------------
def test_the_days_of_a_failed_run_are_asked_again(world, emulator, tmp_path):
    source, daemon = world
    source.upsert("u4", "pro", _at(1))
    [request] = daemon.sense()
    # the source is briefly unavailable while the run reads it (a truncate-and-reload, a restart)
    moved = source.path.rename(tmp_path / "away.db")
    assert not daemon.launch(request).success
    moved.rename(source.path)
    [again] = daemon.sense()
    assert _days(again) == _days(request) and daemon.launch(again).success
    assert emulator.users()["u4"] == {"plan": "pro"}
    assert daemon.sense() == []


# -- 4. the schedule catches up ----------------------------------------------------------------------
def test_a_scheduled_run_covers_everything_since_the_last_delivered_read(world, emulator):
    source, daemon = world
    now = dt.datetime.now(UTC)
    [request] = daemon.tick(now)  # the last run that read up to its own day: the schedule's
    assert daemon.launch(request).success
    # the daemon was down for two days: the next tick covers the days since the delivered read, less a day
    [request] = daemon.tick(now + dt.timedelta(days=2))
    first, last = _days(request)
    assert first == (now - LOOKBACK).date().isoformat()
    assert last == (now + dt.timedelta(days=2)).date().isoformat()


def test_a_scheduled_run_after_failed_runs_covers_their_days(tmp_path, emulator, instance):
    source = Source(tmp_path / "src.db")
    source.upsert("u1", "free", _at(5))
    spec = write_spec(tmp_path / "syncs.yaml", [_sync(source.url, emulator.url, schedule="0 * * * *")])
    daemon = Daemon(spec, instance)
    now = dt.datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    # nothing delivered yet: the first tick covers every day, however many ticks were missed before it
    [request] = daemon.tick(now)
    assert _days(request) == (_day(20), TODAY.isoformat())
    source.upsert("u2", "pro", _at(4))
    # its run fails (the source is away); the next tick still covers every day
    moved = source.path.rename(tmp_path / "away.db")
    assert not daemon.launch(request).success
    moved.rename(source.path)
    [request] = daemon.tick(now + dt.timedelta(hours=1))
    assert _days(request)[0] == _day(20)
    assert daemon.launch(request).success
    assert emulator.users() == {"u1": {"plan": "free"}, "u2": {"plan": "pro"}}


@pytest.mark.parametrize(
    ("since", "tick", "days"),
    [
        (None, "2024-03-05 13:00", ("2024-01-01", "2024-03-05")),
        ("2024-03-05 12:00", "2024-03-05 13:00", ("2024-03-04", "2024-03-05")),
        ("2024-03-01 00:30", "2024-03-05 13:00", ("2024-02-29", "2024-03-05")),  # two days down, then more
        ("2024-01-01 05:00", "2024-01-01 06:00", ("2024-01-01", "2024-01-01")),  # never before the start
    ],
)
def test_scheduled_days(since, tick, days):
    partitions = dg.DailyPartitionsDefinition(start_date="2024-01-01", timezone="UTC", end_offset=1)
    parse = lambda text: dt.datetime.fromisoformat(text).replace(tzinfo=UTC)  # noqa: E731
    assert scheduled_days(partitions, parse(tick), since and parse(since)) == days


# -- reconciliation -----------------------------------------------------------------------------------
def test_a_partitioned_sync_reconciles_every_day_by_default(world, emulator):
    source, daemon = world
    schedule = daemon.defs.resolve_schedule_def("users_reconcile")
    assert schedule.default_status == dg.DefaultScheduleStatus.RUNNING
    # a row changed without its updated_at moving (a reload that kept the timestamps): no digest moves...
    with sqlite3.connect(source.path) as connection:
        connection.execute("UPDATE users SET plan_name = 'max' WHERE user_uid = 'u1'")
    # ... the reconciliation reads every day and the plan finds it
    [request] = daemon.tick(dt.datetime.now(UTC), name="users_reconcile")
    assert _days(request) == (_day(20), TODAY.isoformat())
    result = daemon.launch(request)
    assert push_metadata(result)["users_changed"] == 1 and emulator.users()["u1"] == {"plan": "max"}


def test_reconcile_can_be_turned_off_and_needs_partitions(tmp_path, emulator):
    source = Source(tmp_path / "src.db")
    spec = write_spec(tmp_path / "syncs.yaml", [_sync(source.url, emulator.url, reconcile=False)])
    defs = build_definitions(load_spec(spec))
    assert not [s for s in defs.schedules or [] if s.name == "users_reconcile"]
    unpartitioned = users_sync(source.url, emulator.url, reconcile="0 3 * * *")
    with pytest.raises(Exception, match="`reconcile` is for partitioned syncs"):
        load_spec(write_spec(tmp_path / "syncs.yaml", [unpartitioned]))


# -- 5. time zones of the window -------------------------------------------------------------------
@pytest.mark.postgres
def test_a_query_over_timestamptz_in_a_non_utc_session_reads_its_day(
    tmp_path, emulator, instance, postgres_url
):
    engine = sa.create_engine(postgres_url)
    with engine.begin() as connection:
        connection.execute(
            sa.text("CREATE TABLE tz_users (user_uid text, plan_name text, updated_at timestamptz)")
        )
        connection.execute(
            sa.text("INSERT INTO tz_users VALUES ('a', 'free', :one), ('b', 'pro', :two)"),
            {"one": f"{_day(0)} 01:00:00+00", "two": f"{_day(0)} 02:00:00+00"},
        )
    url = postgres_url + ("&" if "?" in postgres_url else "?") + "options=-c%20timezone%3DAmerica/New_York"
    sync = _sync(url, emulator.url)
    sync["source"] = {
        "url": url,
        "query": "SELECT * FROM tz_users",
        "updated_at": "updated_at",
        "start_date": _day(20),
    }
    daemon = Daemon(write_spec(tmp_path / "syncs.yaml", [sync]), instance)
    result = daemon.launch(dg.RunRequest(partition_key=_day(0)))
    assert result.success and push_metadata(result)["rows_read"] == 2


# -- the property: weeks of random events, every change delivered ------------------------------------------
START = dt.datetime(2024, 3, 1, tzinfo=UTC)


@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.parametrize("seed", [7])
def test_every_change_reaches_the_api_whatever_the_order_of_events(seed, tmp_path, emulator, instance):
    """Two simulated weeks at Dagster's frozen clock, a step every six hours: rows added, changed, loaded
    late with old timestamps and moved back in time; sensor ticks and hourly-cron schedule ticks, some skipped
    (the daemon down for a day or two), some runs failing (the source away while they read), old frames pushed
    again. After it the sensor and schedule alone (no reconciliation) bring the API to the source's values."""
    from dagster._core.test_utils import freeze_time  # Dagster's own clock, which partitions and runs read

    rng = random.Random(seed)
    source = Source(tmp_path / "src.db")
    sync = _sync(source.url, emulator.url, schedule="0 * * * *", reconcile=False)
    sync["source"]["start_date"] = "2024-02-01"
    daemon = Daemon(write_spec(tmp_path / "syncs.yaml", [sync]), instance)
    truth: dict[str, str] = {}
    figures = {
        "changes": 0,
        "late": 0,
        "moved_back": 0,
        "failed_runs": 0,
        "skipped_ticks": 0,
        "stale_pushes": 0,
    }
    down_until = START
    old_days: list[str] = []

    def launch(requests: list[dg.RunRequest]) -> None:
        for request in requests:
            if rng.random() < 0.15:  # the source is away while this run reads it
                away = source.path.rename(tmp_path / "away.db")
                assert not daemon.launch(request).success
                away.rename(source.path)
                figures["failed_runs"] += 1
            else:
                result = daemon.launch(request)
                assert result.success or "failed after retries" in str(result.all_events), request

    now = START
    for _step in range(4 * 14):
        now += dt.timedelta(hours=6)
        with freeze_time(now):
            for _ in range(rng.randint(0, 3)):
                uid = f"u{rng.randint(0, 14):02d}"
                plan = f"plan{rng.randint(0, 99)}"
                kind = rng.random()
                if kind < 0.6:
                    updated = now - dt.timedelta(minutes=rng.randint(0, 300))
                elif kind < 0.85:
                    updated = now - dt.timedelta(days=rng.randint(1, 6), hours=rng.randint(0, 23))
                    figures["late"] += 1
                else:
                    updated = now - dt.timedelta(days=rng.randint(7, 25))
                    figures["moved_back"] += 1
                source.upsert(uid, plan, updated.strftime("%Y-%m-%d %H:%M:%S"))
                truth[uid] = plan
                figures["changes"] += 1
            if now < down_until:
                figures["skipped_ticks"] += 1
                continue
            if rng.random() < 0.05:  # the daemon goes down for a day or two
                down_until = now + dt.timedelta(days=rng.randint(1, 2))
                continue
            roll = rng.random()
            if roll < 0.5:
                launch(daemon.sense())
            elif roll < 0.85:
                launch(daemon.tick(now))
            elif old_days:  # an old frame pushed again (the push alone, as an old backfill's push would)
                day = rng.choice(old_days)
                push = dg.AssetKey(["users", "personalize_users"])
                job = daemon.defs.resolve_implicit_global_asset_job_def()
                job.execute_in_process(
                    instance=instance, partition_key=day, asset_selection=[push], raise_on_error=False
                )
                figures["stale_pushes"] += 1
            old_days.append(now.strftime("%Y-%m-%d"))

    # the daemon back for good: the sensor until it has nothing to ask, then one scheduled tick
    with freeze_time(now + dt.timedelta(hours=1)):
        for _ in range(6):
            requests = daemon.sense()
            if not requests:
                break
            for request in requests:
                assert daemon.launch(request).success
        assert daemon.sense() == []
        for request in daemon.tick(now + dt.timedelta(hours=1)):
            assert daemon.launch(request).success
    held = {uid: values.get("plan") for uid, values in emulator.users().items()}
    print(f"\nseed {seed}: {figures}")
    assert held == truth, figures


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_every_event_reaches_the_api_exactly_once_whatever_the_order_of_events(tmp_path, emulator, instance):
    """Ten simulated days of an events sync: events loaded late with old times, sensor and schedule ticks,
    some skipped, some runs failing, overlapping reads of the same days. Each event reaches the API once."""
    from dagster._core.test_utils import freeze_time

    from tests.integration.test_events import EVENT_COLUMNS, events_sync

    rng = random.Random(11)
    path = tmp_path / "src.db"
    with sqlite3.connect(path) as connection:
        connection.execute(f"CREATE TABLE purchases ({', '.join(EVENT_COLUMNS)})")
    sync = events_sync(
        f"sqlite:///{path}", emulator.url, partitioned=True, schedule="0 * * * *", reconcile=False
    )
    sync["source"]["start_date"] = "2024-02-01"
    defs = build_definitions(load_spec(write_spec(tmp_path / "syncs.yaml", [sync])))
    job = defs.resolve_job_def("purchases_sync")
    cursor: str | None = None
    sent: list[str] = []

    def launch(requests: list[dg.RunRequest]) -> None:
        for request in requests:
            if rng.random() < 0.15:  # the source away while the run reads
                away = path.rename(tmp_path / "away.db")
                job.execute_in_process(
                    instance=instance,
                    tags=request.tags,
                    partition_key=request.partition_key,
                    raise_on_error=False,
                )
                away.rename(path)
            else:
                job.execute_in_process(
                    instance=instance,
                    tags=request.tags,
                    partition_key=request.partition_key,
                    raise_on_error=False,
                )

    now = START
    for step in range(4 * 10):
        now += dt.timedelta(hours=6)
        with freeze_time(now):
            with sqlite3.connect(path) as connection:
                for _ in range(rng.randint(0, 4)):
                    number = len(sent)
                    back = (
                        dt.timedelta(hours=rng.randint(0, 5))
                        if rng.random() < 0.7
                        else dt.timedelta(days=rng.randint(1, 6))
                    )
                    occurred = (now - back).strftime("%Y-%m-%d %H:%M:%S")
                    connection.execute(
                        "INSERT INTO purchases VALUES (?, ?, ?, ?)",
                        (number, f"u{rng.randint(0, 5)}", f"e{number}", occurred),
                    )
                    sent.append(f"e{number}")
            roll = rng.random()
            if roll < 0.1:
                continue  # a skipped tick
            if roll < 0.6:
                context = dg.build_sensor_context(instance=instance, cursor=cursor, definitions=defs)
                data = defs.resolve_sensor_def("purchases_source_changed").evaluate_tick(context)
                cursor = data.cursor
                launch(list(data.run_requests or []))
            else:
                context = dg.build_schedule_context(
                    instance=instance, scheduled_execution_time=now, repository_def=defs.get_repository_def()
                )
                launch(
                    list(
                        defs.resolve_schedule_def("purchases_schedule").evaluate_tick(context).run_requests
                        or []
                    )
                )
            if step % 7 == 3:  # a backfill over the last three days, overlapping what the others read
                first = (now - dt.timedelta(days=3)).strftime("%Y-%m-%d")
                job.execute_in_process(
                    instance=instance,
                    tags={RANGE_START_TAG: first, RANGE_END_TAG: now.strftime("%Y-%m-%d")},
                    raise_on_error=False,
                )

    with freeze_time(now + dt.timedelta(hours=1)):
        for _ in range(6):
            context = dg.build_sensor_context(instance=instance, cursor=cursor, definitions=defs)
            data = defs.resolve_sensor_def("purchases_source_changed").evaluate_tick(context)
            cursor = data.cursor
            if not data.run_requests:
                break
            for request in data.run_requests:
                assert job.execute_in_process(
                    instance=instance, tags=request.tags, partition_key=request.partition_key
                ).success
    delivered = [
        event["eventKey"]
        for uid in emulator.users()
        for event in (emulator.user(uid) or {}).get("events", [])
    ]
    missing = sorted(set(sent) - set(delivered))
    twice = sorted(key for key in set(delivered) if delivered.count(key) > 1)
    assert not missing and not twice, (missing, twice)
