"""The sync engine over real HTTP: only what changed is sent, failures are retried, nothing is lost.

Every scenario runs with the state store on SQLite and on the local PostgreSQL.
"""

from __future__ import annotations

import json
import subprocess
import sys

import dagster as dg
import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from contentstack_assets.engine.state import MIGRATIONS, SCHEMA_VERSION, StateStore, schema_version, users
from contentstack_assets.personalize.emulator import EmulatorConfig
from contentstack_assets.syncs.runs import DRY_RUN_TAG
from tests.helpers import (
    PROJECT_ROOT,
    PROJECT_UID,
    dry_run_plan,
    fast_retries,
    push_config,
    push_metadata,
    run_job,
    users_sync,
    write_spec,
    write_sqlite_table,
)

N_USERS = 200


def _rows(n: int = N_USERS, **changes) -> list[dict]:
    rows = [
        dict(user_uid=f"u{i:04d}", plan_name="free", lifetime_value=float(i), order_count=i, is_vip=i % 2,
             created_at="2024-01-02 03:04:05", birth_date="1990-01-01")
        for i in range(n)
    ]  # fmt: skip
    for index, values in changes.items():
        rows[int(index.removeprefix("u"))].update(values)
    return rows


def _expected(row: dict) -> dict:
    return {
        "plan": row["plan_name"],
        "ltv": float(row["lifetime_value"]),
        "orders": int(row["order_count"]),
        "vip": bool(int(row["is_vip"])),
        "signup_at": "2024-01-02T03:04:05Z",
        "birthday": "1990-01-01",
    }


@pytest.fixture(params=["sqlite", "postgres"])
def state_url(request, tmp_path, monkeypatch) -> str:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'state.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
    monkeypatch.setenv("CONTENTSTACK_STATE_URL", url)
    return url


@pytest.fixture
def sync_env(tmp_path, emulator):
    """(write rows, spec path): the source table is rewritten by each call."""
    db = tmp_path / "src.db"

    def write(rows: list[dict], **sync_overrides) -> object:
        url = write_sqlite_table(db, rows)
        return write_spec(tmp_path / "syncs.yaml", [users_sync(url, emulator.url, **sync_overrides)])

    return write


def _log_keys(state_url: str, run_id: str) -> dict[str, set[str]]:
    log = StateStore(state_url).run_log("users", run_id)
    return {row.user_uid: set(row.keys.split(",")) for row in log.itertuples()}


def test_second_run_sends_nothing_and_changes_send_only_changed_keys(state_url, sync_env, emulator, instance):
    spec = sync_env(_rows())
    first = run_job(spec, "users_sync", instance)
    assert first.success
    assert push_metadata(first)["requests_sent"] == N_USERS

    second = run_job(spec, "users_sync", instance)
    metadata = push_metadata(second)
    assert metadata["requests_sent"] == 0
    assert metadata["users_unchanged"] == N_USERS and metadata["users_changed"] == 0

    rows = _rows(
        u0003={"plan_name": "gold"}, u0010={"order_count": 99, "is_vip": 1}, u0042={"lifetime_value": 0.5}
    )
    spec = sync_env(rows)
    emulator.reset()
    third = run_job(spec, "users_sync", instance)
    metadata = push_metadata(third)
    assert metadata["requests_sent"] == 3 and metadata["users_changed"] == 3
    assert _log_keys(state_url, third.run_id) == {
        "u0003": {"plan"},
        "u0010": {"orders", "vip"},
        "u0042": {"ltv"},
    }
    # the emulator saw partial bodies only: the users hold exactly the changed keys
    assert emulator.users() == {
        "u0003": {"plan": "gold"},
        "u0010": {"orders": 99, "vip": True},
        "u0042": {"ltv": 0.5},
    }


def test_same_value_stored_another_way_sends_nothing(state_url, sync_env, instance):
    spec = sync_env(_rows())
    assert run_job(spec, "users_sync", instance).success
    # 5 -> "5", 1 -> "true", 3.0 -> "3": the converted values are the same, the row fingerprint is not
    spec = sync_env(_rows(u0005={"order_count": "5", "is_vip": "true", "lifetime_value": "5.0"}))
    metadata = push_metadata(run_job(spec, "users_sync", instance))
    assert metadata["requests_sent"] == 0


