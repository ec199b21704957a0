"""The window logic of the schedule and the source-change sensor, called directly (no Dagster instance): the
days a scheduled run covers, which day digests differ from what was delivered, how changed days group into
runs, the sensor's cursor, and which runs belong to a sync."""

from __future__ import annotations

import datetime as dt

import dagster as dg
import pytest

# the schedule's and the sensor's pure parts, called directly
from contentstack_assets.syncs.runs import (
    DRY_RUN_TAG,
    SYNC_TAG,
    is_dry_run,
    recorded_by_dry_run,
    syncs_of_run,
)
from contentstack_assets.syncs.schedules import scheduled_days
from contentstack_assets.syncs.sensors import _blocks, _changed, _dump, _pushed_in, _read_cursor

UTC = dt.UTC
DAYS = dg.DailyPartitionsDefinition(start_date="2024-01-01", timezone="UTC", end_offset=1)
JANUARY = dg.DailyPartitionsDefinition(start_date="2024-01-01", end_date="2024-02-01")  # last: 2024-01-31


def _at(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text)


# -- scheduled_days ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("tick", "since", "days"),
    [
        # nothing delivered yet: every day from the first partition
        ("2024-03-10T12:00:00+00:00", None, ("2024-01-01", "2024-03-10")),
        # from the day of the last delivered read, less a day of look-back
        ("2024-03-10T12:00:00+00:00", "2024-03-10T05:00:00+00:00", ("2024-03-09", "2024-03-10")),
        ("2024-03-10T12:00:00+00:00", "2024-03-01T00:00:00+00:00", ("2024-02-29", "2024-03-10")),
        # a read before the first partition: from the first partition
        ("2024-03-10T12:00:00+00:00", "2023-06-01T00:00:00+00:00", ("2024-01-01", "2024-03-10")),
        # a read "after" the tick (a clock ahead): never a range that ends before it starts
        ("2024-03-10T12:00:00+00:00", "2024-03-20T00:00:00+00:00", ("2024-03-10", "2024-03-10")),
        # offsets count in UTC: 23:30 at -05:00 is the next UTC day; 01:00 at +02:00 the day before
        ("2024-03-10T23:30:00-05:00", None, ("2024-01-01", "2024-03-11")),
        ("2024-03-10T12:00:00+00:00", "2024-03-10T01:00:00+02:00", ("2024-03-08", "2024-03-10")),
    ],
)
def test_the_days_a_scheduled_run_covers(tick, since, days):
    assert scheduled_days(DAYS, _at(tick), _at(since) if since else None) == days


def test_no_days_before_the_first_partition():
    assert scheduled_days(DAYS, _at("2023-12-31T23:59:00+00:00"), None) is None
    assert scheduled_days(DAYS, _at("2024-01-01T00:00:00+00:00"), None) == ("2024-01-01", "2024-01-01")


# -- _changed: day digests against what was delivered ------------------------------------------------
def test_unpartitioned_the_probe_is_compared_whole():
    assert _changed({"": "rows=3"}, {"": "rows=3"}, None) == {}
    assert _changed({"": "rows=3"}, {"": "rows=4"}, None) == {"": "rows=4"}
    assert _changed({}, {"": "rows=0"}, None) == {"": "rows=0"}


def test_days_whose_digest_differs_are_changed_and_days_now_empty_are_none():
    confirmed = {"2024-01-02": "aa", "2024-01-03": "bb", "2024-01-04": "cc"}
    current = {"2024-01-02": "aa", "2024-01-03": "b2", "2024-01-05": "dd"}
    assert _changed(confirmed, current, JANUARY) == {
        "2024-01-03": "b2",
        "2024-01-04": None,
        "2024-01-05": "dd",
    }


def test_days_outside_the_partitions_are_left_for_later():
    """A day before the first partition is never read; one after the last waits for its partition."""
    current = {"2023-12-31": "old", "2024-01-01": "first", "2024-01-31": "last", "2024-02-01": "future"}
    assert _changed({}, current, JANUARY) == {"2024-01-01": "first", "2024-01-31": "last"}
    assert _changed({"2023-12-30": "gone", "2024-02-02": "gone"}, {}, JANUARY) == {}


