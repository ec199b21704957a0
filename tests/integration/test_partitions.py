"""Daily partitions on `updated_at`: one run per backfill range, reading exactly the users of that range."""

import datetime as dt
import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from contentstack_assets.definitions import build_definitions
from contentstack_assets.personalize.emulator import EmulatorConfig, run_emulator_in_thread
from contentstack_assets.spec import SourceSpec, load_spec
from contentstack_assets.syncs.partitions import backfill_policy, daily_partitions, scope_of, window_of
from tests.helpers import (
    PROJECT_UID,
    push_metadata,
    push_metadata_by_day,
    run_job,
    users_sync,
    write_spec,
    write_sqlite_table,
)

KEYS = [dg.AssetKey(["users", name]) for name in ("source_users", "mapped_attributes", "personalize_users")]


def _user(uid: str, updated_at: str | None, plan: str = "free") -> dict:
    return dict(user_uid=uid, plan_name=plan, order_count=1, updated_at=updated_at)


# one user a day from 2024-01-01 to 2024-01-10 at 10:00, plus one with no updated_at (in no partition)
ROWS = [_user(f"d{day:02d}", f"2024-01-{day:02d} 10:00:00") for day in range(1, 11)] + [
    _user("undated", None)
]


def _partitioned(url: str, edge_url: str, **overrides) -> dict:
    source = {"url": url, "table": "users", "updated_at": "updated_at", "start_date": "2024-01-01"}
    return users_sync(url, edge_url, source=source, **overrides)


def _steps_succeeded(result: dg.ExecuteInProcessResult) -> list[str]:
    return [
        event.step_key for event in result.all_events if event.event_type == dg.DagsterEventType.STEP_SUCCESS
    ]


def test_partitions_definition_and_backfill_policy():
    source = SourceSpec(url="sqlite:///x.db", table="users", updated_at="updated_at", start_date="2024-01-01")
    partitions = daily_partitions(source)
    assert isinstance(partitions, dg.DailyPartitionsDefinition)
    assert partitions.timezone == "UTC"
    assert partitions.get_first_partition_key() == "2024-01-01"
    # today's (UTC) partition exists, so a schedule can sync what changed since midnight
    now = dt.datetime(2024, 3, 5, 13, 30, tzinfo=dt.UTC)
    with dg.partition_loading_context(effective_dt=now):
        assert partitions.get_last_partition_key() == "2024-03-05"
    policy = backfill_policy(source)
    assert policy == dg.BackfillPolicy.single_run() and policy.max_partitions_per_run is None

    whole = SourceSpec(url="sqlite:///x.db", table="users")
    assert daily_partitions(whole) is None and backfill_policy(whole) is None


def test_the_three_assets_and_the_job_share_the_partitions(tmp_path):
    spec = write_spec(tmp_path / "syncs.yaml", [_partitioned("sqlite:///src.db", "http://127.0.0.1:1")])
    defs = build_definitions(load_spec(spec))
    graph = defs.resolve_asset_graph()
    partitions = {graph.get(key).partitions_def for key in KEYS}
    assert len(partitions) == 1 and isinstance(next(iter(partitions)), dg.DailyPartitionsDefinition)
    assert all(graph.get(key).backfill_policy == dg.BackfillPolicy.single_run() for key in KEYS)
    assert defs.resolve_job_def("users_sync").partitions_def == next(iter(partitions))

    spec = write_spec(tmp_path / "syncs.yaml", [users_sync("sqlite:///src.db", "http://127.0.0.1:1")])
    defs = build_definitions(load_spec(spec))
    graph = defs.resolve_asset_graph()
    assert all(
        graph.get(key).partitions_def is None and graph.get(key).backfill_policy is None for key in KEYS
    )
    assert defs.resolve_job_def("users_sync").partitions_def is None