def test_nulls_skip_keeps_last_value_and_nulls_send_clears_it(state_url, sync_env, emulator, instance):
    spec = sync_env(_rows(5))
    assert run_job(spec, "users_sync", instance).success
    spec = sync_env(_rows(5, u0001={"plan_name": None}))
    assert push_metadata(run_job(spec, "users_sync", instance))["requests_sent"] == 0
    assert emulator.user("u0001")["attributes"]["plan"] == "free"

    spec = sync_env(_rows(5, u0001={"plan_name": None}), nulls="send")
    result = run_job(spec, "users_sync", instance)
    assert push_metadata(result)["requests_sent"] == 1
    assert _log_keys(state_url, result.run_id) == {"u0001": {"plan"}}
    assert emulator.user("u0001")["attributes"]["plan"] is None


def test_failed_users_are_retried_next_run_and_reported_stuck(state_url, sync_env, emulator, instance):
    spec = sync_env(_rows(), stuck_after_runs=2)
    emulator.configure(fail_rate=0.3, seed=11)
    first = run_job(spec, "users_sync", instance, resources=fast_retries(max_retries=0))
    assert not first.success  # the step fails, but only after every user was tried
    metadata = push_metadata(first)
    failed = metadata["users_failed"]
    assert 0 < failed < N_USERS and metadata["users_delivered"] == N_USERS - failed
    assert metadata["requests_sent"] == N_USERS
    assert len(emulator.users()) == N_USERS - failed

    store = StateStore(state_url)
    failing = set(store.load_fingerprints("users").query("failed_runs > 0").index)
    assert len(failing) == failed

    emulator.configure(fail_rate=0.0)
    second = run_job(spec, "users_sync", instance, resources=fast_retries(max_retries=0))
    assert second.success
    metadata = push_metadata(second)
    assert (
        metadata["requests_sent"] == failed and metadata["users_retried"] == failed
    )  # unchanged rows, resent
    assert set(_log_keys(state_url, second.run_id)) == failing
    assert emulator.users() == {row["user_uid"]: _expected(row) for row in _rows()}
    assert push_metadata(run_job(spec, "users_sync", instance))["requests_sent"] == 0


def test_stuck_after_repeated_failures(state_url, sync_env, emulator, instance):
    spec = sync_env(_rows(3), stuck_after_runs=2)
    emulator.configure(fail_rate=1.0)
    for _ in range(2):
        result = run_job(spec, "users_sync", instance, resources=fast_retries(max_retries=0))
        assert not result.success
    metadata = push_metadata(result)
    assert metadata["users_stuck"] == 3  # still retried every run, and reported
    assert "u0000" in metadata["stuck_sample"]
    assert metadata["requests_sent"] == 3


def test_empty_source_guard_stops_the_run(state_url, sync_env, emulator, instance):
    spec = sync_env(_rows())
    assert run_job(spec, "users_sync", instance).success
    emulator.reset()
    spec = sync_env([])
    result = run_job(spec, "users_sync", instance)
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    assert "returned 0 rows where the last run read 200" in failure.step_failure_data.error.message
    spec = sync_env(_rows(50))  # a quarter of the users: below the default 0.5 fraction
    assert not run_job(spec, "users_sync", instance).success
    # the operator says the shrink is real: the run goes ahead (and sends nothing: nobody changed)
    result = run_job(spec, "users_sync", instance, run_config=push_config(allow_source_shrink=True))
    assert result.success and push_metadata(result)["requests_sent"] == 0
    assert emulator.stats()["requests_total"] == 0


