"""The alert sensors: on by default when the webhook is set, and alerts on checks that turn WARN or ERROR
beyond the spec's tolerance (rejected rows, failed users), with the counts and a link to the run, posted
over real HTTP to a local webhook. The failure alert's own tests are in test_cadence.py."""

from pathlib import Path

import dagster as dg
import pytest

from contentstack_assets.definitions import build_definitions
from contentstack_assets.personalize.emulator import EmulatorConfig, run_emulator_in_thread
from contentstack_assets.spec import load_spec
from contentstack_assets.syncs.alerts import (
    ALERT_WEBHOOK_ENV,
    WEBSERVER_URL_ENV,
    check_alerts_sensor,
    failed_checks,
    failure_alerts_sensor,
)
from tests.helpers import PROJECT_UID, fast_retries, run_job, users_sync, write_spec, write_sqlite_table
from tests.integration.test_cadence import webhook_server

GOOD = [dict(user_uid=f"u{index:02d}", plan_name="free") for index in range(18)]
BAD = [dict(user_uid=None, plan_name="x"), dict(user_uid="b_ltv", lifetime_value="abc")]  # 2 of 20


def _sensors(tmp_path: Path) -> dict[str, dg.SensorDefinition]:
    defs = build_definitions(
        load_spec(write_spec(tmp_path / "syncs.yaml", [users_sync("sqlite:///x.db", "http://127.0.0.1:9")]))
    )
    return {
        name: defs.resolve_sensor_def(name)
        for name in ("contentstack_failure_alerts", "contentstack_check_alerts")
    }


def test_the_alert_sensors_run_by_default_when_the_webhook_is_set(tmp_path, monkeypatch):
    monkeypatch.delenv(ALERT_WEBHOOK_ENV, raising=False)
    for sensor in _sensors(tmp_path).values():
        assert sensor.default_status == dg.DefaultSensorStatus.STOPPED
        assert f"stopped by default: ${ALERT_WEBHOOK_ENV} was not set" in sensor.description

    monkeypatch.setenv(ALERT_WEBHOOK_ENV, "https://hooks.example.com/services/T/B/secret")
    for sensor in _sensors(tmp_path).values():
        assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
        assert "stopped" not in sensor.description and "secret" not in sensor.description


def _context(instance: dg.DagsterInstance, run_id: str, sensor: dg.SensorDefinition, event_type):
    [record] = instance.get_records_for_run(run_id, of_type=event_type).records
    context = dg.build_run_status_sensor_context(
        sensor_name=sensor.name,
        dagster_event=record.event_log_entry.dagster_event,
        dagster_instance=instance,
        dagster_run=instance.get_run_by_id(run_id),
    )
    return context.for_run_failure() if event_type == dg.DagsterEventType.RUN_FAILURE else context


def _rejecting_run(tmp_path: Path, instance, emulator, **overrides) -> dg.ExecuteInProcessResult:
    url = write_sqlite_table(tmp_path / "src.db", GOOD + BAD)
    result = run_job(
        write_spec(tmp_path / "syncs.yaml", [users_sync(url, emulator.url, **overrides)]),
        "users_sync",
        instance,
    )
    assert result.success  # rejected rows warn; they do not fail the run
    return result


def test_rejected_rows_above_max_rejected_share_post_an_alert(tmp_path, instance, emulator, monkeypatch):
    result = _rejecting_run(tmp_path, instance, emulator, max_rejected_share=0.05)
    monkeypatch.setenv(WEBSERVER_URL_ENV, "https://dagster.example.com/")
    sensor = check_alerts_sensor()
    with webhook_server() as (webhook, received):
        monkeypatch.setenv(ALERT_WEBHOOK_ENV, webhook)
        assert sensor(_context(instance, result.run_id, sensor, dg.DagsterEventType.RUN_SUCCESS)) is None
    [message] = received
    assert message["sync"] == "users" and message["run_id"] == result.run_id
    assert message["run_url"] == f"https://dagster.example.com/runs/{result.run_id}"
    [check] = message["checks"]
    assert check == {
        "asset": "users/mapped_attributes",
        "check": "rows_valid",
        "severity": "WARN",
        "num_failures": 2,
        "share": 0.1,
        "threshold": 0.05,
    }
    assert "users/mapped_attributes rows_valid: 2 rows rejected (10.0%, above 5.0%)" in message["text"]
    assert f"<{message['run_url']}|run {result.run_id[:8]}>" in message["text"]