def test_a_backfill_range_is_one_run_over_exactly_that_range(tmp_path, emulator, instance):
    url = write_sqlite_table(tmp_path / "src.db", ROWS)
    spec = write_spec(tmp_path / "syncs.yaml", [_partitioned(url, emulator.url)])

    result = run_job(spec, "users_sync", instance, partition_range=("2024-01-02", "2024-01-04"))
    assert result.success
    # one run: each step once (one read, one plan, one delivery), a materialization per day of the range
    assert _steps_succeeded(result) == [
        "users__source_users",
        "users__mapped_attributes",
        "users__personalize_users",
    ]
    for key in KEYS:
        days = {
            event.event_specific_data.materialization.partition
            for event in result.get_asset_materialization_events()
            if event.event_specific_data.materialization.asset_key == key
        }
        assert days == {"2024-01-02", "2024-01-03", "2024-01-04"}, key
    assert sorted(emulator.users()) == ["d02", "d03", "d04"]
    metadata = push_metadata(result)
    assert metadata["scope"] == "2024-01-02...2024-01-04"
    assert metadata["rows_read"] == 3 and metadata["users_delivered"] == 3 and metadata["requests_sent"] == 3

    # an overlapping range: d03 changed, d04 did not, d05-d06 are new; d02 is outside and untouched
    rows = [dict(row) for row in ROWS]
    rows[2]["plan_name"] = "pro"
    write_sqlite_table(tmp_path / "src.db", rows)
    result = run_job(spec, "users_sync", instance, partition_range=("2024-01-03", "2024-01-06"))
    assert result.success
    metadata = push_metadata(result)
    assert metadata["scope"] == "2024-01-03...2024-01-06"
    assert metadata["rows_read"] == 4
    assert metadata["users_delivered"] == 3 and metadata["users_unchanged"] == 1
    assert emulator.stats()["patch_counts"] == {"d02": 1, "d03": 2, "d04": 1, "d05": 1, "d06": 1}
    assert emulator.user("d03")["attributes"] == {"plan": "pro", "orders": 1}


def test_each_day_of_a_run_over_several_days_carries_its_own_counts(tmp_path, emulator, instance):
    rows = [
        _user("a1", "2024-01-02 08:00:00"),
        _user("a2", "2024-01-02 23:59:59"),
        _user("b1", "2024-01-03 00:00:00"),
        {**_user("bad", "2024-01-03 12:00:00"), "order_count": "many"},  # rejected on its day
    ]  # nothing on 2024-01-04
    url = write_sqlite_table(tmp_path / "src.db", rows)
    spec = write_spec(tmp_path / "syncs.yaml", [_partitioned(url, emulator.url)])
    days = ("2024-01-02", "2024-01-03", "2024-01-04")

    def figures(result, key: str) -> list:
        by_day = push_metadata_by_day(result)
        assert sorted(by_day) == list(days)
        return [by_day[day][key] for day in days]

    first = run_job(spec, "users_sync", instance, partition_range=(days[0], days[-1]))
    assert first.success
    # each day its own rows (those whose updated_at falls in it), not the run's totals three times over
    assert figures(first, "rows_read") == [2, 2, 0]
    assert figures(first, "rows_rejected") == [0, 1, 0]
    assert figures(first, "users_changed") == [2, 1, 0]
    assert figures(first, "users_delivered") == [2, 1, 0]
    assert figures(first, "requests_sent") == [2, 1, 0]
    assert figures(first, "users_failed") == [0, 0, 0]
    # the run's totals once more on every day, under names of their own
    assert figures(first, "run_users_changed") == [3, 3, 3] and figures(first, "run_days") == [3, 3, 3]
    assert figures(first, "scope") == ["2024-01-02...2024-01-04"] * 3
    run_duration = figures(first, "run_duration_s")[0]
    assert sum(figures(first, "duration_s")) == pytest.approx(run_duration, abs=0.01)
    # what push_metadata reads: the totals, checked there to be the sum of the days
    assert push_metadata(first)["users_changed"] == 3 and push_metadata(first)["rows_read"] == 4

    rows[0]["plan_name"] = "pro"  # a1 changed; a2 and b1 did not
    write_sqlite_table(tmp_path / "src.db", rows)
    second = run_job(spec, "users_sync", instance, partition_range=(days[0], days[-1]))
    assert figures(second, "users_changed") == [1, 0, 0]
    assert figures(second, "users_unchanged") == [1, 1, 0]


def test_a_backfill_of_every_dated_row_leaves_out_rows_without_updated_at(tmp_path, emulator, instance):
    url = write_sqlite_table(tmp_path / "src.db", ROWS)
    spec = write_spec(tmp_path / "syncs.yaml", [_partitioned(url, emulator.url)])
    # a month, not start..today: Dagster writes two events per asset and day of a range (~20 ms each on SQLite)
    result = run_job(spec, "users_sync", instance, partition_range=("2024-01-01", "2024-01-31"))
    assert result.success
    assert push_metadata(result)["rows_read"] == 10
    assert "undated" not in emulator.users() and len(emulator.users()) == 10