def test_dry_run_reports_the_plan_and_sends_nothing(state_url, sync_env, emulator, instance):
    spec = sync_env(_rows(20))
    # the sync's dry-run job: the same assets with `dry_run: true` preset, tagged as a dry run
    result = run_job(spec, "users_dry_run", instance)
    assert result.success and result.dagster_run.tags[DRY_RUN_TAG] == "true"
    plan = dry_run_plan(result)  # an observation of the push asset, no materialization of it
    assert plan["dry_run"] is True
    assert plan["users_changed"] == 20 and plan["requests_sent"] == 0
    assert "u0000" in plan["plan_sample"] and '"plan"' in plan["plan_sample"]
    assert emulator.stats()["requests_total"] == 0
    assert StateStore(state_url).count_users("users") == 0  # a dry run writes no state
    assert instance.get_latest_materialization_event(dg.AssetKey(["users", "personalize_users"])) is None
    # the Launchpad's `dry_run: true` on the sync job is a dry run too (without the tag a job gives)
    assert dry_run_plan(run_job(spec, "users_sync", instance, run_config=push_config(dry_run=True)))
    assert push_metadata(run_job(spec, "users_sync", instance))["requests_sent"] == 20


def test_full_resync_sends_everyone_everything(state_url, sync_env, emulator, instance):
    spec = sync_env(_rows(20))
    assert run_job(spec, "users_sync", instance).success
    emulator.reset()
    result = run_job(spec, "users_sync", instance, run_config=push_config(full_resync=True))
    assert push_metadata(result)["requests_sent"] == 20
    assert emulator.users() == {row["user_uid"]: _expected(row) for row in _rows(20)}


