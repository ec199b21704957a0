"""When syncs run and how failures are reported: the schedule, the source-change sensor, the failure alert
(over real HTTP to a local webhook) and the delivery_failures check (over real HTTP to the emulator)."""

import datetime as dt
import http.server
import json
import re
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa

from contentstack_assets.definitions import build_definitions
from contentstack_assets.personalize.emulator import EmulatorConfig, run_emulator_in_thread
from contentstack_assets.spec import load_spec
from contentstack_assets.syncs.alerts import ALERT_WEBHOOK_ENV, WEBSERVER_URL_ENV, failure_alerts_sensor
from contentstack_assets.syncs.partitions import RANGE_END_TAG, RANGE_START_TAG
from contentstack_assets.syncs.runs import syncs_of_run
from tests.helpers import (
    PROJECT_UID,
    fast_retries,
    push_metadata,
    run_job,
    users_sync,
    write_spec,
    write_sqlite_table,
)

UTC = dt.UTC
failure_alerts = failure_alerts_sensor()
ROWS = [
    dict(user_uid=f"d{day:02d}", plan_name="free", updated_at=f"2024-01-{day:02d} 10:00:00")
    for day in range(1, 6)
]


def _partitioned(url: str, edge_url: str = "http://127.0.0.1:9", **overrides) -> dict:
    source = {"url": url, "table": "users", "updated_at": "updated_at", "start_date": "2024-01-01"}
    return users_sync(url, edge_url, source=source, **overrides)


def _defs(tmp_path: Path, sync: dict) -> dg.Definitions:
    return build_definitions(load_spec(write_spec(tmp_path / "syncs.yaml", [sync])))


def _in_progress_run(instance: dg.DagsterInstance, **fields) -> dg.DagsterRun:
    run = dg.DagsterRun(
        job_name=fields.pop("job_name", "users_sync"), status=dg.DagsterRunStatus.STARTED, **fields
    )
    return instance.add_run(run)


def _insert(path: Path, rows: list[dict]) -> None:
    with sqlite3.connect(path) as connection:
        connection.executemany(
            "INSERT INTO users (user_uid, plan_name, updated_at) VALUES (:user_uid, :plan_name, :updated_at)",
            rows,
        )


# -- the schedule ----------------------------------------------------------------------------------
def _tick(defs: dg.Definitions, instance: dg.DagsterInstance, when: dt.datetime):
    context = dg.build_schedule_context(
        instance=instance, scheduled_execution_time=when, repository_def=defs.get_repository_def()
    )
    return defs.resolve_schedule_def("users_schedule").evaluate_tick(context)


def test_schedule_of_an_unpartitioned_sync(tmp_path, instance):
    defs = _defs(tmp_path, users_sync("sqlite:///src.db", "http://127.0.0.1:9", schedule="*/15 * * * *"))
    schedule = defs.resolve_schedule_def("users_schedule")
    assert schedule.cron_schedule == "*/15 * * * *" and schedule.execution_timezone == "UTC"
    assert schedule.job_name == "users_sync"
    assert schedule.default_status == dg.DefaultScheduleStatus.STOPPED  # the user turns it on

    data = _tick(defs, instance, dt.datetime(2024, 3, 5, 13, 15, tzinfo=UTC))
    [request] = data.run_requests
    assert request.run_key == "schedule:2024-03-05T13:15:00+00:00"
    assert request.partition_key is None and RANGE_START_TAG not in request.tags


def test_no_schedule_without_a_cron(tmp_path):
    defs = _defs(tmp_path, users_sync("sqlite:///src.db", "http://127.0.0.1:9"))
    assert not list(defs.schedules or [])
    defs.resolve_sensor_def("users_source_changed")  # the sensor exists all the same