# -- _blocks: changed days grouped into runs ---------------------------------------------------------
@pytest.mark.parametrize(
    ("days", "blocks"),
    [
        ([], []),
        (["2024-01-05"], [["2024-01-05"]]),
        # a week apart: one run; eight days apart: two
        (["2024-01-01", "2024-01-08"], [["2024-01-01", "2024-01-08"]]),
        (["2024-01-01", "2024-01-09"], [["2024-01-01"], ["2024-01-09"]]),
        # each day within the gap of the one before joins its block, however long the block grows
        (
            ["2024-01-01", "2024-01-06", "2024-01-11", "2024-01-16"],
            [["2024-01-01", "2024-01-06", "2024-01-11", "2024-01-16"]],
        ),
        # a late row three years back is a run of its own, not a read of three years
        (["2021-03-02", "2024-02-28", "2024-03-01"], [["2021-03-02"], ["2024-02-28", "2024-03-01"]]),
        # across a month end in a leap year: 2024-02-25 -> 2024-03-03 is 7 days
        (["2024-02-25", "2024-03-03", "2024-03-11"], [["2024-02-25", "2024-03-03"], ["2024-03-11"]]),
    ],
)
def test_changed_days_are_grouped_into_runs_of_nearby_days(days, blocks):
    assert _blocks(days) == blocks


# -- the cursor ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "cursor", [None, "", "not json", "[1, 2]", '{"confirmed": {"2024-01-01": "aa"}}', '{"v": 1}']
)
def test_a_missing_or_older_cursor_starts_afresh(cursor):
    assert _read_cursor(cursor) == {"v": 2, "confirmed": {}, "pending": {}, "n": 0}


def test_a_cursor_round_trips_and_its_text_does_not_depend_on_insertion_order():
    state = {
        "v": 2,
        "confirmed": {"2024-01-02": "bb", "2024-01-01": "aa"},
        "pending": {"3-x": {"2024-01-05": None}},
        "n": 3,
    }
    reordered = {
        "n": 3,
        "pending": state["pending"],
        "confirmed": {"2024-01-01": "aa", "2024-01-02": "bb"},
        "v": 2,
    }
    assert _read_cursor(_dump(state)) == state
    assert _dump(state) == _dump(reordered)


# -- which runs count --------------------------------------------------------------------------------
def test_a_dry_run_is_told_by_its_tag_and_never_counts_as_a_delivery():
    push_key = dg.AssetKey(["users", "personalize_users"])
    dry = dg.DagsterRun(job_name="users_dry_run", tags={SYNC_TAG: "users", DRY_RUN_TAG: "true"})
    assert is_dry_run(dry) and not is_dry_run(dg.DagsterRun(job_name="users_sync", tags={SYNC_TAG: "users"}))
    with dg.instance_for_test() as instance:
        succeeded = dry.with_status(dg.DagsterRunStatus.SUCCESS)
        assert not _pushed_in(instance, succeeded, push_key)  # green, but it delivered nothing


@pytest.mark.parametrize(
    ("metadata", "dry"),
    [({"dry_run": True}, True), ({"dry_run": False}, False), ({"users_delivered": 3}, False)],
)
def test_a_materialization_of_an_older_version_tells_a_dry_run_by_its_metadata(metadata, dry):
    # dry runs of earlier versions materialized the push with `dry_run: true`: those never count either
    materialization = dg.AssetMaterialization(asset_key="users/personalize_users", metadata=metadata)
    assert recorded_by_dry_run(materialization) is dry
    assert recorded_by_dry_run(None) is False


def test_the_syncs_of_a_run_come_from_its_tag_its_job_name_and_its_assets():
    def run(job_name: str, tags: dict | None = None, assets=None) -> dg.DagsterRun:
        return dg.DagsterRun(job_name=job_name, tags=tags or {}, asset_selection=assets)

    assert syncs_of_run(run("crm_sync")) == {"crm"}
    assert syncs_of_run(run("__ASSET_JOB", {SYNC_TAG: "crm"})) == {"crm"}
    keys = {
        dg.AssetKey(["acme", "crm", "personalize_users"]),
        dg.AssetKey(["events", "source_events"]),
        dg.AssetKey("x"),
    }
    assert syncs_of_run(run("__ASSET_JOB", assets=keys)) == {"crm", "events"}
    assert syncs_of_run(run("nightly_dbt")) == set()