def test_a_single_partition_run(tmp_path, emulator, instance):
    url = write_sqlite_table(tmp_path / "src.db", ROWS)
    spec = write_spec(tmp_path / "syncs.yaml", [_partitioned(url, emulator.url)])
    job = build_definitions(load_spec(spec)).resolve_job_def("users_sync")
    result = job.execute_in_process(instance=instance, partition_key="2024-01-07")
    assert result.success
    assert push_metadata(result)["scope"] == "2024-01-07"
    assert sorted(emulator.users()) == ["d07"]


def test_a_run_over_some_days_stops_when_the_whole_source_was_emptied(tmp_path, emulator, instance):
    """A day may rightly hold no rows, the whole source may not: a partitioned run counts it, and stops when
    it fell below `min_source_fraction` of the count the last run recorded."""
    url = write_sqlite_table(tmp_path / "src.db", ROWS)
    spec = write_spec(tmp_path / "syncs.yaml", [_partitioned(url, emulator.url)])
    assert run_job(spec, "users_sync", instance, partition_range=("2024-01-01", "2024-01-02")).success
    # the day after holds one user, the source still 11: a day is not the source
    assert run_job(spec, "users_sync", instance, partition_range=("2024-01-03", "2024-01-03")).success

    write_sqlite_table(tmp_path / "src.db", ROWS[:3])  # a broken load: 3 rows of 11 left
    result = run_job(spec, "users_sync", instance, partition_range=("2024-01-03", "2024-01-03"))
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    assert (
        "the source holds 3 rows where it held 11 at the last run" in failure.step_failure_data.error.message
    )
    assert emulator.stats()["patch_counts"] == {"d01": 1, "d02": 1, "d03": 1}  # nothing sent since

    config = {"ops": {"users__personalize_users": {"config": {"allow_source_shrink": True}}}}
    assert run_job(
        spec, "users_sync", instance, partition_range=("2024-01-03", "2024-01-03"), run_config=config
    ).success
    # the waived run recorded the count it found: the next run compares with 3, not with 11 again
    assert run_job(spec, "users_sync", instance, partition_range=("2024-01-03", "2024-01-03")).success


def test_an_unpartitioned_sync_reads_the_whole_source(tmp_path, emulator, instance):
    url = write_sqlite_table(tmp_path / "src.db", ROWS)
    spec = write_spec(tmp_path / "syncs.yaml", [users_sync(url, emulator.url)])
    result = run_job(spec, "users_sync", instance)
    assert result.success
    metadata = push_metadata(result)
    assert metadata["scope"] == "all" and metadata["rows_read"] == 11
    assert len(emulator.users()) == 11


def test_rows_at_midnight_belong_to_their_own_day(tmp_path, emulator, instance):
    rows = [
        _user("midnight", "2024-01-05 00:00:00"),
        _user("date_only", "2024-01-05"),
        _user("iso", "2024-01-05T00:00:00Z"),
    ]
    url = write_sqlite_table(tmp_path / "src.db", rows)
    spec = write_spec(tmp_path / "syncs.yaml", [_partitioned(url, emulator.url)])
    result = run_job(spec, "users_sync", instance, partition_range=("2024-01-04", "2024-01-04"))
    assert result.success and push_metadata(result)["rows_read"] == 0
    result = run_job(spec, "users_sync", instance, partition_range=("2024-01-05", "2024-01-05"))
    assert push_metadata(result)["rows_read"] == 3


def test_window_and_scope_of_a_day_a_range_and_no_partitions():
    partitions = dg.DailyPartitionsDefinition(start_date="2024-01-01", timezone="UTC")
    seen = {}

    @dg.asset(partitions_def=partitions, backfill_policy=dg.BackfillPolicy.single_run())
    def probe(context: dg.AssetExecutionContext) -> None:
        seen[context.run.run_id] = (scope_of(context), window_of(context))

    @dg.asset
    def whole(context: dg.AssetExecutionContext) -> None:
        seen[context.run.run_id] = (scope_of(context), window_of(context))

    with dg.instance_for_test() as instance:
        day = dg.materialize([probe], instance=instance, partition_key="2024-01-05")
        span = dg.materialize(
            [probe],
            instance=instance,
            tags={
                "dagster/asset_partition_range_start": "2024-01-05",
                "dagster/asset_partition_range_end": "2024-01-09",
            },
        )
        unpartitioned = dg.materialize([whole], instance=instance)
    utc = dt.UTC
    scope, window = seen[day.run_id]
    assert scope == "2024-01-05"
    assert (window.start, window.end) == (
        dt.datetime(2024, 1, 5, tzinfo=utc),
        dt.datetime(2024, 1, 6, tzinfo=utc),
    )
    scope, window = seen[span.run_id]
    assert scope == "2024-01-05...2024-01-09"
    assert (window.start, window.end) == (
        dt.datetime(2024, 1, 5, tzinfo=utc),
        dt.datetime(2024, 1, 10, tzinfo=utc),
    )
    assert seen[unpartitioned.run_id] == ("all", None)