def test_schedule_of_a_partitioned_sync_covers_every_day_until_something_was_delivered(tmp_path, instance):
    defs = _defs(tmp_path, _partitioned("sqlite:///src.db", schedule="0 * * * *"))

    # nothing delivered yet: from the first partition to today's (the run reads everything once)
    [request] = _tick(defs, instance, dt.datetime(2024, 3, 5, 13, 0, tzinfo=UTC)).run_requests
    assert (request.tags[RANGE_START_TAG], request.tags[RANGE_END_TAG]) == ("2024-01-01", "2024-03-05")

    data = _tick(defs, instance, dt.datetime(2023, 12, 31, 12, 0, tzinfo=UTC))
    assert not data.run_requests and "before the first partition" in data.skip_message
    # the catch-up after deliveries: tests/integration/test_eventually.py


def test_schedule_skips_while_a_run_of_the_sync_is_in_progress(tmp_path, instance):
    defs = _defs(tmp_path, _partitioned("sqlite:///src.db", schedule="0 * * * *"))
    when = dt.datetime(2024, 3, 5, 13, 0, tzinfo=UTC)

    running = _in_progress_run(instance, tags={"contentstack/sync": "users"})
    data = _tick(defs, instance, when)
    assert not data.run_requests
    assert "still in progress" in data.skip_message and running.run_id in data.skip_message

    instance.report_run_failed(running)
    assert len(_tick(defs, instance, when).run_requests) == 1

    # a backfill launched from the UI runs an asset job: recognised by its assets
    backfill = _in_progress_run(
        instance, job_name="__ASSET_JOB", asset_selection=frozenset({dg.AssetKey(["users", "source_users"])})
    )
    assert syncs_of_run(backfill) == {"users"}
    assert backfill.run_id in _tick(defs, instance, when).skip_message

    # a run of another sync does not hold this one back
    instance.report_run_failed(backfill)
    _in_progress_run(instance, job_name="other_sync", tags={"contentstack/sync": "other"})
    assert len(_tick(defs, instance, when).run_requests) == 1


# -- the source-change sensor ----------------------------------------------------------------------
def _sense(defs: dg.Definitions, instance: dg.DagsterInstance, cursor: str | None):
    sensor = defs.resolve_sensor_def("users_source_changed")
    context = dg.build_sensor_context(instance=instance, cursor=cursor, definitions=defs)
    return sensor.evaluate_tick(context)


def _launch(defs: dg.Definitions, instance: dg.DagsterInstance, request: dg.RunRequest):
    """Run what the sensor asked for as the daemon would: its tags, its partition."""
    return defs.resolve_job_def("users_sync").execute_in_process(
        instance=instance, tags=request.tags, partition_key=request.partition_key, raise_on_error=False
    )


def test_sensor_of_an_unpartitioned_sync(tmp_path, instance, emulator):
    path = tmp_path / "src.db"
    url = write_sqlite_table(path, ROWS)
    defs = _defs(tmp_path, users_sync(url, emulator.url))
    assert defs.resolve_sensor_def("users_source_changed").default_status == dg.DefaultSensorStatus.STOPPED

    first = _sense(defs, instance, None)
    [request] = first.run_requests
    assert request.partition_key is None and request.tags["contentstack/probe"] == "rows=5"
    # a request whose run never happened (or failed) is asked again, under a new key (Dagster drops a repeat)
    asked_again = _sense(defs, instance, first.cursor)
    [repeated] = asked_again.run_requests
    assert repeated.run_key != request.run_key
    assert _launch(defs, instance, repeated).success
    # its run got through the push: the probe is delivered, the next tick has nothing to ask
    settled = _sense(defs, instance, asked_again.cursor)
    assert not settled.run_requests and "unchanged" in settled.skip_message
    cursor = settled.cursor

    _insert(path, [dict(user_uid="new", plan_name="pro", updated_at=None)])
    changed = _sense(defs, instance, cursor)
    [request] = changed.run_requests
    assert request.tags["contentstack/probe"] == "rows=6"


