"""The code location: it loads from the demo spec, everything resolves, the lineage is right, a broken spec
fails whole; the instance config (dagster.yaml) loads; the blocking attribute-key check stops a push."""

import copy
import os
import shutil
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from contentstack_assets import definitions
from contentstack_assets.personalize.emulator import EmulatorConfig, run_emulator_in_thread
from contentstack_assets.spec import SpecError, load_spec
from tests.helpers import (
    DEV_INSTANCE,
    PROJECT_ROOT,
    PROJECT_UID,
    push_metadata,
    run_job,
    users_sync,
    write_spec,
    write_sqlite_table,
)

SOURCE, MAPPED, PUSH = (
    dg.AssetKey(["users", name]) for name in ("source_users", "mapped_attributes", "personalize_users")
)
DAGSTER = str(Path(sys.executable).with_name("dagster"))


@pytest.fixture
def demo_defs() -> dg.Definitions:
    """The code location exactly as `dagster dev` loads it: the module's @dg.definitions on the demo spec."""
    assert "CONTENTSTACK_SYNCS_FILE" not in os.environ
    return definitions.defs()


def test_the_code_location_loads_from_the_demo_spec(demo_defs):
    assert load_spec().path.resolve() == (PROJECT_ROOT / "syncs.yaml").resolve()
    repository = demo_defs.get_repository_def()
    jobs = [job.name for job in repository.get_all_jobs() if not job.name.startswith("__")]
    assert {"users_sync"} <= set(jobs)
    for name in jobs:
        assert demo_defs.resolve_job_def(name).name == name
    schedules = [schedule.name for schedule in repository.schedule_defs]
    assert "users_schedule" in schedules
    for name in schedules:
        schedule = demo_defs.resolve_schedule_def(name)
        # the user turns schedules on, except the reconciliation of a partitioned sync (its safety net)
        expected = (
            dg.DefaultScheduleStatus.RUNNING
            if name.endswith("_reconcile")
            else dg.DefaultScheduleStatus.STOPPED
        )
        assert schedule.job_name in jobs and schedule.default_status == expected
    sensors = [sensor.name for sensor in repository.sensor_defs]
    assert {"users_source_changed", "contentstack_failure_alerts"} <= set(sensors)
    for name in sensors:
        demo_defs.resolve_sensor_def(name)
    for sync in load_spec().syncs:
        assert f"{sync.name}_sync" in jobs and f"{sync.name}_source_changed" in sensors
        assert (f"{sync.name}_schedule" in schedules) == bool(sync.schedule)
    # every resource a job needs is bound
    for name in jobs:
        demo_defs.resolve_job_def(name)  # raises on a missing resource
    assert {"personalize", "sync_state", "contentstack_frames"} <= set(repository.get_top_level_resources())


def test_asset_keys_lineage_and_labels(demo_defs):
    graph = demo_defs.resolve_asset_graph()
    users_keys = {key for key in graph.get_all_asset_keys() if key.path[0] == "users"}
    assert users_keys == {SOURCE, MAPPED, PUSH}
    assert SOURCE in graph.get(MAPPED).parent_keys
    assert MAPPED in graph.get(PUSH).parent_keys
    assert graph.get(SOURCE).parent_keys == set()
    assert graph.get(PUSH).child_keys == set()
    assert [next(iter(graph.get(key).kinds)) for key in (SOURCE, MAPPED, PUSH)] == [
        "sqlalchemy",
        "pandas",
        "contentstack",
    ]
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        assert node.group_name == key.path[0], key
        assert len(node.kinds) == 1 and node.kinds <= {"sqlalchemy", "pandas", "contentstack"}, key
        assert node.description and "\n" not in node.description, key

    job = demo_defs.resolve_job_def("users_sync")
    assert set(job.asset_layer.executable_asset_keys) == {SOURCE, MAPPED, PUSH}
    assert graph.get(PUSH).pools == {"personalize_demo00000000000000000001"}  # the pool of the project


def test_the_asset_checks(demo_defs):
    graph = demo_defs.resolve_asset_graph()
    checks = {(key.asset_key, key.name) for key in graph.asset_check_keys}
    assert {(MAPPED, "rows_valid"), (MAPPED, "attribute_keys_exist"), (PUSH, "delivery_failures")} <= checks
    blocking = {spec.name: spec.blocking for spec in demo_defs.resolve_assets_def(MAPPED).check_specs}
    assert blocking == {"rows_valid": True, "attribute_keys_exist": True}