@pytest.mark.slow
def test_the_cli_partition_range_backfill(tmp_path):
    """The README's command: `dagster asset materialize --select 'key:users/*' --partition-range D1...D2`."""
    url = write_sqlite_table(tmp_path / "src.db", ROWS)
    with run_emulator_in_thread(EmulatorConfig(project_uid=PROJECT_UID)) as emu:
        spec = write_spec(tmp_path / "syncs.yaml", [_partitioned(url, emu.url)])
        env = {**os.environ, "CONTENTSTACK_SYNCS_FILE": str(spec)}
        command = [
            str(Path(sys.executable).with_name("dagster")),
            "asset", "materialize",
            "--select", "key:users/*",
            "--partition-range", "2024-01-03...2024-01-08",
            "-m", "contentstack_assets.definitions",
        ]  # fmt: skip
        completed = subprocess.run(
            command, env=env, capture_output=True, text=True, timeout=120, cwd=tmp_path
        )
        assert completed.returncode == 0, completed.stderr[-3000:]
        assert "RUN_SUCCESS" in completed.stderr
        assert sorted(emu.users()) == ["d03", "d04", "d05", "d06", "d07", "d08"]
        # one run for the whole range: one read
        assert completed.stderr.count('Started execution of step "users__source_users"') == 1


@pytest.mark.parametrize("scale", [1, 1000], ids=["epoch_seconds", "epoch_milliseconds"])
def test_an_epoch_number_updated_at_is_read_by_its_days_and_by_the_sensor(
    tmp_path, emulator, instance, scale
):
    """SQLite sorts every number before every text: an epoch column compared with a date text read nothing."""
    rows = [_user(f"e{i}", (1709287200 + i) * scale) for i in range(5)]  # 2024-03-01 10:00:0i UTC
    url = write_sqlite_table(tmp_path / "src.db", rows)
    spec = write_spec(tmp_path / "syncs.yaml", [_partitioned(url, emulator.url)])

    result = run_job(spec, "users_sync", instance, partition_range=("2024-02-29", "2024-02-29"))
    assert result.success and push_metadata(result)["rows_read"] == 0
    result = run_job(spec, "users_sync", instance, partition_range=("2024-03-01", "2024-03-01"))
    assert result.success and push_metadata(result)["rows_read"] == 5
    assert sorted(emulator.users()) == [f"e{i}" for i in range(5)]
    result = run_job(spec, "users_sync", instance, partition_range=("2024-01-01", "2024-03-31"))
    assert result.success and push_metadata(result)["rows_read"] == 5

    # the sensor's range query finds the day of the rows, and the run it asks for reads them
    defs = build_definitions(load_spec(spec))
    tick = defs.resolve_sensor_def("users_source_changed").evaluate_tick(
        dg.build_sensor_context(instance=instance, definitions=defs)
    )
    [request] = tick.run_requests
    assert request.partition_key == "2024-03-01"
    # a row the next day: the range starts at the watermark's row (at or above it) and ends on its day
    rows.append(_user("e5", (1709287200 + 86400) * scale))
    write_sqlite_table(tmp_path / "src.db", rows)
    again = defs.resolve_sensor_def("users_source_changed").evaluate_tick(
        dg.build_sensor_context(instance=instance, definitions=defs, cursor=tick.cursor)
    )
    [request] = again.run_requests
    assert (
        request.tags["dagster/asset_partition_range_start"],
        request.tags["dagster/asset_partition_range_end"],
    ) == (
        "2024-03-01",
        "2024-03-02",
    )
    result = run_job(spec, "users_sync", instance, partition_range=("2024-03-01", "2024-03-02"))
    assert result.success and push_metadata(result)["rows_read"] == 6