def test_sensor_of_a_partitioned_sync_requests_the_changed_days(tmp_path, instance, emulator):
    path = tmp_path / "src.db"
    url = write_sqlite_table(path, ROWS + [dict(user_uid="undated", plan_name="free", updated_at=None)])
    spec = write_spec(tmp_path / "syncs.yaml", [_partitioned(url, emulator.url)])
    defs = build_definitions(load_spec(spec))

    first = _sense(defs, instance, None)
    [request] = first.run_requests  # five days with rows, one apart: one run
    assert (request.tags[RANGE_START_TAG], request.tags[RANGE_END_TAG]) == ("2024-01-01", "2024-01-05")
    assert _launch(defs, instance, request).success and len(emulator.users()) == 5
    settled = _sense(defs, instance, first.cursor)
    assert not settled.run_requests and "unchanged" in settled.skip_message

    # two users updated on later days, one row added before the start date: the changed days, no more
    with sqlite3.connect(path) as connection:
        connection.execute(
            "UPDATE users SET plan_name = 'pro', updated_at = '2024-02-10 08:00:00' WHERE user_uid = 'd02'"
        )
    _insert(
        path,
        [
            dict(user_uid="late", plan_name="free", updated_at="2024-02-12T23:30:00-02:00"),
            dict(user_uid="ancient", plan_name="free", updated_at="2023-06-01 00:00:00"),
        ],
    )
    changed = _sense(defs, instance, settled.cursor)
    # d02 left 2024-01-02 (that day changed too), 2024-02-10 and 2024-02-12 (SQLite reads the text's day)
    assert sorted(
        (r.tags.get(RANGE_START_TAG, r.partition_key), r.tags.get(RANGE_END_TAG, r.partition_key))
        for r in changed.run_requests
    ) == [("2024-01-02", "2024-01-02"), ("2024-02-10", "2024-02-12")]
    emulator.reset()
    for request in changed.run_requests:
        assert _launch(defs, instance, request).success
    assert set(emulator.users()) == {"d02", "late"}
    assert not _sense(defs, instance, changed.cursor).run_requests


def test_the_sensor_reads_aggregates_only(tmp_path, instance):
    """The changed days come from one GROUP BY in SQL: no statement brings the partition column's values over."""
    path = tmp_path / "src.db"
    defs = _defs(
        tmp_path,
        _partitioned(write_sqlite_table(path, ROWS + [dict(user_uid="x", updated_at="2024-01-09")])),
    )
    statements: list[str] = []

    def capture(connection, cursor, statement, parameters, context, executemany):  # noqa: ANN001
        if connection.engine.url.database == str(path):  # the source's, not the Dagster instance's
            statements.append(" ".join(statement.split()))

    sa.event.listen(sa.engine.Engine, "before_cursor_execute", capture)
    try:
        _sense(defs, instance, None)
    finally:
        sa.event.remove(sa.engine.Engine, "before_cursor_execute", capture)
    reads = [statement for statement in statements if statement.upper().startswith("SELECT")]
    assert any("GROUP BY" in statement for statement in reads), reads
    for statement in reads:
        if "pragma" in statement.lower():
            continue
        selected = statement[len("SELECT ") : statement.upper().index(" FROM ")]
        while "(" in selected:  # function arguments out of the way
            selected = re.sub(r"\([^()]*\)", "", selected)
        for item in selected.split(", "):
            assert item.split(" AS ")[0] in ("count", "min", "max", "sum", "substr"), statement


def test_sensor_skips_what_it_cannot_probe_and_while_the_sync_runs(tmp_path, instance):
    url = write_sqlite_table(tmp_path / "src.db", ROWS)
    sync = _partitioned(url)
    sync["source"]["table"] = "customers"
    defs = _defs(tmp_path, sync)
    data = _sense(defs, instance, None)
    assert not data.run_requests and "cannot probe the source" in data.skip_message
    assert "'customers' does not exist" in data.skip_message

    defs = _defs(tmp_path, _partitioned(url))
    running = _in_progress_run(instance, tags={"contentstack/sync": "users"})
    data = _sense(defs, instance, None)
    assert not data.run_requests and running.run_id in data.skip_message
    assert data.cursor is None  # the changes wait for the next tick, in one run