def test_dagster_loads_the_module(tmp_path):
    """`dagster definitions validate` loads the location the way the webserver and the daemon do."""
    completed = subprocess.run(
        [DAGSTER, "definitions", "validate", "-m", "contentstack_assets.definitions"],
        capture_output=True, text=True, timeout=120, cwd=PROJECT_ROOT,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert "Validation successful" in completed.stdout + completed.stderr


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            lambda sync: sync["attributes"]["plan"].update(type="strnig"),
            "sync 'users': key 'attributes.plan.type'",
        ),
        (lambda sync: sync["source"].pop("table"), "sync 'users': key 'source'"),
        (lambda sync: sync["match"].update(column="${NOT_SET_ANYWHERE}"), "NOT_SET_ANYWHERE is not set"),
        (lambda sync: sync.update(schedule="every hour"), "sync 'users': key 'schedule'"),
        (lambda sync: sync.update(colour="blue"), "sync 'users': key 'colour': unknown key"),
    ],
)
def test_a_broken_spec_names_file_sync_and_key(tmp_path, monkeypatch, change, expected):
    sync = copy.deepcopy(users_sync("sqlite:///src.db", "http://127.0.0.1:9"))
    sync["source"].update(updated_at="updated_at", start_date="2024-01-01")
    change(sync)
    spec = write_spec(
        tmp_path / "broken.yaml", [sync, users_sync("sqlite:///src.db", "http://127.0.0.1:9", name="fine")]
    )
    monkeypatch.setenv("CONTENTSTACK_SYNCS_FILE", str(spec))
    with pytest.raises(SpecError) as raised:
        definitions.defs()
    assert str(spec) in str(raised.value) and expected in str(raised.value)


def test_a_broken_spec_fails_the_whole_code_location(tmp_path):
    sync = copy.deepcopy(users_sync("sqlite:///src.db", "http://127.0.0.1:9"))
    sync["attributes"]["plan"]["type"] = "strnig"
    spec = write_spec(
        tmp_path / "broken.yaml", [users_sync("sqlite:///src.db", "http://127.0.0.1:9", name="fine"), sync]
    )
    completed = subprocess.run(
        [DAGSTER, "definitions", "validate", "-m", "contentstack_assets.definitions"],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
        env={**os.environ, "CONTENTSTACK_SYNCS_FILE": str(spec)},
    )  # fmt: skip
    output = completed.stdout + completed.stderr
    assert completed.returncode != 0
    assert (
        "SpecError" in output and "sync 'users': key 'attributes.plan.type'" in output and str(spec) in output
    )


# -- dagster.yaml ------------------------------------------------------------------------------------
@pytest.fixture
def home_instance(tmp_path) -> dg.DagsterInstance:
    """An instance from the repository's dagster.yaml in a fresh DAGSTER_HOME (set by conftest)."""
    home = Path(os.environ["DAGSTER_HOME"])
    shutil.copy(DEV_INSTANCE, home / "dagster.yaml")
    with dg.DagsterInstance.get() as instance:
        yield instance


def test_dagster_yaml_is_the_embedded_default(home_instance):
    from dagster._core.run_coordinator import QueuedRunCoordinator
    from dagster._core.storage.event_log import SqliteEventLogStorage
    from dagster._core.storage.runs import SqliteRunStorage
    from dagster._core.storage.schedules import SqliteScheduleStorage

    home = Path(os.environ["DAGSTER_HOME"])
    instance = home_instance
    assert isinstance(instance.run_storage, SqliteRunStorage)
    assert isinstance(instance.event_log_storage, SqliteEventLogStorage)
    assert isinstance(instance.schedule_storage, SqliteScheduleStorage)
    assert Path(instance.root_directory) == home
    assert isinstance(instance.run_coordinator, QueuedRunCoordinator)
    assert instance.telemetry_enabled is False
    concurrency = instance.get_concurrency_config()
    assert concurrency.pool_config.default_pool_limit == 1
    assert concurrency.pool_config.pool_granularity.value == "op"
    queue = concurrency.run_queue_config
    assert queue.max_concurrent_runs == 4
    assert queue.tag_concurrency_limits == [
        {"key": "contentstack/sync", "value": {"applyLimitPerUniqueValue": True}, "limit": 1}
    ]
    assert instance.event_log_storage.supports_global_concurrency_limits  # pools are enforced on SQLite


def test_the_push_runs_in_its_project_pool_limited_to_one(tmp_path, home_instance, emulator):
    url = write_sqlite_table(tmp_path / "src.db", [dict(user_uid="u1", plan_name="free")])
    spec = write_spec(tmp_path / "syncs.yaml", [users_sync(url, emulator.url)])
    pool = load_spec(spec).syncs[0].destination.pool
    assert pool == f"personalize_{PROJECT_UID}"
    result = run_job(spec, "users_sync", home_instance)
    assert result.success
    # the step claimed a slot of its pool, which the instance created with dagster.yaml's default limit
    info = home_instance.event_log_storage.get_concurrency_info(pool)
    assert info.slot_count == 1 and info.claimed_slots == []
    # a second project's pool is separate: syncs to different projects do not wait for each other
    assert home_instance.event_log_storage.get_concurrency_keys() == {pool}


# -- the attribute-key check ---------------------------------------------------------------------------
def _check(result: dg.ExecuteInProcessResult, name: str) -> dg.AssetCheckEvaluation:
    [check] = [c for c in result.get_asset_check_evaluations() if c.check_name == name]
    return check


def _with_management(url: str, edge_url: str, token: str = "mgmt-token") -> dict:
    sync = users_sync(url, edge_url)
    sync["destination"].update(management_url=edge_url, management_token=token)
    return sync