def test_sync_log_is_queryable_from_python_and_the_cli(state_url, sync_env, emulator, instance, tmp_path):
    spec = sync_env(_rows(3))
    result = run_job(spec, "users_sync", instance)
    store = StateStore(state_url)
    [entry] = store.log_for_user("u0001")
    assert entry["run_id"] == result.run_id and entry["status"] == 200 and entry["attempts"] == 1
    assert set(entry["keys"].split(",")) == {"plan", "ltv", "orders", "vip", "signup_at", "birthday"}
    assert entry["latency_ms"] > 0 and entry["error"] is None

    output = subprocess.run(
        [sys.executable, "-m", "contentstack_assets.log", "u0001", "--state-url", state_url, "--json"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    records = [json.loads(line) for line in output.splitlines()]
    assert records[0]["state"]["delivered"]["plan"] == "free"
    assert records[1]["request"]["status"] == 200
    human = subprocess.run(
        [sys.executable, "-m", "contentstack_assets.log", "u0001", "--state-url", state_url],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert "status=200 attempts=1" in human


@pytest.mark.parametrize(
    ("state_url", "words"),
    [
        ("not a url", "--state-url is not a SQLAlchemy URL"),
        ("sqlite:///{tmp_path}/typo.db", "no sync state at sqlite:///{tmp_path}/typo.db: the file does not exist"),
        ("postgresql+psycopg://etl:pw-s3cret@127.0.0.1:1/state", "cannot read the sync state at "
         "postgresql+psycopg://etl:***@127.0.0.1:1/state: connection failed"),
        ("nosuchdialect://host/db", "cannot read the sync state at nosuchdialect://host/db"),
    ],
)  # fmt: skip
def test_the_sync_log_cli_reports_a_bad_state_url_in_one_line(tmp_path, capsys, state_url, words):
    from contentstack_assets import log

    assert log.main(["u0001", "--state-url", state_url.format(tmp_path=tmp_path)]) == 2
    output = capsys.readouterr()
    assert output.out == "" and output.err.count("\n") == 1, output
    assert (
        output.err.startswith("python -m contentstack_assets.log: ")
        and words.format(tmp_path=tmp_path) in output.err
    )
    assert "pw-s3cret" not in output.err and not (tmp_path / "typo.db").exists()


def test_latency_percentiles_and_failure_table_in_metadata(sync_env, emulator, instance):
    spec = sync_env(_rows(10))
    emulator.configure(fail_rate=1.0)
    result = run_job(spec, "users_sync", instance, resources=fast_retries(max_retries=1))
    metadata = push_metadata(result)
    assert metadata["requests_sent"] == 20  # retries count
    assert metadata["latency_p95_ms"] >= metadata["latency_p50_ms"] > 0
    assert (
        "| user_uid | status | attempts | error |" in metadata["failures"]
        and "| 500 | 2 |" in metadata["failures"]
    )


def test_state_schema_migrates_in_place(tmp_path):
    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = sa.create_engine(url)
    with engine.begin() as connection:  # a store written by version 1 of the schema
        schema_version.create(connection)
        MIGRATIONS[0](connection)
        connection.execute(schema_version.insert().values(version=1))
    store = StateStore(url)
    with store.engine.connect() as connection:
        versions = [
            v
            for (v,) in connection.execute(
                sa.select(schema_version.c.version).order_by(schema_version.c.version)
            )
        ]
        assert versions == list(range(1, SCHEMA_VERSION + 1))
        assert sa.inspect(connection).has_table("cs_items")
    assert StateStore(url).migrate() == SCHEMA_VERSION  # idempotent


def test_kill_minus_nine_mid_delivery_loses_nothing(tmp_path, state_url):
    """A real sync process, SIGKILLed while delivering; the next run completes exactly (state on SQLite and
    on PostgreSQL)."""
    import signal
    import time

    from contentstack_assets.personalize.emulator import start_emulator_process

    rows = _rows(600)
    url = write_sqlite_table(tmp_path / "src.db", rows)
    with start_emulator_process(EmulatorConfig(project_uid=PROJECT_UID, latency_ms=25)) as emu:
        spec = write_spec(tmp_path / "syncs.yaml", [users_sync(url, emu.url, concurrency=4)])
        env = {"CONTENTSTACK_STATE_URL": state_url, "DAGSTER_HOME": str(tmp_path / "dagster_home")}
        script = (
            "import sys, dagster as dg; from tests.helpers import run_job; "
            "r = run_job(sys.argv[1], 'users_sync', dg.DagsterInstance.ephemeral()); sys.exit(0 if r.success else 1)"
        )
        import os

        process = subprocess.Popen([sys.executable, "-c", script, str(spec)], env={**os.environ, **env})
        deadline = time.monotonic() + 60
        while sum(emu.stats()["patch_counts"].values()) < 150 and time.monotonic() < deadline:
            time.sleep(0.05)
        process.send_signal(signal.SIGKILL)
        process.wait()
        delivered_before = len(emu.users())
        assert 0 < delivered_before < 600, "the kill should land mid-delivery"

        store = StateStore(state_url)
        confirmed = set(store.load_fingerprints("users").index)
        assert confirmed <= set(emu.users())  # the state never claims more than the API holds

        subprocess.run([sys.executable, "-c", script, str(spec)], env={**os.environ, **env}, check=True)
        assert emu.users() == {row["user_uid"]: _expected(row) for row in rows}
        counts = emu.stats()["patch_counts"]
        duplicates = {uid: n for uid, n in counts.items() if n > 1}
        # only the requests in flight, the state write in progress and the outcomes waiting for it (at most
        # 2 x concurrency: engine/deliver.py) may go twice
        assert len(duplicates) <= 5 * 4, duplicates
        assert set(store.load_fingerprints("users").index) == set(emu.users())
        assert (store.load_fingerprints("users")["failed_runs"] == 0).all()


def test_sigterm_mid_delivery_stops_the_step_and_the_next_run_finishes(tmp_path):
    """What "Terminate" in the UI does to a run worker: SIGTERM while delivering. Dagster's handler must stop the
    step (inside the event loop its exception used to be logged by the loop and ignored, so delivery went on to
    the end); what was confirmed is recorded, and the next run sends the rest, at most the requests in flight
    twice."""
    import os
    import signal
    import time

    from contentstack_assets.personalize.emulator import start_emulator_process

    rows = _rows(600)
    url = write_sqlite_table(tmp_path / "src.db", rows)
    state_url = f"sqlite:///{tmp_path / 'state.db'}"
    script = PROJECT_ROOT / "tests" / "sync_process.py"
    # 600 users, 4 in flight, 50 ms each: delivery would take 7.5 s
    with start_emulator_process(EmulatorConfig(project_uid=PROJECT_UID, latency_ms=50)) as emu:
        spec = write_spec(tmp_path / "syncs.yaml", [users_sync(url, emu.url, concurrency=4)])
        env = {**os.environ, "CONTENTSTACK_STATE_URL": state_url, "DAGSTER_HOME": str(tmp_path / "home")}
        process = subprocess.Popen(
            [sys.executable, str(script), str(spec)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 60
        while sum(emu.stats()["patch_counts"].values()) < 100 and time.monotonic() < deadline:
            time.sleep(0.02)
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=60)
        applied = len(emu.users())
        assert process.returncode == 1, stderr.decode()[-2000:]
        assert "DagsterExecutionInterruptedError" in stderr.decode()
        assert applied < 600, "delivery went on after SIGTERM"

        store = StateStore(state_url)
        recorded = set(store.load_fingerprints("users").index)
        assert recorded <= set(emu.users())
        assert len(set(emu.users()) - recorded) <= 4  # only answers in flight were dropped unrecorded

        subprocess.run([sys.executable, str(script), str(spec)], env=env, check=True, capture_output=True)
        assert emu.users() == {row["user_uid"]: _expected(row) for row in rows}
        duplicates = {uid: n for uid, n in emu.stats()["patch_counts"].items() if n > 1}
        assert len(duplicates) <= 4, duplicates
        assert set(store.load_fingerprints("users").index) == set(emu.users())


def test_forget_in_flight_drops_only_the_keys_about_to_be_sent(state_url):
    """The write-ahead step: keys about to be sent leave `delivered`, the fingerprint is cleared, the other
    keys and users stay; keys no JSON path can name (quotes, dots, non-ASCII) included."""
    from contentstack_assets.engine.state import UserOutcome

    store = StateStore(state_url)
    odd = {"plan": "pro", 'say "hi"': 1, "a.b": 2, "naïve": 3, "back\\slash": 4}
    store.record_user_outcomes(
        "users",
        "run-1",
        [
            UserOutcome(uid, tuple(odd), True, 200, 1, 1.0, None, dict(odd), 42)
            for uid in ("a", "b", "untouched")
        ],
    )
    store.forget_in_flight("users", [("a", ("plan", "a.b")), ("b", ('say "hi"', "naïve", "back\\slash")),
                                     ("never-seen", ("plan",))])  # fmt: skip
    assert store.load_delivered("users", ["a", "b", "untouched", "never-seen"]) == {
        "a": {'say "hi"': 1, "naïve": 3, "back\\slash": 4},
        "b": {"plan": "pro", "a.b": 2},
        "untouched": odd,
    }
    prints = store.load_fingerprints("users")["fingerprint"]
    assert prints.isna().to_dict() == {"a": True, "b": True, "untouched": False}


def test_load_fingerprints_is_exact_in_every_chunk(state_url, monkeypatch):
    """64-bit fingerprints come back exactly (never through a float), NULL as <NA>, uids as object text,
    across the chunks the rows are read in, for all users and for a few."""
    from contentstack_assets.engine import state
    from contentstack_assets.engine.state import UserOutcome

    monkeypatch.setattr(state.fingerprint_read, "_FETCH_CHUNK", 7)  # chunk boundaries in a small table
    store = StateStore(state_url)
    empty = store.load_fingerprints("users")
    assert len(empty) == 0 and empty.index.dtype == object and empty.index.name == "user_uid"
    assert empty.dtypes.astype(str).to_dict() == {"fingerprint": "Int64", "failed_runs": "int64"}

    extremes = [-(2**63), 2**63 - 1, 2**53 + 1, -(2**53) - 1, 0, 1, -1]
    expected: dict[str, tuple[int | None, int]] = {}
    delivered = []
    for i in range(40):
        uid = f"u{i:03d}" if i % 5 else f" ü {i} \"quoted\", 'x'"  # any text is a uid
        fingerprint = extremes[i % len(extremes)] if i < 20 else 9_000_000_000_000_000_000 + i
        delivered.append(UserOutcome(uid, ("k",), True, 200, 1, 1.0, None, {"k": i}, fingerprint))
        expected[uid] = (fingerprint, 0)
    failed = []
    for i in range(10):  # new users whose first request failed: no fingerprint yet
        uid = f"new{i}"
        failed.append(UserOutcome(uid, ("k",), False, 500, 1, 1.0, "HTTP 500", None, 123))
        expected[uid] = (None, 1)
    store.record_user_outcomes("users", "run-1", delivered + failed)
    store.record_user_outcomes("users", "run-2", [failed[0]])
    expected["new0"] = (None, 2)
    store.record_user_outcomes("other", "run-1", [delivered[1]])  # another sync's rows stay out

    frame = store.load_fingerprints("users")
    assert frame.dtypes.astype(str).to_dict() == {"fingerprint": "Int64", "failed_runs": "int64"}
    assert frame.index.dtype == object and frame.index.name == "user_uid"
    assert all(type(uid) is str for uid in frame.index)
    found = {
        uid: (None if fingerprint is pd.NA else int(fingerprint), int(failed))
        for uid, fingerprint, failed in zip(
            frame.index, frame["fingerprint"], frame["failed_runs"], strict=True
        )
    }
    assert found == expected
    assert frame["fingerprint"].array._data.dtype == np.int64  # no float anywhere on the way

    few = store.load_fingerprints("users", pd.Series(["new0", "u001", "nobody", " ü 0 \"quoted\", 'x'"]))
    assert few.dtypes.astype(str).to_dict() == {"fingerprint": "Int64", "failed_runs": "int64"}
    assert {uid: (None if fp is pd.NA else int(fp)) for uid, fp in few["fingerprint"].items()} == {
        "new0": None,
        "u001": 2**63 - 1,
        " ü 0 \"quoted\", 'x'": -(2**63),
    }


def test_a_write_aborted_by_a_concurrent_run_is_run_again_from_the_start(state_url):
    """A deadlock or serialization failure (PostgreSQL) aborts the whole transaction: the store rolls it back
    and runs it again; other errors, and the last attempt's, reach the caller."""
    from contentstack_assets.engine.state import runs

    store = StateStore(state_url)

    class Deadlock(Exception):
        sqlstate = "40P01"

    class Other(Exception):
        sqlstate = "42P01"

    attempts: list[int] = []

    def write(connection: sa.Connection) -> str:
        attempts.append(1)
        connection.execute(
            runs.insert().values(
                run_id=f"r{len(attempts)}", sync="s", started_at=sa.func.now(), scope="all", dry_run=False,
                counts="{}",
            )
        )  # fmt: skip
        if len(attempts) < 3:
            raise sa.exc.OperationalError("INSERT ...", {}, Deadlock())
        return "written"

    assert store._write(write) == "written" and len(attempts) == 3
    with store.engine.connect() as connection:  # the aborted attempts left nothing behind
        assert connection.execute(sa.select(runs.c.run_id).where(runs.c.sync == "s")).scalars().all() == [
            "r3"
        ]

    def failing(connection: sa.Connection) -> None:
        attempts.append(1)
        raise sa.exc.OperationalError("SELECT ...", {}, Other())

    attempts.clear()
    with pytest.raises(sa.exc.OperationalError):
        store._write(failing)
    assert len(attempts) == 1

    def always_deadlocked(connection: sa.Connection) -> None:
        attempts.append(1)
        raise sa.exc.OperationalError("UPDATE ...", {}, Deadlock())

    attempts.clear()
    with pytest.raises(sa.exc.OperationalError):
        store._write(always_deadlocked, attempts=3)
    assert len(attempts) == 3


def test_the_portable_writes_match_the_upserts(state_url):
    """Databases without INSERT ... ON CONFLICT take the portable path (read under a lock, then insert or
    update); it leaves exactly the rows the upserts leave."""
    from contentstack_assets.engine.state import ItemOutcome, UserOutcome, item_queries, items, user_queries

    def history(store: StateStore, sync: str) -> None:
        def user(uid: str, ok: bool, value: int) -> UserOutcome:
            return UserOutcome(uid, ("k",), ok, 200 if ok else 500, 1, 1.0, None if ok else "HTTP 500",
                               {"k": value} if ok else None, value)  # fmt: skip

        def item(item_id: str, ok: bool) -> tuple[list[ItemOutcome], UserOutcome]:
            logged = UserOutcome("u", ("e",), ok, 200 if ok else 500, 1, 1.0, None, None, None, "events")
            return [ItemOutcome(item_id, "u", ok, 200 if ok else 500, None if ok else "HTTP 500")], logged

        store.record_user_outcomes(sync, "r1", [user("b", True, 1), user("a", False, 2), user("c", True, 3)])
        store.record_user_outcomes(
            sync, "r2", [user("a", False, 4), user("b", False, 5), user("d", False, 6)]
        )
        store.record_user_outcomes(sync, "r3", [user("a", True, 7), user("d", False, 8)])
        store.record_item_requests(sync, "r1", [item("e1", False), item("e2", True), item("e3", False)])
        store.record_item_requests(sync, "r2", [item("e1", False), item("e2", False), item("e3", True)])
        store.record_item_requests(sync, "r3", [item("e3", False), item("e4", False)])

    def rows(store: StateStore, sync: str) -> tuple[list, list]:
        with store.engine.connect() as connection:
            return tuple(
                [
                    tuple(value for key, value in row._mapping.items() if key not in ("sync", "updated_at"))
                    for row in connection.execute(
                        sa.select(table).where(table.c.sync == sync).order_by(*table.primary_key.columns)
                    )
                ]
                for table in (users, items)
            )

    store = StateStore(state_url)
    history(store, "upserted")
    portable = StateStore(state_url)
    taken = []
    with pytest.MonkeyPatch.context() as patch:
        # as on a database other than PostgreSQL and SQLite: no bulk insert, no upsert
        for module in (user_queries, item_queries):
            patch.setattr(module, "_insert_many", lambda *args: False)
        for name in ("_write_user_rows_portably", "_write_item_rows_portably"):
            method = getattr(portable, name)
            patch.setattr(
                portable, name, lambda *args, method=method, name=name: taken.append(name) or method(*args)
            )
        history(portable, "portable")
    assert sorted(set(taken)) == ["_write_item_rows_portably", "_write_user_rows_portably"]
    assert rows(portable, "portable") == rows(store, "upserted")
    found_users, found_items = rows(store, "upserted")
    assert [(row[0], row[1], row[3]) for row in found_users] == [
        ("a", 7, 0), ("b", 1, 1), ("c", 3, 0), ("d", None, 2)
    ]  # fmt: skip
    assert [(row[0], row[2], row[3]) for row in found_items] == [
        ("e1", False, 2), ("e2", True, 0), ("e3", True, 0), ("e4", False, 1)
    ]  # fmt: skip


@pytest.mark.postgres
def test_state_tables_a_run_grew_get_fresh_planner_statistics(postgres_url):
    """After a big first sync the planner must not think cs_users is empty (it would scan a million rows
    per lookup): the store ANALYZEs the state tables that changed much since their statistics were taken."""
    import time

    from contentstack_assets.engine.state import UserOutcome

    store = StateStore(postgres_url)
    store.record_user_outcomes(
        "users",
        "run-1",
        [UserOutcome(f"u{i:05d}", ("plan",), True, 200, 1, 1.0, None, {"plan": "p"}, i) for i in range(3000)],
    )
    analyzed: list[str] = []
    deadline = time.monotonic() + 10  # the server publishes its table counters about once a second
    while not analyzed and time.monotonic() < deadline:
        analyzed = store.refresh_statistics()
        time.sleep(0.2)
    assert sorted(analyzed) == ["cs_sync_log", "cs_users"]
    assert store.refresh_statistics() == []  # nothing changed since
    with store.engine.connect() as connection:
        live = connection.execute(
            sa.text("SELECT reltuples FROM pg_class WHERE relname = 'cs_users'")
        ).scalar()
    assert live == 3000