def test_sensor_with_a_probe_query(tmp_path, instance):
    path = tmp_path / "src.db"
    url = write_sqlite_table(path, ROWS)
    sync = users_sync(url, "http://127.0.0.1:9")
    sync["source"]["probe_query"] = "SELECT group_concat(plan_name) FROM users"
    defs = _defs(tmp_path, sync)
    [request] = _sense(defs, instance, None).run_requests
    assert request.tags["contentstack/probe"] == "probe=free,free,free,free,free"
    with sqlite3.connect(path) as connection:
        connection.execute("UPDATE users SET plan_name = 'pro' WHERE user_uid = 'd01'")  # same count
    [request] = _sense(defs, instance, None).run_requests
    assert request.tags["contentstack/probe"] == "probe=pro,free,free,free,free"


def test_a_probe_query_gates_the_day_digests_of_a_partitioned_sync(tmp_path, instance, emulator):
    path = tmp_path / "src.db"
    sync = _partitioned(write_sqlite_table(path, ROWS), emulator.url)
    sync["source"]["probe_query"] = "SELECT group_concat(plan_name) FROM users"
    defs = _defs(tmp_path, sync)
    first = _sense(defs, instance, None)
    [request] = first.run_requests
    assert _launch(defs, instance, request).success
    settled = _sense(defs, instance, first.cursor)
    assert not settled.run_requests
    # only the probe decides: a touched updated_at with the same probe value starts nothing
    with sqlite3.connect(path) as connection:
        connection.execute("UPDATE users SET updated_at = '2024-01-06 09:00:00' WHERE user_uid = 'd01'")
    assert "unchanged" in _sense(defs, instance, settled.cursor).skip_message
    with sqlite3.connect(path) as connection:
        connection.execute(
            "UPDATE users SET plan_name = 'pro', updated_at = '2024-01-08 09:00:00' WHERE user_uid = 'd05'"
        )
    [request] = _sense(defs, instance, settled.cursor).run_requests
    # the days whose digest moved: d01 left 01-01 for 01-06, d05 left 01-05 for 01-08
    assert (request.tags[RANGE_START_TAG], request.tags[RANGE_END_TAG]) == ("2024-01-01", "2024-01-08")


@pytest.mark.parametrize("column_type", ["timestamptz", "timestamp"])
def test_sensor_on_postgres_timestamps(tmp_path, instance, postgres_url, column_type, emulator):
    engine = sa.create_engine(postgres_url)
    with engine.begin() as connection:
        connection.execute(
            sa.text(f"CREATE TABLE users (user_uid text, plan_name text, updated_at {column_type})")
        )
        connection.execute(
            sa.text(
                "INSERT INTO users VALUES ('a', 'free', '2024-01-02 10:00+00'), ('b', 'free', '2024-01-04 01:30+00')"
            )
        )
    defs = _defs(
        tmp_path,
        _partitioned(
            postgres_url, emulator.url, attributes={"plan": {"column": "plan_name", "type": "string"}}
        ),
    )
    first = _sense(defs, instance, None)
    [request] = first.run_requests
    assert (request.tags[RANGE_START_TAG], request.tags[RANGE_END_TAG]) == ("2024-01-02", "2024-01-04")
    assert _launch(defs, instance, request).success
    settled = _sense(defs, instance, first.cursor)
    assert "unchanged" in settled.skip_message
    with engine.begin() as connection:
        connection.execute(sa.text("INSERT INTO users VALUES ('c', 'pro', '2024-01-07 12:00+00')"))
        # a row whose time moves within its day: the day's sum moves
        connection.execute(
            sa.text("UPDATE users SET updated_at = '2024-01-02 11:00+00' WHERE user_uid = 'a'")
        )
    [request] = _sense(defs, instance, settled.cursor).run_requests  # two days five apart: one run
    assert (request.tags[RANGE_START_TAG], request.tags[RANGE_END_TAG]) == ("2024-01-02", "2024-01-07")
    engine.dispose()