ROWS = [dict(user_uid=f"u{index}", plan_name="free", order_count=index) for index in range(5)]


def test_a_missing_attribute_key_stops_the_sync_before_any_user_is_sent(tmp_path, instance):
    url = write_sqlite_table(tmp_path / "src.db", ROWS)
    config = EmulatorConfig(
        project_uid=PROJECT_UID, management_token="mgmt-token", attributes=["plan", "ltv", "vip"]
    )
    with run_emulator_in_thread(config) as emu:
        spec = write_spec(tmp_path / "syncs.yaml", [_with_management(url, emu.url)])
        result = run_job(spec, "users_sync", instance)
        assert not result.success
        check = _check(result, "attribute_keys_exist")
        assert not check.passed and check.severity == dg.AssetCheckSeverity.ERROR
        assert check.metadata["missing_keys"].value == ["birthday", "orders", "signup_at"]
        assert "birthday, orders, signup_at" in check.description
        assert not result.is_node_success("users__personalize_users")
        stats = emu.stats()
        assert stats["by_endpoint"].get("GET /attributes") == 1
        assert stats["applied"]["patch"] == 0 and "PATCH /user-attributes" not in stats["by_endpoint"]


@pytest.mark.parametrize("shards", [1, 2], ids=["one_push", "sharded_push"])
def test_the_push_alone_with_a_missing_key_sends_nothing(tmp_path, instance, shards):
    """mapped_attributes is stored before its blocking check fails; a later run of the push alone (the UI's
    "Materialize selected") loads the stored frame without that check, and the push's own guard stops it."""
    url = write_sqlite_table(tmp_path / "src.db", ROWS)
    config = EmulatorConfig(
        project_uid=PROJECT_UID, management_token="mgmt-token", attributes=["plan", "ltv", "vip"]
    )
    with run_emulator_in_thread(config) as emu:
        spec = write_spec(tmp_path / "syncs.yaml", [{**_with_management(url, emu.url), "shards": shards}])
        first = run_job(spec, "users_sync", instance)  # the check fails, the push is skipped, the frame stays
        assert not first.is_node_success("users__personalize_users")
        assert not _check(first, "attribute_keys_exist").passed

        defs = definitions.build_definitions(load_spec(spec))
        push_only = dg.materialize(
            list(defs.assets),
            selection=[PUSH],
            instance=instance,
            resources=defs.resources,
            raise_on_error=False,
        )
        assert not push_only.success
        started = {e.step_key for e in push_only.all_events if e.event_type == dg.DagsterEventType.STEP_START}
        assert "users__mapped_attributes" not in started  # the stored frame, unchecked in this run
        failures = push_only.get_step_failure_events()
        assert failures and all(
            f.step_failure_data.user_failure_data.description
            == f"missing in project {PROJECT_UID}: birthday, orders, signup_at: create them in Personalize "
            "(Attributes) with these exact keys, or fix the spec"
            for f in failures
        )
        assert failures[0].step_failure_data.user_failure_data.metadata["missing_keys"].value == [
            "birthday",
            "orders",
            "signup_at",
        ]
        stats = emu.stats()
        assert stats["applied"]["patch"] == 0 and "PATCH /user-attributes" not in stats["by_endpoint"]


def test_the_attribute_check_passes_when_every_key_exists(tmp_path, instance):
    url = write_sqlite_table(tmp_path / "src.db", ROWS)
    keys = ["plan", "ltv", "orders", "vip", "signup_at", "birthday", "unused"]
    with run_emulator_in_thread(
        EmulatorConfig(project_uid=PROJECT_UID, management_token="mgmt-token", attributes=keys)
    ) as emu:
        result = run_job(
            write_spec(tmp_path / "syncs.yaml", [_with_management(url, emu.url)]), "users_sync", instance
        )
        assert result.success
        check = _check(result, "attribute_keys_exist")
        assert check.passed and check.metadata["checked"].value is True
        assert push_metadata(result)["users_delivered"] == 5 and len(emu.users()) == 5


def test_the_attribute_check_without_a_token_and_with_a_wrong_one(tmp_path, instance):
    url = write_sqlite_table(tmp_path / "src.db", ROWS)
    config = EmulatorConfig(
        project_uid=PROJECT_UID, management_token="mgmt-token", attributes=["plan", "orders"]
    )
    with run_emulator_in_thread(config) as emu:
        # no token: keys are not checked (and the check says so); the emulator still refuses unknown keys
        result = run_job(
            write_spec(tmp_path / "syncs.yaml", [users_sync(url, emu.url)]), "users_sync", instance
        )
        check = _check(result, "attribute_keys_exist")
        assert check.passed and check.metadata["checked"].value is False
        emu.reset()

        spec = write_spec(tmp_path / "syncs.yaml", [_with_management(url, emu.url, token="wrong")])
        result = run_job(spec, "users_sync", instance)
        assert not result.success
        failure = next(e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE)
        assert "refused the management token (HTTP 401)" in failure.step_failure_data.error.message
        assert "wrong" not in failure.step_failure_data.error.message.replace("wrong, expired", "")
        assert emu.stats()["applied"]["patch"] == 0