def test_rejected_rows_within_max_rejected_share_post_nothing(tmp_path, instance, emulator, monkeypatch):
    result = _rejecting_run(tmp_path, instance, emulator, max_rejected_share=0.1)
    sensor = check_alerts_sensor()
    with webhook_server() as (webhook, received):
        monkeypatch.setenv(ALERT_WEBHOOK_ENV, webhook)
        skip = sensor(_context(instance, result.run_id, sensor, dg.DagsterEventType.RUN_SUCCESS))
    assert isinstance(skip, dg.SkipReason) and "within the spec's tolerance" in skip.skip_message
    assert not received


def test_the_check_sensor_finds_the_run_on_its_own(tmp_path, instance, emulator, monkeypatch):
    """The daemon's path: the sensor reads the instance's successful runs after its cursor."""
    monkeypatch.setenv(ALERT_WEBHOOK_ENV, "http://127.0.0.1:9/unused")
    defs = build_definitions(
        load_spec(write_spec(tmp_path / "syncs.yaml", [users_sync("sqlite:///x.db", emulator.url)]))
    )
    sensor = defs.resolve_sensor_def("contentstack_check_alerts")
    with webhook_server() as (webhook, received):
        monkeypatch.setenv(ALERT_WEBHOOK_ENV, webhook)
        first = sensor.evaluate_tick(dg.build_sensor_context(instance=instance, definitions=defs))
        result = _rejecting_run(tmp_path, instance, emulator)  # max_rejected_share 0: any rejected row
        sensor.evaluate_tick(
            dg.build_sensor_context(instance=instance, definitions=defs, cursor=first.cursor)
        )
    assert [message["run_id"] for message in received] == [result.run_id]


def test_a_failure_alert_carries_the_failed_share_of_its_checks(tmp_path, instance, monkeypatch):
    """Failed users above max_failed_share fail the run: the failure alert says so, with the check's counts."""
    url = write_sqlite_table(tmp_path / "src.db", GOOD)
    with run_emulator_in_thread(EmulatorConfig(project_uid=PROJECT_UID, faults={"500": 1.0})) as emu:
        spec = write_spec(tmp_path / "syncs.yaml", [users_sync(url, emu.url)])
        result = run_job(spec, "users_sync", instance, resources=fast_retries(max_retries=0))
    assert not result.success
    sensor = failure_alerts_sensor()
    with webhook_server() as (webhook, received):
        monkeypatch.setenv(ALERT_WEBHOOK_ENV, webhook)
        assert sensor(_context(instance, result.run_id, sensor, dg.DagsterEventType.RUN_FAILURE)) is None
    [message] = received
    assert message["error"].startswith("users__personalize_users: users: 18 of 18 users failed")
    [check] = message["checks"]
    assert check["check"] == "delivery_failures" and check["severity"] == "ERROR"
    assert (check["num_failures"], check["share"], check["threshold"]) == (18, 1.0, 0.05)
    assert "users/personalize_users delivery_failures: 18 failed (100.0%, above 5.0%)" in message["text"]


@pytest.mark.parametrize("job", ["users_dry_run", "users_sync"])
def test_a_dry_run_posts_no_check_alert(tmp_path, instance, emulator, monkeypatch, job):
    """A dry run's rows_valid warns as a sync's does, but a dry run delivers nothing: the check alert is for
    syncs, so a dry run posts nothing, whether tagged contentstack/dry_run=true (as every run of `N_dry_run`
    is) or launched on `N_sync` with the push's `dry_run: true` and no tag."""
    url = write_sqlite_table(tmp_path / "src.db", GOOD + BAD)
    spec = write_spec(tmp_path / "syncs.yaml", [users_sync(url, emulator.url, max_rejected_share=0.05)])
    config = (
        {"ops": {"users__personalize_users": {"config": {"dry_run": True}}}} if job == "users_sync" else None
    )
    result = run_job(spec, job, instance, run_config=config)
    assert result.success
    run = instance.get_run_by_id(result.run_id)
    assert (run.tags.get("contentstack/dry_run") == "true") is (job == "users_dry_run")
    sensor = check_alerts_sensor()
    with webhook_server() as (webhook, received):
        monkeypatch.setenv(ALERT_WEBHOOK_ENV, webhook)
        assert failed_checks(instance, run, {"users"})  # the check warned beyond its tolerance
        skip = sensor(_context(instance, result.run_id, sensor, dg.DagsterEventType.RUN_SUCCESS))
    assert isinstance(skip, dg.SkipReason) and "is a dry run" in skip.skip_message
    assert not received
