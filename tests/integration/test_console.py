"""A failed step prints a user error (a dg.Failure) on the console as its description, without a stack;
the stack stays in the event log. An unexpected exception keeps its stack on the console."""

from pathlib import Path

import dagster as dg
import pytest
import yaml

from contentstack_assets.definitions import build_definitions
from contentstack_assets.spec import load_spec
from contentstack_assets.syncs.partitions import range_request
from tests.helpers import (
    DEV_INSTANCE,
    PROJECT_ROOT,
    run_job,
    users_sync,
    write_spec,
    write_sqlite_table,
)


def test_a_user_error_prints_without_a_stack(tmp_path, instance, emulator, capsys):
    url = write_sqlite_table(tmp_path / "src.db", [dict(user_uid="u1", plan_name="free")])
    sync = users_sync(url, emulator.url)
    sync["source"]["table"] = "customers"  # no such table: the read fails with a dg.Failure
    result = run_job(write_spec(tmp_path / "syncs.yaml", [sync]), "users_sync", instance)
    assert not result.success
    console = capsys.readouterr().err
    [line] = [line for line in console.splitlines() if "STEP_FAILURE" in line]
    after = console[console.index(line) :]
    assert "table 'customers' does not exist" in after
    assert "Stack Trace" not in console and "Traceback" not in console
    [failure] = [event for event in result.all_events if event.event_type == dg.DagsterEventType.STEP_FAILURE]
    assert failure.step_failure_data.error.stack  # the event log keeps it


def test_a_range_run_requested_by_the_schedule_or_the_sensor_too(tmp_path, instance, emulator, capsys):
    """A partitioned job's default config does not reach a range run: the range request names the logger."""
    url = write_sqlite_table(tmp_path / "src.db", [dict(user_uid="u1", plan_name="free")])
    source = {"url": url, "table": "customers", "updated_at": "updated_at", "start_date": "2024-01-01"}
    spec = write_spec(tmp_path / "syncs.yaml", [users_sync(url, emulator.url, source=source)])
    request = range_request("k", "2024-01-01", "2024-01-03")
    result = run_job(
        spec,
        "users_sync",
        instance,
        run_config=request.run_config,
        partition_range=("2024-01-01", "2024-01-03"),
    )
    assert not result.success
    console = capsys.readouterr().err
    assert "table 'customers' does not exist" in console and "Stack Trace" not in console


def test_an_unexpected_error_keeps_its_stack(capsys):
    from contentstack_assets.syncs.console import console_logger

    @dg.op
    def broken():
        raise RuntimeError("a bug")

    @dg.job(logger_defs={"console": console_logger})
    def housekeeping():
        broken()

    assert not housekeeping.execute_in_process(raise_on_error=False).success
    assert "Stack Trace" in capsys.readouterr().err


def _instance_of(path: Path) -> dict:
    """The settings of an instance file that shape a run's console (tests run on a temporary instance)."""
    settings = yaml.safe_load(path.read_text())
    return {key: settings[key] for key in ("python_logs",) if key in settings}


@pytest.mark.parametrize("instance_file", [DEV_INSTANCE, PROJECT_ROOT / "deploy" / "dagster.yaml"])
def test_a_run_of_the_implicit_asset_job_prints_a_user_error_without_a_stack(
    tmp_path, emulator, capsys, instance_file
):
    """ "Materialize" in the asset graph and asset backfills run Dagster's implicit asset job, which takes no
    config of ours: the instance file shipped (the demo's, production's) cuts the stack there too."""
    url = write_sqlite_table(tmp_path / "src.db", [dict(user_uid="u1", plan_name="free")])
    sync = users_sync(url, emulator.url)
    sync["source"]["table"] = "customers"  # no such table: the read fails with a dg.Failure
    defs = build_definitions(load_spec(write_spec(tmp_path / "syncs.yaml", [sync])))
    job = defs.resolve_implicit_global_asset_job_def()
    assert job.name == "__ASSET_JOB"
    with dg.instance_for_test(overrides=_instance_of(instance_file)) as instance:
        result = job.execute_in_process(instance=instance, raise_on_error=False)
    assert not result.success
    console = capsys.readouterr().err
    [line] = [line for line in console.splitlines() if "STEP_FAILURE" in line]
    assert "table 'customers' does not exist" in console[console.index(line) :]
    assert "Stack Trace" not in console and "Traceback" not in console
    [failure] = [event for event in result.all_events if event.event_type == dg.DagsterEventType.STEP_FAILURE]
    assert failure.step_failure_data.error.stack  # the event log keeps it