# -- failure alerts --------------------------------------------------------------------------------
@contextmanager
def webhook_server(status: int = 200) -> Iterator[tuple[str, list[dict]]]:
    """A local HTTP server that keeps the JSON bodies POSTed to it."""
    received: list[dict] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            body = self.rfile.read(int(self.headers["content-length"]))
            received.append(
                {"path": self.path, "content_type": self.headers["content-type"], **json.loads(body)}
            )
            self.send_response(status)
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/services/T000/B000/secret", received
    finally:
        server.shutdown()
        server.server_close()


def _failed_run(tmp_path: Path, instance: dg.DagsterInstance, emulator) -> dg.ExecuteInProcessResult:
    url = write_sqlite_table(tmp_path / "src.db", ROWS)
    sync = users_sync(url, emulator.url)
    sync["source"]["table"] = "customers"  # no such table: the read fails
    result = run_job(write_spec(tmp_path / "syncs.yaml", [sync]), "users_sync", instance)
    assert not result.success
    return result


def _failure_context(instance: dg.DagsterInstance, run_id: str) -> dg.RunFailureSensorContext:
    [record] = instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.RUN_FAILURE).records
    return dg.build_run_status_sensor_context(
        sensor_name=failure_alerts.name,
        dagster_event=record.event_log_entry.dagster_event,
        dagster_instance=instance,
        dagster_run=instance.get_run_by_id(run_id),
    ).for_run_failure()


def test_a_failed_sync_posts_an_alert(tmp_path, instance, emulator, monkeypatch):
    result = _failed_run(tmp_path, instance, emulator)
    monkeypatch.setenv(WEBSERVER_URL_ENV, "https://dagster.example.com/")
    with webhook_server() as (webhook, received):
        monkeypatch.setenv(ALERT_WEBHOOK_ENV, webhook)
        assert failure_alerts(_failure_context(instance, result.run_id)) is None
    [message] = received
    assert message["path"] == "/services/T000/B000/secret" and message["content_type"] == "application/json"
    assert message["sync"] == "users" and message["run_id"] == result.run_id
    assert message["run_url"] == f"https://dagster.example.com/runs/{result.run_id}"
    assert message["error"].startswith("users__source_users: source sqlite:///")
    assert "table 'customers' does not exist" in message["error"]
    # what Slack shows: text, and blocks with the summary and the link
    assert (
        "`users` failed" in message["text"]
        and f"<{message['run_url']}|run {result.run_id[:8]}>" in message["text"]
    )
    assert (
        message["blocks"][0]["type"] == "section" and "does not exist" in message["blocks"][0]["text"]["text"]
    )
    assert message["run_url"] in message["blocks"][1]["elements"][0]["text"]


def test_the_failure_sensor_finds_the_failed_run_on_its_own(tmp_path, instance, emulator, monkeypatch):
    """The daemon's path: the sensor reads the instance's run failures after its cursor."""
    defs = build_definitions(
        load_spec(write_spec(tmp_path / "syncs.yaml", [users_sync("sqlite:///x.db", emulator.url)]))
    )
    sensor = defs.resolve_sensor_def("contentstack_failure_alerts")
    with webhook_server() as (webhook, received):
        monkeypatch.setenv(ALERT_WEBHOOK_ENV, webhook)
        # the first tick only sets the cursor at "now"; failures after it are reported
        first = sensor.evaluate_tick(dg.build_sensor_context(instance=instance, definitions=defs))
        result = _failed_run(tmp_path, instance, emulator)
        sensor.evaluate_tick(
            dg.build_sensor_context(instance=instance, definitions=defs, cursor=first.cursor)
        )
    assert [message["run_id"] for message in received] == [result.run_id]


