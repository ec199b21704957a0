"""Daily partitions on the source's time column, in one place for every kind of sync.

A run may target one day (`dagster/partition` tag) or a range of days (the
`dagster/asset_partition_range_start/end` tags of a single-run backfill); both are the same code path:
one time window `[first day 00:00, day after the last 00:00)` in UTC.
"""

import datetime as dt

import dagster as dg

from contentstack_assets.engine.source import Window
from contentstack_assets.spec import SourceSpec
from contentstack_assets.syncs.console import CONSOLE_RUN_CONFIG

RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"


def daily_partitions(source: SourceSpec) -> dg.DailyPartitionsDefinition | None:
    """UTC days from `start_date`, today included (end_offset=1) so a schedule can sync today's changes."""
    if not source.partition_column:
        return None
    return dg.DailyPartitionsDefinition(
        start_date=source.start_date.isoformat(), timezone="UTC", end_offset=1
    )


def backfill_policy(source: SourceSpec) -> dg.BackfillPolicy | None:
    # a backfill of any range is one run: one read, one plan, one delivery
    return dg.BackfillPolicy.single_run() if source.partition_column else None


def is_partitioned_run(context: dg.AssetExecutionContext) -> bool:
    """Whether this run targets partitions: one key, or a range (where `has_partition_key` is False)."""
    return context.has_partition_key or context.has_partition_key_range


def window_of(context: dg.AssetExecutionContext) -> Window | None:
    """The UTC time window of the run's partitions (one day or a range of days); None when unpartitioned."""
    if not is_partitioned_run(context):
        return None
    window = context.partition_time_window
    return Window(window.start.astimezone(dt.UTC), window.end.astimezone(dt.UTC))


def scope_of(context: dg.AssetExecutionContext) -> str:
    """How the sync state names what a run covered: `all`, a day, or `first...last`."""
    if not is_partitioned_run(context):
        return "all"
    key_range = context.partition_key_range
    return key_range.start if key_range.start == key_range.end else f"{key_range.start}...{key_range.end}"


def range_request(run_key: str, first: str, last: str, tags: dict[str, str] | None = None) -> dg.RunRequest:
    """One run over the days first..last: a single key, or the range tags of a single-run backfill. Its run
    config names the console logger (a partitioned job's default config does not reach a range run)."""
    if first == last:
        return dg.RunRequest(
            run_key=run_key, partition_key=first, tags=tags or {}, run_config=CONSOLE_RUN_CONFIG
        )
    return dg.RunRequest(
        run_key=run_key,
        tags={**(tags or {}), RANGE_START_TAG: first, RANGE_END_TAG: last},
        run_config=CONSOLE_RUN_CONFIG,
    )