def test_no_alert_without_a_webhook_or_for_other_runs(tmp_path, instance, emulator, monkeypatch):
    result = _failed_run(tmp_path, instance, emulator)
    skip = failure_alerts(_failure_context(instance, result.run_id))
    assert isinstance(skip, dg.SkipReason) and ALERT_WEBHOOK_ENV in skip.skip_message

    @dg.op
    def broken():
        raise RuntimeError("not a sync")

    @dg.job
    def housekeeping():
        broken()

    other = housekeeping.execute_in_process(instance=instance, raise_on_error=False)
    with webhook_server() as (webhook, received):
        monkeypatch.setenv(ALERT_WEBHOOK_ENV, webhook)
        skip = failure_alerts(_failure_context(instance, other.run_id))
    assert isinstance(skip, dg.SkipReason) and "not a sync run" in skip.skip_message and not received


def test_a_failing_webhook_is_reported_without_its_secret_path(tmp_path, instance, emulator, monkeypatch):
    result = _failed_run(tmp_path, instance, emulator)
    with webhook_server(status=500) as (webhook, _):
        monkeypatch.setenv(ALERT_WEBHOOK_ENV, webhook)
        with pytest.raises(RuntimeError) as raised:
            failure_alerts(_failure_context(instance, result.run_id))
    assert (
        "HTTP 500" in str(raised.value)
        and "127.0.0.1" in str(raised.value)
        and "secret" not in str(raised.value)
    )

    monkeypatch.setenv(ALERT_WEBHOOK_ENV, "http://hooks.example.com/services/secret")
    with pytest.raises(ValueError) as raised:
        failure_alerts(_failure_context(instance, result.run_id))
    assert "https://" in str(raised.value) and "secret" not in str(raised.value)


# -- the delivery_failures check -------------------------------------------------------------------
def _delivery_check(result: dg.ExecuteInProcessResult) -> dg.AssetCheckEvaluation:
    [check] = [c for c in result.get_asset_check_evaluations() if c.check_name == "delivery_failures"]
    return check


def _users(count: int) -> list[dict]:
    return [dict(user_uid=f"u{index:03d}", plan_name="free") for index in range(count)]


def test_delivery_failures_is_an_error_above_max_failed_share(tmp_path, instance):
    url = write_sqlite_table(tmp_path / "src.db", _users(10))
    with run_emulator_in_thread(EmulatorConfig(project_uid=PROJECT_UID, faults={"500": 1.0})) as emu:
        spec = write_spec(tmp_path / "syncs.yaml", [users_sync(url, emu.url)])
        result = run_job(spec, "users_sync", instance, resources=fast_retries(max_retries=1))
        assert not result.success  # the step fails after reporting, so the failed users are retried next run
        check = _delivery_check(result)
        assert not check.passed and check.severity == dg.AssetCheckSeverity.ERROR
        assert check.metadata["num_failures"].value == 10 and check.metadata["failed_share"].value == 1.0
        assert check.metadata["threshold"].value == 0.05
        assert emu.stats()["by_status"] == {"500": 20}  # one retry each
        assert push_metadata(result)["users_failed"] == 10


def test_delivery_failures_is_a_warning_within_max_failed_share(tmp_path, instance):
    url = write_sqlite_table(tmp_path / "src.db", _users(40))
    config = EmulatorConfig(project_uid=PROJECT_UID, faults={"500": 0.1}, seed=11)
    with run_emulator_in_thread(config) as emu:
        sync = users_sync(url, emu.url, max_failed_share=0.5, concurrency=1)
        result = run_job(
            write_spec(tmp_path / "syncs.yaml", [sync]), "users_sync", instance, resources=fast_retries(0)
        )
        check = _delivery_check(result)
        failed = check.metadata["num_failures"].value
        assert 0 < failed < 20
        assert not check.passed and check.severity == dg.AssetCheckSeverity.WARN
        assert check.metadata["failed_share"].value == round(failed / 40, 4)

        emu.configure(faults={})
        result = run_job(write_spec(tmp_path / "syncs.yaml", [sync]), "users_sync", instance)
        assert result.success and _delivery_check(result).passed
        assert push_metadata(result)["users_delivered"] == failed  # the failed users, retried
